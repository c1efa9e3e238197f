// The client subscriptions as seen by the queues: an immutable snapshot, replaced on change.
#pragma once

#include "broker/policy/matcher.hpp"
#include "broker/verdict.hpp"
#include "broker/verdict_tracker.hpp"
#include "pktbroker/protocol.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace pktbroker {

/// The queues' handle on a client session. Thread-safe: queues call it from their strands.
class SessionPort {
 public:
  virtual ~SessionPort() = default;
  [[nodiscard]] virtual SessionId id() const noexcept = 0;
  /// Queues one datagram for the client; false when the session's queue is full or it closed.
  virtual bool offer(std::shared_ptr<const std::vector<std::uint8_t>> datagram) noexcept = 0;
  /// Tells the client that a request of its own failed.
  virtual void report_error(proto::ErrorCode code, std::string text) noexcept = 0;
  /// Counts a packet of this session that took its fallback (timeout, overflow, disconnect).
  virtual void count_fallback() noexcept = 0;
};

struct Subscription {
  std::uint32_t id = 0;
  std::shared_ptr<SessionPort> port;
  std::string name;
  proto::SubscriptionMode mode = proto::SubscriptionMode::verdict;
  proto::Clash clash = proto::Clash::exclusive;
  std::int32_t priority = 0;
  std::uint32_t snaplen = 0xffff;
  std::chrono::milliseconds timeout{1000};
  Verdict fallback;
  std::string selector_text;
  std::shared_ptr<const Matcher> selector;
  std::shared_ptr<const Matcher> allowed;  ///< the session's grant limit, if any
  std::optional<std::pair<std::uint32_t, std::uint32_t>> selector_mark;  ///< value, mask

  [[nodiscard]] bool selects(const PacketMeta& meta, const PacketView& view) const noexcept {
    return selector->matches(meta, view) && (!allowed || allowed->matches(meta, view));
  }
};

inline std::optional<std::pair<std::uint32_t, std::uint32_t>> selector_mark(const Matcher& m) {
  return m.required().mark;
}

/// Observers get copies; deciders (verdict subscriptions) are ordered by priority, then age.
struct SubscriptionTable {
  std::vector<Subscription> observers;
  std::vector<Subscription> deciders;
};

}  // namespace pktbroker
