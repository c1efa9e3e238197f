// What NFQUEUE tells us about a queued packet besides its bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace pktbroker {

struct AppInfo;

/// Conntrack state as carried by NFQA_CT_INFO (enum ip_conntrack_info), reduced to what rules
/// match.
enum class CtState : std::uint8_t { none, new_, established, related };

struct PacketMeta {
  std::uint32_t packet_id = 0;  ///< kernel packet id within the queue
  std::uint16_t queue = 0;
  std::uint8_t hook = 0;          ///< NF_INET_* hook number
  std::uint16_t hw_protocol = 0;  ///< ethertype, host byte order
  std::uint32_t mark = 0;
  std::uint32_t in_ifindex = 0;      ///< 0 when absent
  std::uint32_t out_ifindex = 0;     ///< 0 when absent
  std::optional<std::uint32_t> uid;  ///< socket owner, when the kernel knows it
  std::optional<std::uint32_t> gid;
  CtState ct_state = CtState::none;
  std::uint32_t wire_length = 0;          ///< original length (NFQA_CAP_LEN) or the payload length
  std::span<const std::uint8_t> payload;  ///< captured bytes, starting at the network header
  /// Fields plugins published for this packet's flow ("dns.qname" -> value); empty without.
  std::span<const std::pair<std::string, std::string>> fields;
  /// The names DNS gave out the destination address for (dst_name:); empty when unknown.
  std::span<const std::string> dst_names;
  /// The process that sent the packet (`app.*` fields); null when unknown or not looked up.
  const AppInfo* app = nullptr;
};

}  // namespace pktbroker
