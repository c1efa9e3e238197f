// Prints every packet the broker sees, one line each, like tcpdump:
// `pktbroker_observer SOCKET [SELECTOR]`, e.g. SELECTOR '{proto: tcp}'.
#include "pktbroker/async_client.hpp"

#include <boost/asio/io_context.hpp>

#include <netinet/in.h>

#include <cstdio>
#include <ctime>

namespace {

const char* protocol_name(std::uint8_t protocol) {
  switch (protocol) {
    case IPPROTO_TCP: return "TCP";
    case IPPROTO_UDP: return "UDP";
    case IPPROTO_ICMP: return "ICMP";
    case IPPROTO_ICMPV6: return "ICMP6";
    default: return "IP";
  }
}

void print(const pktbroker::ReceivedPacket& packet) {
  const auto& info = packet.info();
  const std::time_t seconds = static_cast<std::time_t>(info.timestamp_ns / 1'000'000'000);
  std::tm local{};
  localtime_r(&seconds, &local);
  char clock[16];
  std::strftime(clock, sizeof clock, "%H:%M:%S", &local);
  const auto micros = static_cast<unsigned long long>(info.timestamp_ns % 1'000'000'000 / 1000);
  pktbroker::PacketView view;
  if (packet.parse(view) != pktbroker::ParseError::none) {
    std::printf("%s.%06llu malformed, length %u\n", clock, micros, info.wire_length);
  } else if (view.has_ports) {
    std::printf("%s.%06llu IP%s %s.%u > %s.%u: %s, length %u, mark %#x\n", clock, micros,
                view.ip_version == 6 ? "6" : "", view.src.to_string().c_str(), view.src_port,
                view.dst.to_string().c_str(), view.dst_port, protocol_name(view.protocol),
                info.wire_length, info.mark);
  } else {
    std::printf("%s.%06llu IP%s %s > %s: %s type %u, length %u, mark %#x\n", clock, micros,
                view.ip_version == 6 ? "6" : "", view.src.to_string().c_str(),
                view.dst.to_string().c_str(), protocol_name(view.protocol), view.icmp_type,
                info.wire_length, info.mark);
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s SOCKET [SELECTOR]\n", argv[0]);
    return 2;
  }
  // The asynchronous API: everything happens in handlers on one io_context.
  boost::asio::io_context io;
  pktbroker::AsyncClient client(io.get_executor());
  int status = 0;
  const auto give_up = [&](const char* what, std::error_code error) {
    std::fprintf(stderr, "%s: %s (%s)\n", what, error.message().c_str(),
                 client.last_error().text.c_str());
    status = 1;
    client.close();
  };
  pktbroker::proto::Subscribe request;
  request.name = "observer";
  request.mode = pktbroker::proto::SubscriptionMode::observe;
  request.selector = argc == 3 ? argv[2] : "";
  request.snaplen = 128;
  client.async_connect(
      argv[1], "observer", pktbroker::proto::role_observe, [&](std::error_code error) {
        if (error) return give_up("connect", error);
        client.async_subscribe(request, [&](std::error_code failure, std::uint32_t) {
          if (failure) return give_up("subscribe", failure);
          client.start_receiving(print, [](std::error_code) {});
        });
      });
  io.run();
  return status;
}
