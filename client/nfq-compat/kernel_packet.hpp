// What the kernel would say about a packet the broker delivered: its family and link protocol.
#pragma once

#include "pktbroker/protocol.hpp"

#include <linux/if_ether.h>
#include <sys/socket.h>

#include <cstdint>

namespace pktbroker::nfq {

/// IPv6 when the payload's version nibble says 6, else IPv4 (metadata-only packets included).
inline bool is_ipv6(const proto::Packet& packet) noexcept {
  return !packet.payload.empty() && (packet.payload[0] >> 4) == 6;
}

/// The nfgenmsg family of the packet's message (the hook's protocol family).
inline std::uint8_t family(const proto::Packet& packet) noexcept {
  return is_ipv6(packet) ? AF_INET6 : AF_INET;
}

/// The packet header's hw_protocol, in host order.
inline std::uint16_t ethertype(const proto::Packet& packet) noexcept {
  return is_ipv6(packet) ? ETH_P_IPV6 : ETH_P_IP;
}

}  // namespace pktbroker::nfq
