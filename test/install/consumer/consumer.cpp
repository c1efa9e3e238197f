// Links libpktbroker and parses a packet with its packet view; prints what it found.
#include <pktbroker/client.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  const std::uint8_t udp[] = {0x45, 0, 0,   28, 0, 0, 0, 0,  64, 17, 0, 0, 127, 0,
                              0,    1, 127, 0,  0, 1, 0, 53, 0,  53, 0, 8, 0,   0};
  pktbroker::PacketView view;
  const auto parsed = pktbroker::parse_packet(udp, view);
  pktbroker::Client client;
  const auto error = client.connect(argc > 1 ? argv[1] : "/nonexistent.sock", "consumer");
  std::printf("parse=%s dport=%u connect=%s\n", std::string(pktbroker::to_string(parsed)).c_str(),
              view.dst_port, error ? "failed" : "ok");
  return parsed == pktbroker::ParseError::none && error ? 0 : 1;
}
