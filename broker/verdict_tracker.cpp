#include "broker/verdict_tracker.hpp"

#include <algorithm>

namespace pktbroker {

template <int Which, typename Less>
void VerdictTracker::SlotHeap<Which, Less>::push(std::uint32_t slot) noexcept {
  heap_.push_back(slot);
  place(heap_.size() - 1, slot);
  sift_up(heap_.size() - 1);
}

template <int Which, typename Less>
void VerdictTracker::SlotHeap<Which, Less>::erase(std::uint32_t slot) noexcept {
  const std::size_t at = slots_[slot].heap_position[Which];
  slots_[slot].heap_position[Which] = none;
  const std::uint32_t last = heap_.back();
  heap_.pop_back();
  if (at == heap_.size()) return;  // it was the last
  place(at, last);
  sift_up(at);
  sift_down(slots_[last].heap_position[Which]);
}

template <int Which, typename Less>
void VerdictTracker::SlotHeap<Which, Less>::sift_up(std::size_t at) noexcept {
  const std::uint32_t slot = heap_[at];
  while (at > 0) {
    const std::size_t parent = (at - 1) / 2;
    if (!Less{}(slots_[slot], slots_[heap_[parent]])) break;
    place(at, heap_[parent]);
    at = parent;
  }
  place(at, slot);
}

template <int Which, typename Less>
void VerdictTracker::SlotHeap<Which, Less>::sift_down(std::size_t at) noexcept {
  const std::uint32_t slot = heap_[at];
  for (;;) {
    std::size_t child = 2 * at + 1;
    if (child >= heap_.size()) break;
    if (child + 1 < heap_.size() && Less{}(slots_[heap_[child + 1]], slots_[heap_[child]])) {
      ++child;
    }
    if (!Less{}(slots_[heap_[child]], slots_[slot])) break;
    place(at, heap_[child]);
    at = child;
  }
  place(at, slot);
}

PacketToken VerdictTracker::track(const Pending& pending) {
  const std::uint32_t slot = allocate();
  const PacketToken token = (static_cast<PacketToken>(queue_) << 48) | next_sequence_++;
  Slot& entry = slots_[slot];
  entry.pending = pending;
  entry.pending.tracked_at = Clock::now();
  entry.pending.out_of_order = newest_id_ && id_before(pending.packet_id, *newest_id_);
  entry.token = token;
  std::size_t at = home(token);
  while (index_[at] != none) at = (at + 1) & (index_.size() - 1);
  index_[at] = slot;
  entry.older = newest_;
  entry.newer = none;
  (newest_ != none ? slots_[newest_].newer : oldest_) = slot;
  newest_ = slot;
  by_deadline_.push(slot);
  if (entry.pending.out_of_order) {
    out_of_order_.push(slot);
  } else {
    newest_id_ = pending.packet_id;
  }
  return token;
}

// Grows the slab only past the most entries it has held; the index stays at most half full.
std::uint32_t VerdictTracker::allocate() {
  if (free_slots_.empty()) {
    // Everything that can throw first; the new slots become free only once all is in place.
    const std::size_t old_size = slots_.size();
    const std::size_t slots = std::max<std::size_t>(64, old_size * 2);
    free_slots_.reserve(slots);
    by_deadline_.reserve(slots);
    out_of_order_.reserve(slots);
    std::vector<std::uint32_t> index(slots * 2, none);
    slots_.resize(slots);
    index_.swap(index);
    reindex();
    for (std::size_t i = slots; i-- > old_size;)
      free_slots_.push_back(static_cast<std::uint32_t>(i));
  }
  const std::uint32_t slot = free_slots_.back();
  free_slots_.pop_back();
  return slot;
}

void VerdictTracker::reindex() noexcept {
  for (std::uint32_t at = oldest_; at != none; at = slots_[at].newer) {
    std::size_t i = home(slots_[at].token);
    while (index_[i] != none) i = (i + 1) & (index_.size() - 1);
    index_[i] = at;
  }
}

std::uint32_t VerdictTracker::find(PacketToken token) const noexcept {
  if (index_.empty()) return none;
  for (std::size_t at = home(token);; at = (at + 1) & (index_.size() - 1)) {
    if (index_[at] == none || slots_[index_[at]].token == token) return index_[at];
  }
}

// Linear probing's deletion without tombstones: later entries of the same run move back
// into the gap when the gap lies on their way from home.
void VerdictTracker::unindex(std::uint32_t slot) noexcept {
  const std::size_t mask = index_.size() - 1;
  std::size_t gap = home(slots_[slot].token);
  while (index_[gap] != slot) gap = (gap + 1) & mask;
  for (std::size_t at = (gap + 1) & mask; index_[at] != none; at = (at + 1) & mask) {
    const std::size_t wanted = home(slots_[index_[at]].token);
    if (((at - wanted) & mask) >= ((at - gap) & mask)) {
      index_[gap] = index_[at];
      gap = at;
    }
  }
  index_[gap] = none;
}

VerdictTracker::Pending VerdictTracker::remove(std::uint32_t slot) noexcept {
  Slot& entry = slots_[slot];
  unindex(slot);
  by_deadline_.erase(slot);
  if (entry.heap_position[1] != none) out_of_order_.erase(slot);
  (entry.older != none ? slots_[entry.older].newer : oldest_) = entry.newer;
  (entry.newer != none ? slots_[entry.newer].older : newest_) = entry.older;
  entry.older = entry.newer = none;
  entry.token = 0;
  free_slots_.push_back(slot);  // never allocates: reserved with the slab
  return std::move(entry.pending);
}

VerdictTracker::ResolveResult VerdictTracker::take(PacketToken token, SessionId session,
                                                   Pending& out) {
  const std::uint32_t slot = find(token);
  if (slot == none) return ResolveResult::unknown_token;
  if (slots_[slot].pending.owner != session) return ResolveResult::not_owner;
  out = remove(slot);
  waits_.observe(Clock::now() - out.tracked_at);
  return ResolveResult::resolved;
}

std::optional<std::uint32_t> VerdictTracker::oldest_packet_id() const noexcept {
  if (oldest_ == none) return std::nullopt;
  const std::uint32_t first = slots_[oldest_].pending.packet_id;
  if (out_of_order_.empty()) return first;
  const Slot& apart = slots_[out_of_order_.top()];
  return LowerId{}(apart, slots_[oldest_]) ? apart.pending.packet_id : first;
}

std::optional<Clock::time_point> VerdictTracker::next_deadline() const noexcept {
  if (by_deadline_.empty()) return std::nullopt;
  return slots_[by_deadline_.top()].pending.deadline;
}

std::size_t VerdictTracker::owned_by(SessionId session) const noexcept {
  std::size_t owned = 0;
  for (std::uint32_t at = oldest_; at != none; at = slots_[at].newer) {
    owned += slots_[at].pending.owner == session ? 1 : 0;
  }
  return owned;
}

}  // namespace pktbroker
