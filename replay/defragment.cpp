#include "replay/defragment.hpp"

#include <tins/ip.h>

#include <algorithm>
#include <iterator>

namespace pktbroker::replay {
namespace {

constexpr std::size_t ipv6_header = 40;
constexpr std::uint8_t ipv6_fragment_header = 44;
constexpr std::size_t max_datagram = 65535;
constexpr std::size_t max_pending_ipv6 = 1024;  // datagrams waiting for pieces
constexpr int max_headers = 8;                  // extension headers before the Fragment header

std::uint16_t be16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}

std::uint32_t be32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         p[3];
}

}  // namespace

std::optional<std::vector<std::uint8_t>> Defragmenter::add(std::span<const std::uint8_t> ip,
                                                           const PacketView& view) {
  ++fragments_;
  auto whole = view.ip_version == 4 ? add_ipv4(ip) : add_ipv6(ip, view);
  if (whole) ++reassembled_;
  return whole;
}

std::optional<std::vector<std::uint8_t>> Defragmenter::add_ipv4(
    std::span<const std::uint8_t> bytes) {
  Tins::IP ip(bytes.data(), static_cast<std::uint32_t>(bytes.size()));
  const auto key = std::tuple(ip.id(), static_cast<std::uint32_t>(ip.src_addr()),
                              static_cast<std::uint32_t>(ip.dst_addr()));
  if (ipv4_.process(ip) != Tins::IPv4Reassembler::REASSEMBLED) {
    ++ipv4_pieces_[key];
    return std::nullopt;
  }
  used_ += ipv4_pieces_[key] + 1;
  ipv4_pieces_.erase(key);
  return ip.serialize();
}

// RFC 8200 4.5: the headers before the Fragment header are the same in every piece; the
// pieces' payloads, at their offsets, make the rest.
std::optional<std::vector<std::uint8_t>> Defragmenter::add_ipv6(std::span<const std::uint8_t> ip,
                                                                const PacketView& view) {
  // Find the Fragment header: each header before it names the next and says its length.
  std::size_t at = ipv6_header;
  std::size_t next_at = 6;
  for (int headers = 0;; ++headers) {
    if (at + 8 > ip.size() || headers == max_headers) return std::nullopt;
    if (ip[next_at] == ipv6_fragment_header) break;
    const std::size_t length =
        ip[next_at] == 51 ? (std::size_t{ip[at + 1]} + 2) * 4 : (std::size_t{ip[at + 1]} + 1) * 8;
    next_at = at;
    at += length;
  }
  const std::uint16_t field = be16(&ip[at + 2]);
  const std::size_t offset = field & 0xfff8;
  const bool more = (field & 1) != 0;
  const std::size_t end = std::min<std::size_t>(view.ip_length, ip.size());
  if (end < at + 8) return std::nullopt;
  std::vector<std::uint8_t> piece(ip.begin() + static_cast<long>(at + 8),
                                  ip.begin() + static_cast<long>(end));
  if (piece.empty()) return std::nullopt;

  Ipv6Key key{view.src.bytes, view.dst.bytes, be32(&ip[at + 4])};
  auto found = ipv6_.find(key);
  if (found == ipv6_.end()) {
    if (ipv6_.size() >= max_pending_ipv6) return std::nullopt;
    found = ipv6_.emplace(key, Ipv6Datagram{}).first;
  }
  Ipv6Datagram& datagram = found->second;
  ++datagram.fragments;
  if (offset == 0) {
    datagram.head.assign(ip.begin(), ip.begin() + static_cast<long>(at));
    datagram.next_header_at = next_at;
    datagram.next_header = ip[at];
  }
  if (!more) datagram.size = offset + piece.size();
  // Overlaps are refused as RFC 5722 says; an exact repeat is a retransmission.
  const auto after = datagram.pieces.lower_bound(offset);
  const bool overlaps =
      (after != datagram.pieces.end() && after->first < offset + piece.size() &&
       !(after->first == offset && after->second == piece)) ||
      (after != datagram.pieces.begin() &&
       std::prev(after)->first + std::prev(after)->second.size() > offset);
  if (overlaps || offset + piece.size() > max_datagram ||
      (datagram.size && offset + piece.size() > *datagram.size)) {
    datagram.broken = true;
  }
  datagram.pieces.emplace(offset, std::move(piece));
  if (datagram.broken || !datagram.size || datagram.head.empty()) return std::nullopt;

  std::size_t covered = 0;
  for (const auto& [start, data] : datagram.pieces) {
    if (start != covered) return std::nullopt;  // a piece is missing
    covered += data.size();
  }
  if (covered != *datagram.size || datagram.head.size() + covered > max_datagram) {
    return std::nullopt;
  }
  std::vector<std::uint8_t> whole = std::move(datagram.head);
  whole[datagram.next_header_at] = datagram.next_header;
  for (const auto& [start, data] : datagram.pieces) whole.insert(whole.end(), data.begin(), data.end());
  const std::size_t payload = whole.size() - ipv6_header;
  whole[4] = static_cast<std::uint8_t>(payload >> 8);
  whole[5] = static_cast<std::uint8_t>(payload);
  used_ += datagram.fragments;
  ipv6_.erase(found);
  return whole;
}

}  // namespace pktbroker::replay
