// AF_UNIX SOCK_SEQPACKET for Asio (Boost 1.74 ships only the stream and datagram flavours).
#pragma once

#include <boost/asio/basic_seq_packet_socket.hpp>
#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/local/basic_endpoint.hpp>

#include <sys/socket.h>

namespace pktbroker {

class SeqPacketProtocol {
 public:
  using endpoint = boost::asio::local::basic_endpoint<SeqPacketProtocol>;
  using socket = boost::asio::basic_seq_packet_socket<SeqPacketProtocol>;
  using acceptor = boost::asio::basic_socket_acceptor<SeqPacketProtocol>;

  [[nodiscard]] int type() const noexcept { return SOCK_SEQPACKET; }
  [[nodiscard]] int protocol() const noexcept { return 0; }
  [[nodiscard]] int family() const noexcept { return AF_UNIX; }
};

}  // namespace pktbroker
