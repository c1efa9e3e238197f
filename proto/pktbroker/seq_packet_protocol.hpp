/// @file seq_packet_protocol.hpp
/// @brief AF_UNIX SOCK_SEQPACKET as an Asio protocol (Boost 1.74 ships only stream and datagram).
#pragma once

#include <boost/asio/basic_seq_packet_socket.hpp>
#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/local/basic_endpoint.hpp>

#include <sys/socket.h>

namespace pktbroker {

/// The transport of the client protocol: one message per datagram, boundaries kept.
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
