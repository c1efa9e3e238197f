#include "replay/capture.hpp"

#include <catch2/catch.hpp>

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
