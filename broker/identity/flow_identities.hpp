// One queue's memory of which process each flow belongs to, so that a flow's later packets
// cost one hash lookup. Lives on its queue's strand.
#pragma once

#include "broker/identity/socket_key.hpp"
#include "broker/identity/identity_resolver.hpp"
#include "broker/verdict_tracker.hpp"

#include <chrono>
#include <unordered_map>

namespace pktbroker {

class FlowIdentities {
 public:
  static constexpr std::size_t capacity = 65536;
  /// A UDP port may pass to another process without a handshake: its answer is asked again
  /// after this long. A TCP flow's answer holds until the next SYN with the same addresses.
  static constexpr std::chrono::seconds udp_max_age{1};

  /// The flow's process (null: looked for and not found); nullptr when it must be looked up:
  /// unknown, too old, or `new_connection` (a SYN: the addresses may belong to a new socket).
  [[nodiscard]] const AppRef* find(const SocketKey& key, bool new_connection,
                                   Clock::time_point now) const noexcept {
    if (new_connection) return nullptr;
    const auto found = flows_.find(key);
    if (found == flows_.end()) return nullptr;
    if (key.raw.protocol != IPPROTO_TCP && now - found->second.at > udp_max_age) return nullptr;
    return &found->second.app;
  }

  /// Remembers the answer; when full, first forgets everything (counted by the caller).
  /// Returns false when it had to forget.
  bool store(const SocketKey& key, AppRef app, Clock::time_point now) {
    bool kept = true;
    if (flows_.size() >= capacity && !flows_.contains(key)) {
      flows_.clear();
      kept = false;
    }
    flows_.insert_or_assign(key, Entry{std::move(app), now});
    return kept;
  }

  void clear() noexcept { flows_.clear(); }

 private:
  struct Entry {
    AppRef app;
    Clock::time_point at;
  };
  std::unordered_map<SocketKey, Entry, SocketKeyHash> flows_;
};

}  // namespace pktbroker
