// Packets a queue hands to clients in one round of work, gathered into one datagram per session.
#pragma once

#include "broker/session/subscription_table.hpp"
#include "pktbroker/protocol.hpp"

#include <cstdint>
#include <memory>
#include <vector>

namespace pktbroker {

/// Lives on its queue's strand. A round (a receive batch, a batch of client verdicts) adds its
/// packets, then flush() sends each session one PACKET (a lone packet) or PACKET_BATCH: one
/// write, one wake-up and one read of the client for the whole round. A session that did not
/// ask for batches gets each packet as a PACKET of its own, at once.
class PacketBatcher {
 public:
  /// Counts each datagram sent in `datagrams`.
  explicit PacketBatcher(std::uint64_t& datagrams) noexcept : datagrams_(datagrams) {}

  /// Reserves room in the session's queue and adds the packet (whose payload must be at most
  /// proto::max_payload bytes). False when the session's queue is full or it closed.
  bool add(const std::shared_ptr<SessionPort>& port, const proto::Packet& packet);
  /// Hands every session its datagram.
  void flush();
  [[nodiscard]] bool empty() const noexcept { return pending_.empty(); }

 private:
  using Datagram = std::shared_ptr<std::vector<std::uint8_t>>;
  struct Pending {
    std::shared_ptr<SessionPort> port;
    Datagram datagram;
    std::size_t packets = 0;
  };
  /// An empty datagram: one a session has written and let go when there is one (it keeps its
  /// capacity, so building it allocates nothing), else a new one.
  Datagram take_datagram();

  std::uint64_t& datagrams_;
  std::vector<Pending> pending_;  // a few sessions per round: a linear search is the fastest
  std::vector<Datagram> pool_;    // every datagram kept for reuse, in flight or not
  std::size_t next_in_pool_ = 0;  // where the search for a free one starts
};

}  // namespace pktbroker
