#include "plugins/host/plugin_set.hpp"

#include <algorithm>
#include <string>

namespace pktbroker {
namespace {

bool overlap(const pktb_registration& a, const pktb_registration& b) {
  if (a.protocol != b.protocol) return false;
  if (a.is_default != 0 || b.is_default != 0) return a.is_default != 0 && b.is_default != 0;
  return a.port_first <= b.port_last && b.port_first <= a.port_last;
}

std::string describe(const pktb_registration& r) {
  const std::string protocol = "protocol " + std::to_string(r.protocol);
  if (r.is_default != 0) return protocol + " (default)";
  if (r.port_first == r.port_last) return protocol + " port " + std::to_string(r.port_first);
  return protocol + " ports " + std::to_string(r.port_first) + "-" + std::to_string(r.port_last);
}

}  // namespace

PluginSet::PluginSet(std::span<const PluginSpec> specs) {
  for (const PluginSpec& spec : specs) {
    if (const auto existing = find(spec.name)) {
      throw PluginError("plugin '" + spec.name + "' (" + spec.origin +
                        ") is loaded twice: also from " + existing->path().string());
    }
    auto plugin = std::make_shared<const Plugin>(spec);
    const pktb_plugin& d = plugin->descriptor();
    for (std::size_t i = 0; i < d.registration_count; ++i) {
      const pktb_registration& mine = d.registrations[i];
      for (const Claim& claim : claims_) {
        if (overlap(mine, claim.registration)) {
          throw PluginError("plugins '" + claim.plugin->name() + "' and '" + plugin->name() +
                            "' both claim " + describe(claim.registration) + " / " +
                            describe(mine) + ": give one of them other ports");
        }
      }
      claims_.push_back({mine, plugin});
    }
    plugins_.push_back(std::move(plugin));
  }
}

std::shared_ptr<const Plugin> PluginSet::find(std::string_view name) const noexcept {
  for (const auto& plugin : plugins_) {
    if (plugin->name() == name) return plugin;
  }
  return nullptr;
}

std::shared_ptr<const Plugin> PluginSet::for_flow(std::uint8_t protocol,
                                                  std::uint16_t server_port) const noexcept {
  const Claim* fallback = nullptr;
  for (const Claim& claim : claims_) {
    const pktb_registration& r = claim.registration;
    if (r.protocol != protocol) continue;
    if (r.is_default != 0) {
      fallback = &claim;
    } else if (r.port_first <= server_port && server_port <= r.port_last) {
      return claim.plugin;
    }
  }
  return fallback != nullptr ? fallback->plugin : nullptr;
}

bool PluginSet::serves_port(std::uint8_t protocol, std::uint16_t port) const noexcept {
  return std::any_of(claims_.begin(), claims_.end(), [&](const Claim& claim) {
    const pktb_registration& r = claim.registration;
    return r.protocol == protocol && r.is_default == 0 && r.port_first <= port &&
           port <= r.port_last;
  });
}

}  // namespace pktbroker
