// pktreplay's capture reader on any file (through a memfd, as it reads by path) and, when it
// reads, the flow assembly of its packets.
#include "replay/capture.hpp"
#include "replay/flows.hpp"
#include "test/fuzz/fuzz_check.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <string>

using namespace pktbroker::replay;

namespace {

constexpr std::size_t max_bytes = std::size_t{4} << 20;

int capture_fd() {
  static const int fd = memfd_create("fuzz.pcap", 0);
  FUZZ_REQUIRE(fd >= 0);
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const int fd = capture_fd();
  FUZZ_REQUIRE(ftruncate(fd, 0) == 0);
  FUZZ_REQUIRE(pwrite(fd, data, size, 0) == static_cast<ssize_t>(size));
  Capture capture;
  try {
    capture = read_capture("/proc/self/fd/" + std::to_string(fd), max_bytes);
  } catch (const CaptureError& error) {
    FUZZ_REQUIRE(error.what()[0] != '\0');
    return 0;
  }
  std::size_t bytes = 0;
  for (const CapturedPacket& packet : capture.packets) {
    FUZZ_REQUIRE(packet.ip.size() >= 20);
    bytes += packet.ip.size();
  }
  FUZZ_REQUIRE(bytes <= max_bytes);

  const Flows flows = assemble_flows(capture);
  for (std::size_t i = 0; i < flows.flows.size(); ++i) {
    const RecordedFlow& flow = flows.flows[i];
    FUZZ_REQUIRE(flow.id == i + 1);
    FUZZ_REQUIRE(flow.protocol == 6 || flow.protocol == 17);
    std::uint64_t sent[2] = {0, 0};
    for (const Turn& turn : flow.turns) {
      sent[turn.side == Side::client ? 0 : 1] += turn.data.size();
      std::uint64_t datagram_bytes = 0;
      for (const std::uint32_t datagram : turn.datagrams) datagram_bytes += datagram;
      FUZZ_REQUIRE(turn.datagrams.empty() || datagram_bytes == turn.data.size());
    }
    FUZZ_REQUIRE(sent[0] == flow.client_bytes && sent[1] == flow.server_bytes);
  }
  return 0;
}
