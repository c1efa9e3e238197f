// Rebuilds fragmented IPv4 and IPv6 packets of a capture (DNS answers over UDP are the usual
// case). Written here rather than with libtins' IPv4Reassembler: that one keys datagrams by an
// unordered address pair without the protocol (two directions' pieces mix), keeps them without
// bound, and does no IPv6.
#pragma once

#include "pktbroker/packet_view.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <tuple>
#include <vector>

namespace pktbroker::replay {

class Defragmenter {
 public:
  /// Takes one fragment (`view.fragment`) captured at `time`; returns the whole packet once
  /// its last piece is in.
  std::optional<std::vector<std::uint8_t>> add(std::span<const std::uint8_t> ip,
                                               const PacketView& view,
                                               std::chrono::nanoseconds time);

  /// An IPv6 packet with an atomic Fragment header (offset 0, no more fragments: RFC 6946) as
  /// the whole packet it is, without that header; none when it has no such header.
  static std::optional<std::vector<std::uint8_t>> without_atomic_fragment(
      std::span<const std::uint8_t> ip);

  /// Fragments that never became a whole packet (a piece missing, overlapping, too big, too
  /// old, or too many datagrams waiting).
  [[nodiscard]] std::uint64_t unused() const noexcept { return fragments_ - used_; }
  [[nodiscard]] std::uint64_t reassembled() const noexcept { return reassembled_; }

 private:
  struct Datagram {
    std::vector<std::uint8_t> head;  ///< the first piece's IP header (IPv6: to the Fragment one)
    std::size_t next_header_at = 0;  ///< IPv6: where `head` names the header that follows it
    std::uint8_t protocol = 0;       ///< what follows the reassembled header
    std::map<std::size_t, std::vector<std::uint8_t>> pieces;  ///< by offset
    std::optional<std::size_t> size;                          ///< known once the last piece is in
    std::size_t bytes = 0;                                    ///< in the pieces so far
    std::size_t fragments = 0;
    std::chrono::nanoseconds first_seen{};
  };
  /// family, source, destination, identification, protocol
  using Key = std::tuple<std::uint8_t, std::array<std::uint8_t, 16>, std::array<std::uint8_t, 16>,
                         std::uint32_t, std::uint8_t>;
  struct Piece {
    Key key;
    std::span<const std::uint8_t> head;  ///< empty unless this is the first piece
    std::size_t next_header_at = 0;
    std::size_t offset = 0;
    bool more = false;
    std::span<const std::uint8_t> data;
  };

  static std::optional<Piece> ipv4_piece(std::span<const std::uint8_t> ip, const PacketView& view);
  static std::optional<Piece> ipv6_piece(std::span<const std::uint8_t> ip, const PacketView& view);
  static std::vector<std::uint8_t> rebuild(Datagram& datagram, std::uint8_t family);
  void expire(std::chrono::nanoseconds now);

  std::map<Key, Datagram> pending_;
  std::chrono::nanoseconds last_expiry_{};
  std::uint64_t fragments_ = 0;
  std::uint64_t used_ = 0;
  std::uint64_t reassembled_ = 0;
};

}  // namespace pktbroker::replay
