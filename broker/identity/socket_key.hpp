// The key the eBPF program records a flow's sender under, built from a queued packet.
#pragma once

#include "broker/identity/flow_owner_record.h"
#include "pktbroker/packet_view.hpp"

#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <arpa/inet.h>
#include <netinet/in.h>

namespace pktbroker {

struct SocketKey {
  pktb_flow_key raw{};

  friend bool operator==(const SocketKey& a, const SocketKey& b) noexcept {
    return std::memcmp(&a.raw, &b.raw, sizeof a.raw) == 0;
  }
};

struct SocketKeyHash {
  std::size_t operator()(const SocketKey& key) const noexcept {
    return std::hash<std::string_view>{}(
        std::string_view(reinterpret_cast<const char*>(&key.raw), sizeof key.raw));
  }
};

/// Where the socket sends to.
inline IpAddress destination_of(const SocketKey& key) noexcept {
  IpAddress address;
  address.family = key.raw.family == AF_INET ? 4 : 6;
  std::memcpy(address.bytes.data(), key.raw.dst, address.size());
  return address;
}
inline std::uint16_t destination_port(const SocketKey& key) noexcept {
  return ntohs(key.raw.dst_port);
}
/// "tcp 192.0.2.7:443", "udp [2001:db8::1]:53"
inline std::string destination_text(const SocketKey& key) {
  const IpAddress address = destination_of(key);
  const std::string host =
      address.family == 4 ? address.to_string() : "[" + address.to_string() + "]";
  return std::string(key.raw.protocol == IPPROTO_TCP ? "tcp " : "udp ") + host + ":" +
         std::to_string(destination_port(key));
}

/// The local socket a TCP or UDP packet belongs to: a packet a local process sends (OUTPUT)
/// as it is, one delivered to a local socket (INPUT) reversed. On other hooks a packet may be
/// forwarded: it has no local socket, nullopt.
struct SocketLookup {
  SocketKey key;
  bool outgoing = true;  ///< sent by a local process (else received for one)
};
inline std::optional<SocketLookup> socket_key_of(const PacketView& view,
                                                 std::uint8_t hook) noexcept {
  if (!view.has_ports || (view.protocol != IPPROTO_TCP && view.protocol != IPPROTO_UDP)) {
    return std::nullopt;
  }
  constexpr std::uint8_t local_in = 1, local_out = 3;
  if (hook != local_in && hook != local_out) return std::nullopt;
  const bool reversed = hook == local_in;
  SocketKey key;
  const bool v4 = view.ip_version == 4;
  key.raw.family = v4 ? AF_INET : AF_INET6;
  key.raw.protocol = view.protocol;
  const IpAddress& src = reversed ? view.dst : view.src;
  const IpAddress& dst = reversed ? view.src : view.dst;
  const std::size_t length = v4 ? 4 : 16;
  std::memcpy(key.raw.src, src.bytes.data(), length);
  std::memcpy(key.raw.dst, dst.bytes.data(), length);
  key.raw.src_port = htons(reversed ? view.dst_port : view.src_port);
  key.raw.dst_port = htons(reversed ? view.src_port : view.dst_port);
  return SocketLookup{key, !reversed};
}

}  // namespace pktbroker
