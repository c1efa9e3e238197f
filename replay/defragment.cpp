#include "replay/defragment.hpp"

#include <algorithm>
#include <iterator>

namespace pktbroker::replay {
namespace {

constexpr std::size_t ipv6_header = 40;
constexpr std::uint8_t ipv6_fragment_header = 44;
constexpr std::size_t max_datagram = 65535;
constexpr std::size_t max_pending = 1024;  // datagrams waiting for pieces
constexpr std::size_t max_pieces = 128;    // per datagram (8-byte pieces would cost time)
constexpr int max_headers = 8;             // IPv6 extension headers before the Fragment header
constexpr auto max_age = std::chrono::seconds(60);  // RFC 8200's reassembly time

std::uint16_t be16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}

std::uint32_t be32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         p[3];
}

void put16(std::uint8_t* p, std::size_t value) {
  p[0] = static_cast<std::uint8_t>(value >> 8);
  p[1] = static_cast<std::uint8_t>(value);
}

/// The first Fragment header of an IPv6 packet: its offset, and where the header before it
/// names it. None when there is none (or the chain runs past the packet).
std::optional<std::pair<std::size_t, std::size_t>> find_fragment_header(
    std::span<const std::uint8_t> ip) {
  std::size_t at = ipv6_header;
  std::size_t next_at = 6;
  for (int headers = 0; headers < max_headers; ++headers) {
    if (at + 8 > ip.size()) return std::nullopt;
    switch (ip[next_at]) {
      case ipv6_fragment_header: return std::pair(at, next_at);
      case 0:     // hop-by-hop options
      case 43:    // routing
      case 60:    // destination options
      case 51: {  // authentication header
        const std::size_t length = ip[next_at] == 51 ? (std::size_t{ip[at + 1]} + 2) * 4
                                                     : (std::size_t{ip[at + 1]} + 1) * 8;
        next_at = at;
        at += length;
        break;
      }
      default: return std::nullopt;
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::vector<std::uint8_t>> Defragmenter::without_atomic_fragment(
    std::span<const std::uint8_t> ip) {
  if (ip.size() < ipv6_header || ip[0] >> 4 != 6) return std::nullopt;
  const auto found = find_fragment_header(ip);
  if (!found) return std::nullopt;
  const auto [at, next_at] = *found;
  if ((be16(&ip[at + 2]) & 0xfff9) != 0) return std::nullopt;  // a real fragment
  // Up to the IP length: not a frame's padding or FCS; a packet cut short stays as it is.
  const std::size_t length = ipv6_header + be16(&ip[4]);
  if (length > ip.size() || length < at + 8) return std::nullopt;
  std::vector<std::uint8_t> whole(ip.begin(), ip.begin() + static_cast<long>(at));
  whole.insert(whole.end(), ip.begin() + static_cast<long>(at + 8),
               ip.begin() + static_cast<long>(length));
  whole[next_at] = ip[at];
  put16(&whole[4], whole.size() - ipv6_header);
  return whole;
}

std::optional<Defragmenter::Piece> Defragmenter::ipv4_piece(std::span<const std::uint8_t> ip,
                                                            const PacketView& view) {
  const std::size_t header = std::size_t{ip[0] & 0x0fu} * 4;
  const std::size_t end = std::min<std::size_t>(view.ip_length, ip.size());
  if (header < 20 || end <= header) return std::nullopt;
  const std::uint16_t field = be16(&ip[6]);
  Piece piece;
  piece.key = {4, view.src.bytes, view.dst.bytes, be16(&ip[4]), ip[9]};
  piece.offset = std::size_t{field & 0x1fffu} * 8;
  piece.more = (field & 0x2000) != 0;
  if (piece.offset == 0) piece.head = ip.first(header);
  piece.data = ip.subspan(header, end - header);
  return piece;
}

// RFC 8200 4.5: the headers before the Fragment header are the same in every piece; the
// pieces' payloads, at their offsets, make the rest.
std::optional<Defragmenter::Piece> Defragmenter::ipv6_piece(std::span<const std::uint8_t> ip,
                                                            const PacketView& view) {
  const auto found = find_fragment_header(ip);
  if (!found) return std::nullopt;
  const auto [at, next_at] = *found;
  const std::size_t end = std::min<std::size_t>(view.ip_length, ip.size());
  if (end <= at + 8) return std::nullopt;
  const std::uint16_t field = be16(&ip[at + 2]);
  Piece piece;
  piece.key = {6, view.src.bytes, view.dst.bytes, be32(&ip[at + 4]), ip[at]};
  piece.offset = field & 0xfff8u;
  piece.more = (field & 1) != 0;
  if (piece.offset == 0) piece.head = ip.first(at);
  piece.next_header_at = next_at;
  piece.data = ip.subspan(at + 8, end - at - 8);
  return piece;
}

std::optional<std::vector<std::uint8_t>> Defragmenter::add(std::span<const std::uint8_t> ip,
                                                           const PacketView& view,
                                                           std::chrono::nanoseconds time) {
  ++fragments_;
  expire(time);
  const auto piece = view.ip_version == 4 ? ipv4_piece(ip, view) : ipv6_piece(ip, view);
  if (!piece) return std::nullopt;
  auto found = pending_.find(piece->key);
  if (found == pending_.end()) {
    if (pending_.size() >= max_pending) return std::nullopt;
    found = pending_.emplace(piece->key, Datagram{}).first;
    found->second.first_seen = time;
    found->second.protocol = std::get<4>(piece->key);
  }
  Datagram& datagram = found->second;
  ++datagram.fragments;
  if (!piece->head.empty()) {
    datagram.head.assign(piece->head.begin(), piece->head.end());
    datagram.next_header_at = piece->next_header_at;
  }
  const std::size_t end = piece->offset + piece->data.size();
  if (!piece->more) datagram.size = end;
  // Overlapping pieces drop the datagram (RFC 5722); an exact repeat is a retransmission.
  const auto after = datagram.pieces.lower_bound(piece->offset);
  const bool repeat = after != datagram.pieces.end() && after->first == piece->offset &&
                      std::equal(after->second.begin(), after->second.end(), piece->data.begin(),
                                 piece->data.end());
  const bool overlaps =
      !repeat && ((after != datagram.pieces.end() && after->first < end) ||
                  (after != datagram.pieces.begin() &&
                   std::prev(after)->first + std::prev(after)->second.size() > piece->offset));
  const bool past_the_end =
      datagram.size && !datagram.pieces.empty() &&
      datagram.pieces.rbegin()->first + datagram.pieces.rbegin()->second.size() > *datagram.size;
  if (overlaps || end > max_datagram || (datagram.size && end > *datagram.size) || past_the_end ||
      datagram.pieces.size() == max_pieces) {
    pending_.erase(found);
    return std::nullopt;
  }
  if (!repeat) {
    datagram.pieces.emplace(piece->offset, std::vector(piece->data.begin(), piece->data.end()));
    datagram.bytes += piece->data.size();
  }
  // The pieces do not overlap and end by the size: all of it is there once their bytes add up.
  if (!datagram.size || datagram.head.empty() || datagram.bytes != *datagram.size) {
    return std::nullopt;
  }
  if (datagram.head.size() + datagram.bytes > max_datagram) {
    pending_.erase(found);
    return std::nullopt;
  }
  std::vector<std::uint8_t> whole = rebuild(datagram, std::get<0>(piece->key));
  used_ += datagram.fragments;
  ++reassembled_;
  pending_.erase(found);
  return whole;
}

std::vector<std::uint8_t> Defragmenter::rebuild(Datagram& datagram, std::uint8_t family) {
  std::vector<std::uint8_t> whole = std::move(datagram.head);
  for (const auto& [start, data] : datagram.pieces) {
    whole.insert(whole.end(), data.begin(), data.end());
  }
  if (family == 6) {
    whole[datagram.next_header_at] = datagram.protocol;
    put16(&whole[4], whole.size() - ipv6_header);
    return whole;
  }
  put16(&whole[2], whole.size());
  whole[6] &= 0x40;  // keep DF; no more fragments, offset 0
  whole[7] = 0;
  whole[10] = whole[11] = 0;
  const std::size_t header = std::size_t{whole[0] & 0x0fu} * 4;
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i < header; i += 2) sum += be16(&whole[i]);
  while (sum >> 16 != 0) sum = (sum & 0xffff) + (sum >> 16);
  put16(&whole[10], ~sum & 0xffff);
  return whole;
}

// Datagrams whose pieces stopped coming are given up (by capture time).
void Defragmenter::expire(std::chrono::nanoseconds now) {
  if (now - last_expiry_ < std::chrono::seconds(1)) return;
  last_expiry_ = now;
  std::erase_if(pending_,
                [&](const auto& entry) { return now - entry.second.first_seen > max_age; });
}

}  // namespace pktbroker::replay
