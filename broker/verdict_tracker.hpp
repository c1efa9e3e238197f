// Packets handed to clients and not yet decided: who owns each, until when, and what happens then.
#pragma once

#include "broker/telemetry/latency_histogram.hpp"
#include "broker/verdict.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <utility>

namespace pktbroker {

using SessionId = std::uint32_t;
/// Broker-assigned packet handle given to clients: the queue in the top 16 bits, then a
/// per-queue sequence, so a token names its queue and is never reused while the broker runs.
using PacketToken = std::uint64_t;
using Clock = std::chrono::steady_clock;

/// What a queue keeps to hand a packet on when its owner answers `pass` (defined by the queue).
struct ChainState;

constexpr std::uint16_t token_queue(PacketToken token) noexcept {
  return static_cast<std::uint16_t>(token >> 48);
}

/// Lives on its queue's executor. Every tracked packet leaves exactly once: resolved by its
/// owner, expired, released with its owner's session, or released at shutdown.
class VerdictTracker {
 public:
  struct Pending {
    std::uint32_t packet_id = 0;  ///< kernel id
    SessionId owner = 0;
    Verdict fallback;
    Clock::time_point deadline;
    std::shared_ptr<ChainState> chain;  ///< set when other subscribers may still take it
    /// Set by track(): an id older than one tracked before it (a chain `pass` re-tracks).
    bool out_of_order = false;
    Clock::time_point tracked_at{};  ///< set by track(), for the latency histogram
  };
  enum class ResolveResult : std::uint8_t { resolved, unknown_token, not_owner };

  explicit VerdictTracker(std::uint16_t queue) noexcept : queue_(queue) {}

  PacketToken track(const Pending& pending);

  /// The owner's decision: on success removes the entry and hands it back in `out`.
  ResolveResult take(PacketToken token, SessionId session, Pending& out);

  /// Removes every entry past its deadline, calling `expired(pending)` for each.
  template <typename F>
  void expire(Clock::time_point now, F&& expired) {
    while (!by_deadline_.empty() && by_deadline_.begin()->first <= now) {
      const PacketToken token = by_deadline_.begin()->second;
      by_deadline_.erase(by_deadline_.begin());
      const auto found = pending_.find(token);
      Pending pending = std::move(found->second);
      pending_.erase(found);
      forget_order(pending);
      waits_.observe(now - pending.tracked_at);
      expired(pending);
    }
  }

  /// Removes every entry owned by `session` (it went away), calling `released(pending)` for each.
  template <typename F>
  void release_session(SessionId session, F&& released) {
    const auto now = Clock::now();
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->second.owner != session) {
        ++it;
        continue;
      }
      by_deadline_.erase({it->second.deadline, it->first});
      Pending pending = std::move(it->second);
      it = pending_.erase(it);
      forget_order(pending);
      waits_.observe(now - pending.tracked_at);
      released(pending);
    }
  }

  /// Removes everything (shutdown), oldest first.
  template <typename F>
  void release_all(F&& released) {
    auto all = std::move(pending_);
    pending_.clear();
    by_deadline_.clear();
    out_of_order_ids_.clear();
    const auto now = Clock::now();
    for (auto& [token, pending] : all) {
      waits_.observe(now - pending.tracked_at);
      released(pending);
    }
  }

  /// The lowest kernel id still waiting, for the verdict writer's batching. A chain `pass`
  /// re-tracks a packet under a newer token, so this is not the packet of the oldest token.
  [[nodiscard]] std::optional<std::uint32_t> oldest_packet_id() const noexcept;
  [[nodiscard]] std::optional<Clock::time_point> next_deadline() const noexcept;
  [[nodiscard]] std::size_t size() const noexcept { return pending_.size(); }
  [[nodiscard]] std::size_t owned_by(SessionId session) const noexcept;
  /// How long each packet that left waited here, from track() to leaving.
  [[nodiscard]] const LatencyHistogram& waits() const noexcept { return waits_; }

 private:
  std::uint16_t queue_;
  std::uint64_t next_sequence_ = 1;
  std::map<PacketToken, Pending> pending_;  // token order is arrival order
  std::set<std::pair<Clock::time_point, PacketToken>> by_deadline_;
  // Kernel ids arrive in order, so entries tracked in order have ascending ids and the first
  // of them by token holds the lowest. Only entries tracked again after newer ones (a chain
  // `pass`) are kept apart, in the kernel's wrapping order: no allocation per packet for that.
  struct IdOrder {
    bool operator()(std::uint32_t a, std::uint32_t b) const noexcept {
      return static_cast<std::int32_t>(a - b) < 0;
    }
  };
  std::optional<std::uint32_t> newest_id_;
  std::multiset<std::uint32_t, IdOrder> out_of_order_ids_;
  LatencyHistogram waits_;

  void forget_order(const Pending& pending) noexcept {
    if (!pending.out_of_order) return;
    if (const auto found = out_of_order_ids_.find(pending.packet_id);
        found != out_of_order_ids_.end()) {
      out_of_order_ids_.erase(found);
    }
  }
};

}  // namespace pktbroker
