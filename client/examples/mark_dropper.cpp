// Drops every packet carrying one mark: `pktbroker_mark_dropper SOCKET MARK`.
#include "pktbroker/client.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s SOCKET MARK\n", argv[0]);
    return 2;
  }
  pktbroker::Client client;
  if (const auto error = client.connect(argv[1], "mark-dropper")) {
    std::fprintf(stderr, "connect: %s\n", error.message().c_str());
    return 1;
  }
  std::uint32_t id = 0;
  pktbroker::proto::Subscribe request;
  request.name = "mark-dropper";
  request.selector = std::string("{mark: ") + argv[2] + "}";
  if (const auto error = client.subscribe(request, id)) {
    std::fprintf(stderr, "subscribe: %s: %s\n", error.message().c_str(),
                 client.last_error().text.c_str());
    return 1;
  }
  pktbroker::ReceivedPacket packet;
  while (!client.next_packet(packet)) {
    client.verdict(packet.info().token, pktbroker::proto::VerdictCode::drop);
  }
  return 0;
}
