// The key the eBPF program records a flow's sender under, built from a queued packet.
#pragma once

#include "broker/identity/flow_owner_record.h"
#include "pktbroker/packet_view.hpp"

#include <cstring>
#include <functional>
#include <optional>
#include <string_view>

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

/// The key of a TCP or UDP packet as its local sender sees it: a packet leaving this host
/// (OUTPUT, POSTROUTING) as it is, one arriving (INPUT, PREROUTING) reversed. Forwarded and
/// other packets have no local sender: nullopt.
inline std::optional<SocketKey> socket_key_of(const PacketView& view, std::uint8_t hook) noexcept {
  if (!view.has_ports || (view.protocol != IPPROTO_TCP && view.protocol != IPPROTO_UDP)) {
    return std::nullopt;
  }
  constexpr std::uint8_t pre_routing = 0, local_in = 1, local_out = 3, post_routing = 4;
  bool reversed = false;
  if (hook == pre_routing || hook == local_in) {
    reversed = true;
  } else if (hook != local_out && hook != post_routing) {
    return std::nullopt;
  }
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
  return key;
}

}  // namespace pktbroker
