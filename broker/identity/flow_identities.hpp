// One queue's memory of which process each flow belongs to, so that a flow's later packets
// cost one hash lookup. Lives on its queue's strand.
#pragma once

#include "broker/identity/identity_resolver.hpp"
#include "broker/identity/socket_key.hpp"
#include "broker/verdict_tracker.hpp"

#include <chrono>
#include <optional>
#include <unordered_map>

namespace pktbroker {

class FlowIdentities {
 public:
  static constexpr std::size_t capacity = 65536;
  /// A UDP port may pass to another process without a handshake: its answer is checked
  /// again after this long (the flow's packets go on with the old answer meanwhile). A TCP
  /// flow's answer holds until the next SYN with the same addresses.
  static constexpr std::chrono::seconds udp_max_age{1};

  struct Found {
    const AppRef* app = nullptr;  ///< null: look it up (the packet waits)
    bool stale = false;           ///< a UDP answer to check again, without waiting
  };

  /// The flow's process (*app null: looked for and not found). Nothing when unknown, for
  /// `new_connection` (a SYN: the addresses may belong to a new socket), or when the packet's
  /// socket belongs to another user (`uid`, from NFQUEUE) than the flow's first packet's.
  [[nodiscard]] Found find(const SocketKey& key, bool new_connection,
                           std::optional<std::uint32_t> uid, Clock::time_point now) noexcept {
    if (new_connection) return {};
    const auto found = flows_.find(key);
    if (found == flows_.end()) return {};
    Entry& entry = found->second;
    if (!entry.uid) entry.uid = uid;
    if (uid && entry.uid != uid) return {};  // (packets the kernel gives no uid for pass)
    return {&entry.app, key.raw.protocol != IPPROTO_TCP && now - entry.at > udp_max_age};
  }

  /// Remembers the answer; when full, first forgets everything. A UDP flow's known process
  /// stays when a later answer names no other one: its socket closed (none found), or it exited
  /// (found gone, same pid). Its datagrams still queued were sent before that. An answer
  /// naming another process replaces it.
  void store(const SocketKey& key, AppRef app, Clock::time_point now) {
    const auto found = flows_.find(key);
    if (found != flows_.end()) {
      const AppRef& known = found->second.app;
      // Only UDP: a TCP answer comes for a new connection's SYN, which an old one never vouches.
      const bool no_other = !app || (!app->complete() && known && known->pid == app->pid);
      if (key.raw.protocol != IPPROTO_TCP && known && known->complete() && no_other) {
        found->second.at = now;
        return;
      }
      found->second = Entry{std::move(app), now, std::nullopt};
      return;
    }
    if (flows_.size() >= capacity) flows_.clear();
    flows_.emplace(key, Entry{std::move(app), now, std::nullopt});
  }

  void clear() noexcept { flows_.clear(); }

 private:
  struct Entry {
    AppRef app;
    Clock::time_point at;
    std::optional<std::uint32_t> uid;  ///< the socket owner of the first packet that used it
  };
  std::unordered_map<SocketKey, Entry, SocketKeyHash> flows_;
};

}  // namespace pktbroker
