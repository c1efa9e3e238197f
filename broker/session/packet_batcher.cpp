#include "broker/session/packet_batcher.hpp"

#include "pktbroker/codec.hpp"

#include <algorithm>

namespace pktbroker {

bool PacketBatcher::add(const std::shared_ptr<SessionPort>& port, const proto::Packet& packet) {
  if (!port->reserve()) return false;
  if (!port->takes_batches()) {
    auto datagram = std::make_shared<std::vector<std::uint8_t>>();
    // One allocation: the header and metadata take well under 128 bytes.
    datagram->reserve(proto::header_size + 128 + packet.payload.size());
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
    found->datagram = std::make_shared<std::vector<std::uint8_t>>();
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
