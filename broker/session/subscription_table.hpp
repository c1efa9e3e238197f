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
  /// True when the client asked for PACKET_BATCH datagrams (proto::feature_packet_batch).
  [[nodiscard]] virtual bool takes_batches() const noexcept = 0;
  /// Claims room for one packet in the session's bounded queue; false when it is full or closed.
  virtual bool reserve() noexcept = 0;
  /// Sends a datagram carrying `packets` packets whose room was reserved.
  virtual void deliver(std::shared_ptr<const std::vector<std::uint8_t>> datagram,
                       std::size_t packets) noexcept = 0;
  /// Tells the client that a request of its own failed.
  virtual void report_error(proto::ErrorCode code, std::string text) noexcept = 0;
  /// Counts a packet of this session that took its fallback (timeout, overflow, disconnect).
  virtual void count_fallback() noexcept = 0;
  /// Claims one of the packets the session (and its uid) may hold undecided; false at the bound.
  virtual bool claim_outstanding() noexcept = 0;
  /// A packet the session held was decided, expired or released.
  virtual void release_outstanding() noexcept = 0;
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
  bool untrusted = false;                  ///< the session's peer is not root
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
