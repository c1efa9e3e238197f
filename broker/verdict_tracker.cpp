#include "broker/verdict_tracker.hpp"

#include <algorithm>

namespace pktbroker {

PacketToken VerdictTracker::track(const Pending& pending) {
  const PacketToken token = (static_cast<PacketToken>(queue_) << 48) | next_sequence_++;
  Pending& entry = pending_.emplace(token, pending).first->second;
  entry.tracked_at = Clock::now();
  by_deadline_.emplace(pending.deadline, token);
  entry.out_of_order = newest_id_ && IdOrder{}(pending.packet_id, *newest_id_);
  if (entry.out_of_order) {
    out_of_order_ids_.insert(pending.packet_id);
  } else {
    newest_id_ = pending.packet_id;
  }
  return token;
}

VerdictTracker::ResolveResult VerdictTracker::take(PacketToken token, SessionId session,
                                                   Pending& out) {
  const auto found = pending_.find(token);
  if (found == pending_.end()) return ResolveResult::unknown_token;
  if (found->second.owner != session) return ResolveResult::not_owner;
  out = std::move(found->second);
  by_deadline_.erase({out.deadline, token});
  pending_.erase(found);
  forget_order(out);
  waits_.observe(Clock::now() - out.tracked_at);
  return ResolveResult::resolved;
}

std::optional<std::uint32_t> VerdictTracker::oldest_packet_id() const noexcept {
  if (pending_.empty()) return std::nullopt;
  const std::uint32_t first = pending_.begin()->second.packet_id;
  if (out_of_order_ids_.empty()) return first;
  const std::uint32_t apart = *out_of_order_ids_.begin();
  return IdOrder{}(apart, first) ? apart : first;
}

std::optional<Clock::time_point> VerdictTracker::next_deadline() const noexcept {
  if (by_deadline_.empty()) return std::nullopt;
  return by_deadline_.begin()->first;
}

std::size_t VerdictTracker::owned_by(SessionId session) const noexcept {
  return static_cast<std::size_t>(
      std::count_if(pending_.begin(), pending_.end(),
                    [session](const auto& entry) { return entry.second.owner == session; }));
}

}  // namespace pktbroker
