// Packets handed to clients and not yet decided: who owns each, until when, and what happens then.
#pragma once

#include "broker/telemetry/latency_histogram.hpp"
#include "broker/verdict.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

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
  VerdictTracker(const VerdictTracker&) = delete;  // the heaps refer to slots_
  VerdictTracker& operator=(const VerdictTracker&) = delete;

  PacketToken track(const Pending& pending);

  /// The owner's decision: on success removes the entry and hands it back in `out`.
  ResolveResult take(PacketToken token, SessionId session, Pending& out);

  /// Removes every entry past its deadline, calling `expired(pending)` for each.
  template <typename F>
  void expire(Clock::time_point now, F&& expired) {
    while (!by_deadline_.empty() && slots_[by_deadline_.top()].pending.deadline <= now) {
      Pending pending = remove(by_deadline_.top());
      waits_.observe(now - pending.tracked_at);
      expired(pending);
    }
  }

  /// Removes every entry owned by `session` (it went away), calling `released(pending)` for each.
  /// (Rare: the tokens are gathered first, so a callback may track or take what it likes.)
  template <typename F>
  void release_session(SessionId session, F&& released) {
    std::vector<PacketToken> owned;
    for (std::uint32_t at = oldest_; at != none; at = slots_[at].newer) {
      if (slots_[at].pending.owner == session) owned.push_back(slots_[at].token);
    }
    const auto now = Clock::now();
    for (const PacketToken token : owned) {
      const std::uint32_t at = find(token);
      if (at == none || slots_[at].pending.owner != session) continue;
      Pending pending = remove(at);
      waits_.observe(now - pending.tracked_at);
      released(pending);
    }
  }

  /// Removes everything (shutdown), oldest first.
  template <typename F>
  void release_all(F&& released) {
    const auto now = Clock::now();
    while (oldest_ != none) {
      Pending pending = remove(oldest_);
      waits_.observe(now - pending.tracked_at);
      released(pending);
    }
  }

  /// The lowest kernel id still waiting, for the verdict writer's batching. A chain `pass`
  /// re-tracks a packet under a newer token, so this is not the packet of the oldest token.
  [[nodiscard]] std::optional<std::uint32_t> oldest_packet_id() const noexcept;
  [[nodiscard]] std::optional<Clock::time_point> next_deadline() const noexcept;
  [[nodiscard]] std::size_t size() const noexcept { return slots_.size() - free_slots_.size(); }
  [[nodiscard]] std::size_t owned_by(SessionId session) const noexcept;
  /// How long each packet that left waited here, from track() to leaving.
  [[nodiscard]] const LatencyHistogram& waits() const noexcept { return waits_; }

 private:
  // A slab: entries live in slots_, reused through free_slots_, found by token through an
  // open-addressing index, and ordered by two heaps and a list that hold slot numbers. Nothing
  // is allocated per packet once the slab has grown to the most packets tracked at once.
  static constexpr std::uint32_t none = UINT32_MAX;
  struct Slot {
    Pending pending;
    PacketToken token = 0;                     // 0: free
    std::uint32_t older = none, newer = none;  // the arrival (token) order
    std::uint32_t heap_position[2] = {none, none};
  };
  // A binary min-heap of slot numbers that keeps each slot's position in it, so any slot can
  // leave in O(log n).
  template <int Which, typename Less>
  class SlotHeap {
   public:
    explicit SlotHeap(std::vector<Slot>& slots) noexcept : slots_(slots) {}
    [[nodiscard]] bool empty() const noexcept { return heap_.empty(); }
    [[nodiscard]] std::uint32_t top() const noexcept { return heap_.front(); }
    void reserve(std::size_t slots) { heap_.reserve(slots); }
    void push(std::uint32_t slot) noexcept;  // within the reserved room
    void erase(std::uint32_t slot) noexcept;

   private:
    std::vector<Slot>& slots_;
    std::vector<std::uint32_t> heap_;
    void place(std::size_t at, std::uint32_t slot) noexcept {
      heap_[at] = slot;
      slots_[slot].heap_position[Which] = static_cast<std::uint32_t>(at);
    }
    void sift_up(std::size_t at) noexcept;
    void sift_down(std::size_t at) noexcept;
  };
  struct EarlierDeadline {  // ties in token order, as they arrived
    bool operator()(const Slot& a, const Slot& b) const noexcept {
      return a.pending.deadline != b.pending.deadline ? a.pending.deadline < b.pending.deadline
                                                      : a.token < b.token;
    }
  };
  static bool id_before(std::uint32_t a, std::uint32_t b) noexcept {  // the kernel's wrapping order
    return static_cast<std::int32_t>(a - b) < 0;
  }
  struct LowerId {
    bool operator()(const Slot& a, const Slot& b) const noexcept {
      return id_before(a.pending.packet_id, b.pending.packet_id);
    }
  };

  std::uint16_t queue_;
  std::uint64_t next_sequence_ = 1;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_slots_;
  std::vector<std::uint32_t> index_;  // token -> slot; a power of two, at most half full
  std::uint32_t oldest_ = none, newest_ = none;
  SlotHeap<0, EarlierDeadline> by_deadline_{slots_};
  // Kernel ids arrive in order, so entries tracked in order have ascending ids and the oldest
  // of them holds the lowest. Only entries tracked again after newer ones (a chain `pass`) are
  // kept apart, in the kernel's wrapping order.
  SlotHeap<1, LowerId> out_of_order_{slots_};
  std::optional<std::uint32_t> newest_id_;
  LatencyHistogram waits_;

  [[nodiscard]] std::size_t home(PacketToken token) const noexcept {
    return static_cast<std::size_t>((token * 0x9E3779B97F4A7C15ULL) >> 32) & (index_.size() - 1);
  }
  [[nodiscard]] std::uint32_t find(PacketToken token) const noexcept;
  std::uint32_t allocate();
  void reindex() noexcept;  ///< puts every entry into a new, empty index_
  void unindex(std::uint32_t slot) noexcept;
  /// Takes the entry out of every structure and frees its slot.
  Pending remove(std::uint32_t slot) noexcept;
};

}  // namespace pktbroker
