// Drives the shipped plugins (the built .so files) through a FlowInspector with crafted packets:
// one client (10.0.0.1) and one server (10.0.0.2), TCP segments with sequence numbers.
#pragma once

#include "broker/flow/flow_inspector.hpp"
#include "test/unit/packet_builder.hpp"

#include <netinet/in.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pktbroker::test {

inline std::string built_plugin(const std::string& name) {
  return std::string(BUILT_PLUGIN_DIR) + "/" + name + ".so";
}

inline std::shared_ptr<const PluginSet> shipped_plugins(
    const std::vector<std::string>& names, const std::map<std::string, std::string>& config = {}) {
  std::vector<PluginSpec> specs;
  for (const std::string& name : names)
    specs.push_back({name, built_plugin(name), config, "test:1"});
  return std::make_shared<const PluginSet>(specs);
}

/// A TCP segment (or a UDP datagram) between 10.0.0.1 (client) and 10.0.0.2 (server).
inline Bytes segment(std::uint16_t sport, std::uint16_t dport, std::uint32_t seq,
                     std::string_view data, std::uint8_t flags = 0x18, bool from_server = false) {
  Bytes l4 = tcp_header(sport, dport, flags);
  for (int i = 0; i < 4; ++i) l4[4 + i] = static_cast<std::uint8_t>(seq >> (24 - 8 * i));
  l4.insert(l4.end(), data.begin(), data.end());
  return from_server ? ipv4(IPPROTO_TCP, l4, 0, {10, 0, 0, 2}, {10, 0, 0, 1})
                     : ipv4(IPPROTO_TCP, l4);
}

inline Bytes datagram(std::uint16_t sport, std::uint16_t dport, std::string_view data,
                      bool from_server = false) {
  Bytes l4 = udp_header(sport, dport, static_cast<std::uint16_t>(data.size()));
  l4.insert(l4.end(), data.begin(), data.end());
  return from_server ? ipv4(IPPROTO_UDP, l4, 0, {10, 0, 0, 2}, {10, 0, 0, 1})
                     : ipv4(IPPROTO_UDP, l4);
}

/// A FlowInspector with the shipped plugins and a name cache; records released packets.
class PluginDriver {
 public:
  explicit PluginDriver(std::shared_ptr<const PluginSet> plugins, FlowLimits limits = {})
      : plugin_set(plugins),
        names(std::make_shared<NameCache>()),
        inspector(
            plugins, limits,
            [this](std::uint64_t id, const pktb_decision& decision) {
              released.emplace_back(id, static_cast<pktb_action>(decision.action));
              return 0;
            },
            names) {}

  /// Inspects one packet (kept alive in `packets`: an Inspection may point into it).
  Inspection send(Bytes packet, Clock::time_point now = Clock::now()) {
    packets.push_back(std::make_unique<Bytes>(std::move(packet)));
    const Bytes& bytes = *packets.back();
    PacketView view;
    if (parse_packet(bytes, view) != ParseError::none) return {};
    PacketMeta meta;
    meta.packet_id = static_cast<std::uint32_t>(packets.size());
    meta.payload = bytes;
    meta.wire_length = static_cast<std::uint32_t>(bytes.size());
    return inspector.inspect(meta, view, packets.size(), now);
  }

  /// The value of a published field ("http.path") of the inspection's flow, or "(none)".
  static std::string field(const Inspection& inspection, std::string_view name) {
    if (inspection.flow == nullptr || !inspection.flow->plugin) return "(none)";
    for (const auto& [key, value] : inspection.flow->plugin->fields) {
      if (key == name) return value;
    }
    return "(none)";
  }

  /// A counter of a loaded plugin.
  std::uint64_t counter(const std::string& plugin, const std::string& name) const {
    for (const auto& [key, value] : plugin_set->find(plugin)->counters()) {
      if (key == name) return value;
    }
    return 0;
  }

  std::shared_ptr<const PluginSet> plugin_set;
  std::shared_ptr<NameCache> names;
  FlowInspector inspector;
  std::vector<std::unique_ptr<Bytes>> packets;
  std::vector<std::pair<std::uint64_t, pktb_action>> released;
};

}  // namespace pktbroker::test
