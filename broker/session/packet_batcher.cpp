#include "broker/session/packet_batcher.hpp"

#include "pktbroker/codec.hpp"

#include <algorithm>
#include <atomic>

namespace pktbroker {
namespace {

constexpr std::size_t pool_size = 64;                   // datagrams kept, per queue
constexpr std::size_t max_pooled_capacity = 128 << 10;  // a larger one is not kept
constexpr std::size_t first_capacity = 4096;

}  // namespace

// A pooled datagram whose only owner is the pool was written and released by its session (on
// another strand): the acquire fence pairs with that release before the bytes are reused.
PacketBatcher::Datagram PacketBatcher::take_datagram() {
  for (std::size_t tried = 0; tried < pool_.size(); ++tried) {
    Datagram& candidate = pool_[next_in_pool_];
    next_in_pool_ = (next_in_pool_ + 1) % pool_.size();
    if (candidate.use_count() != 1) continue;
    std::atomic_thread_fence(std::memory_order_acquire);
    if (candidate->capacity() > max_pooled_capacity) {
      candidate = std::make_shared<std::vector<std::uint8_t>>();
      candidate->reserve(first_capacity);
    }
    candidate->clear();
    return candidate;
  }
  // Every pooled one is in flight: a new one takes a place, and one a session still holds (a
  // client that does not read, say) lives on with that session alone.
  auto fresh = std::make_shared<std::vector<std::uint8_t>>();
  fresh->reserve(first_capacity);
  if (pool_.size() < pool_size) {
    pool_.push_back(fresh);
  } else {
    pool_[next_in_pool_] = fresh;
    next_in_pool_ = (next_in_pool_ + 1) % pool_.size();
  }
  return fresh;
}

bool PacketBatcher::add(const std::shared_ptr<SessionPort>& port, const proto::Packet& packet) {
  if (!port->reserve()) return false;
  if (!port->takes_batches()) {
    Datagram datagram = take_datagram();
    (void)proto::encode(packet, 0, *datagram);  // a lone packet always fits
    port->deliver(std::move(datagram), 1);
    ++datagrams_;
    return true;
  }
  auto found = std::find_if(pending_.begin(), pending_.end(),
                            [&port](const Pending& p) { return p.port == port; });
  if (found != pending_.end() && proto::append_to_batch(*found->datagram, packet)) {
    // The datagram is full: it goes now, the packet starts the session's next one.
    port->deliver(std::move(found->datagram), found->packets);
    ++datagrams_;
    *found = {port, nullptr, 0};
  }
  if (found == pending_.end()) found = pending_.insert(pending_.end(), {port, nullptr, 0});
  if (!found->datagram) {
    found->datagram = take_datagram();
    (void)proto::append_to_batch(*found->datagram, packet);  // a lone packet always fits
  }
  ++found->packets;
  return true;
}

void PacketBatcher::flush() {
  for (Pending& p : pending_) p.port->deliver(std::move(p.datagram), p.packets);
  datagrams_ += pending_.size();
  pending_.clear();
}

}  // namespace pktbroker
