#include "replay/capture.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <string>

using namespace pktbroker::replay;

namespace {
const std::string data_dir = TEST_DATA_DIR;
}

TEST_CASE("pcap and pcapng files give their IP packets and capture times") {
  const Capture pcap = read_capture(data_dir + "/http-reordered.pcap");
  CHECK(pcap.link_type == "EN10MB");
  REQUIRE(pcap.packets.size() == 14);
  CHECK(pcap.packets[0].time.count() == 0);
  CHECK(pcap.packets[1].time == std::chrono::milliseconds(1));
  CHECK(pcap.packets[0].ip[0] == 0x45);  // the Ethernet header is gone

  const Capture pcapng = read_capture(data_dir + "/dns.pcapng");
  CHECK(pcapng.link_type == "EN10MB");
  REQUIRE(pcapng.packets.size() == 3);
  CHECK(pcapng.packets[2].time == std::chrono::milliseconds(2));
}

TEST_CASE("Linux cooked captures: IP packets kept, other frames counted") {
  const Capture capture = read_capture(data_dir + "/cooked.pcap");
  CHECK(capture.link_type == "LINUX_SLL");
  CHECK(capture.packets.size() == 2);
  CHECK(capture.skipped_non_ip == 1);
}

TEST_CASE("unreadable and truncated files are errors that say where") {
  CHECK_THROWS_WITH(read_capture(data_dir + "/missing.pcap"),
                    Catch::Contains("missing.pcap: ") && Catch::Contains("No such file"));
  CHECK_THROWS_WITH(read_capture(data_dir + "/make_captures.py"),
                    Catch::Contains("make_captures.py: unknown file format"));
  CHECK_THROWS_WITH(read_capture(data_dir + "/truncated.pcap"),
                    Catch::Contains("truncated.pcap: after packet 2: truncated dump file"));
}

TEST_CASE("a pcapng timestamp past 2262 is an error, not an overflowed capture time") {
  // Found by test/fuzz (replay_capture): the nanosecond conversion overflowed.
  const std::string file =
      data_dir + "/../fuzz/regressions/replay_capture/pcapng_timestamp_past_2262";
  CHECK_THROWS_WITH(read_capture(file), Catch::Contains("packet 1: timestamp out of range"));
}

namespace {

/// A one-packet pcap (a minimal IPv4 header over raw IP) whose timestamp is as given.
std::string pcap_with_time(std::uint32_t magic, std::uint32_t seconds, std::uint32_t fraction) {
  const std::string path = "/tmp/pktreplay-capture-test-" + std::to_string(magic) + ".pcap";
  std::ofstream file(path, std::ios::binary);
  const auto put32 = [&](std::uint32_t v) { file.write(reinterpret_cast<const char*>(&v), 4); };
  const auto put16 = [&](std::uint16_t v) { file.write(reinterpret_cast<const char*>(&v), 2); };
  put32(magic);
  put16(2);
  put16(4);
  put32(0);
  put32(0);
  put32(65535);
  put32(101);  // LINKTYPE_RAW
  const unsigned char ip[20] = {0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17};
  put32(seconds);
  put32(fraction);
  put32(sizeof ip);
  put32(sizeof ip);
  file.write(reinterpret_cast<const char*>(ip), sizeof ip);
  return path;
}

}  // namespace

TEST_CASE("a timestamp whose fraction is a second or more is an error") {
  // pcap with nanosecond timestamps: 1.5e9 ns is no fraction of a second.
  CHECK_THROWS_WITH(read_capture(pcap_with_time(0xa1b23c4d, 10, 1'500'000'000)),
                    Catch::Contains("packet 1: timestamp out of range"));
  // Microseconds: libpcap scales 2,000,000 us to 2e9 ns.
  CHECK_THROWS_WITH(read_capture(pcap_with_time(0xa1b2c3d4, 10, 2'000'000)),
                    Catch::Contains("packet 1: timestamp out of range"));
  // The largest fraction is fine, and the first packet is time 0 even at the epoch.
  const Capture at_epoch = read_capture(pcap_with_time(0xa1b23c4d, 0, 999'999'999));
  REQUIRE(at_epoch.packets.size() == 1);
  CHECK(at_epoch.packets[0].time.count() == 0);
}

TEST_CASE("QinQ-tagged Ethernet, Linux cooked v2 and BSD loopback frames give their packets") {
  for (const auto& [file, link_type] :
       {std::pair{"qinq.pcap", "EN10MB"}, {"sll2.pcap", "LINUX_SLL2"}, {"loopback.pcap", "NULL"}}) {
    const Capture capture = read_capture(data_dir + "/" + file);
    INFO(file);
    CHECK(capture.link_type == link_type);
    REQUIRE(capture.packets.size() == 2);
    CHECK(capture.skipped_non_ip == 0);
    CHECK(capture.packets[0].ip[0] >> 4 == (std::string(file) == "loopback.pcap" ? 6 : 4));
  }
}
