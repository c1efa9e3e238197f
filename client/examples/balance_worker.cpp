// One of several workers sharing the flows of a selector: `pktbroker_balance_worker SOCKET NAME`.
// Start it more than once; the broker keeps each flow on one worker. Accepts everything and
// prints the flows it saw when it ends (SIGINT/SIGTERM).
#include "pktbroker/client.hpp"

#include <csignal>
#include <cstdio>
#include <map>
#include <string>

namespace {
volatile std::sig_atomic_t stopping = 0;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s SOCKET NAME\n", argv[0]);
    return 2;
  }
  std::signal(SIGINT, [](int) { stopping = 1; });
  std::signal(SIGTERM, [](int) { stopping = 1; });
  pktbroker::Client client;
  if (const auto error = client.connect(argv[1], argv[2])) {
    std::fprintf(stderr, "connect: %s\n", error.message().c_str());
    return 1;
  }
  pktbroker::proto::Subscribe request;
  request.name = "balance";
  request.clash = pktbroker::proto::Clash::balance;
  std::uint32_t id = 0;
  if (const auto error = client.subscribe(request, id)) {
    std::fprintf(stderr, "subscribe: %s (%s)\n", error.message().c_str(),
                 client.last_error().text.c_str());
    return 1;
  }
  std::map<std::string, unsigned> flows;
  pktbroker::ReceivedPacket packet;
  while (stopping == 0) {
    const auto error = client.next_packet(packet, 200);
    if (error == pktbroker::ClientError::timeout) continue;
    if (error) break;
    pktbroker::PacketView view;
    if (packet.parse(view) == pktbroker::ParseError::none && view.has_ports) {
      ++flows[view.src.to_string() + ":" + std::to_string(view.src_port) + ">" +
              view.dst.to_string() + ":" + std::to_string(view.dst_port)];
    }
    client.verdict(packet.info().token, pktbroker::proto::VerdictCode::accept);
  }
  for (const auto& [flow, count] : flows) std::printf("%s %u\n", flow.c_str(), count);
  return 0;
}
