// Rebuilds fragmented IPv4 and IPv6 packets of a capture (DNS answers over UDP are the usual
// case). IPv4 goes to libtins' reassembler; IPv6, which libtins does not reassemble, is done here.
#pragma once

#include "pktbroker/packet_view.hpp"

#include <tins/ip_reassembler.h>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <tuple>
#include <vector>

namespace pktbroker::replay {

class Defragmenter {
 public:
  /// Takes one fragment (`view.fragment`); returns the whole packet once its last piece is in.
  std::optional<std::vector<std::uint8_t>> add(std::span<const std::uint8_t> ip,
                                               const PacketView& view);

  /// Fragments that never became a whole packet (a piece missing, overlapping, or too big).
  [[nodiscard]] std::uint64_t unused() const noexcept { return fragments_ - used_; }
  [[nodiscard]] std::uint64_t reassembled() const noexcept { return reassembled_; }

 private:
  struct Ipv6Datagram {
    std::vector<std::uint8_t> head;  ///< the IPv6 header and the headers before the fragment's
    std::size_t next_header_at = 6;  ///< where `head` names the header that follows it
    std::uint8_t next_header = 0;    ///< what the fragment header said comes after it
    std::map<std::size_t, std::vector<std::uint8_t>> pieces;  ///< by offset
    std::optional<std::size_t> size;  ///< known once the last piece is in
    std::size_t fragments = 0;
    bool broken = false;  ///< overlapping pieces (RFC 5722: the whole datagram is dropped)
  };
  using Ipv6Key = std::tuple<std::array<std::uint8_t, 16>, std::array<std::uint8_t, 16>,
                             std::uint32_t>;

  std::optional<std::vector<std::uint8_t>> add_ipv4(std::span<const std::uint8_t> ip);
  std::optional<std::vector<std::uint8_t>> add_ipv6(std::span<const std::uint8_t> ip,
                                                    const PacketView& view);

  Tins::IPv4Reassembler ipv4_;
  std::map<std::tuple<std::uint16_t, std::uint32_t, std::uint32_t>, std::size_t> ipv4_pieces_;
  std::map<Ipv6Key, Ipv6Datagram> ipv6_;
  std::uint64_t fragments_ = 0;
  std::uint64_t used_ = 0;
  std::uint64_t reassembled_ = 0;
};

}  // namespace pktbroker::replay
