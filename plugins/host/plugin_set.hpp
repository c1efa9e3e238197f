// The plugins a policy loads, and which one handles a new flow.
#pragma once

#include "plugins/host/plugin.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace pktbroker {

/// Immutable once built; shared by the queues (and kept alive by their flows).
class PluginSet {
 public:
  PluginSet() = default;
  /// Loads and initializes every plugin in order; throws PluginError on the first failure
  /// (those already loaded are unloaded), including a duplicate name and two plugins claiming
  /// the same protocol and port (the message names both).
  explicit PluginSet(std::span<const PluginSpec> specs);

  [[nodiscard]] bool empty() const noexcept { return plugins_.empty(); }
  [[nodiscard]] std::span<const std::shared_ptr<const Plugin>> plugins() const noexcept {
    return plugins_;
  }
  [[nodiscard]] std::shared_ptr<const Plugin> find(std::string_view name) const noexcept;
  /// The plugin registered for this IP protocol and server port (or the protocol's default).
  [[nodiscard]] std::shared_ptr<const Plugin> for_flow(std::uint8_t protocol,
                                                       std::uint16_t server_port) const noexcept;
  /// Whether a plugin registered this port by name (not as the protocol's default).
  [[nodiscard]] bool serves_port(std::uint8_t protocol, std::uint16_t port) const noexcept;

 private:
  struct Claim {
    pktb_registration registration;
    std::shared_ptr<const Plugin> plugin;
  };
  std::vector<std::shared_ptr<const Plugin>> plugins_;
  std::vector<Claim> claims_;
};

}  // namespace pktbroker
