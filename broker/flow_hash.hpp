// One value for both directions of a flow: balanced subscriptions keep a flow on one client by
// it, and the event log gives it as the flow_id.
#pragma once

#include "pktbroker/packet_view.hpp"

#include <cstdint>
#include <utility>

namespace pktbroker {

inline std::uint64_t symmetric_flow_hash(const IpAddress& src, std::uint16_t src_port,
                                         const IpAddress& dst, std::uint16_t dst_port,
                                         std::uint8_t protocol) noexcept {
  auto a = std::pair(src.bytes, src_port);
  auto b = std::pair(dst.bytes, dst_port);
  if (b < a) std::swap(a, b);
  std::uint64_t hash = 1469598103934665603ULL;  // FNV-1a
  const auto mix = [&hash](std::uint64_t value) { hash = (hash ^ value) * 1099511628211ULL; };
  for (auto byte : a.first) mix(byte);
  mix(a.second);
  for (auto byte : b.first) mix(byte);
  mix(b.second);
  mix(protocol);
  return hash;
}

}  // namespace pktbroker
