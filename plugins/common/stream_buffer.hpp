// The first bytes of one direction of a TCP stream, in order, in fixed space (flow state is
// plain memory the host zeroes). Out-of-order segments are skipped: the sender retransmits.
#pragma once

#include "pktbroker/plugin.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace pktbroker::plugins {

template <std::size_t Capacity>
struct StreamBuffer {
  enum class Added : std::uint8_t { data, nothing_new, gap, full };

  std::uint32_t next_seq;
  bool started;
  std::uint32_t size;
  std::uint8_t bytes[Capacity];

  /// Appends the segment's new bytes. `full` when some did not fit (what fits is kept).
  Added add(const pktb_packet& packet) noexcept {
    constexpr std::uint8_t syn = 0x02;
    if ((packet.tcp_flags & syn) != 0) {
      next_seq = packet.tcp_seq + 1;  // SYN takes one sequence number
      started = true;
    }
    if (packet.l4_len == 0 || packet.l4_data == nullptr) return Added::nothing_new;
    if (!started) {  // picked up mid-stream
      next_seq = packet.tcp_seq;
      started = true;
    }
    const auto ahead = static_cast<std::int32_t>(packet.tcp_seq - next_seq);
    if (ahead > 0) return Added::gap;
    const auto skip = static_cast<std::size_t>(-static_cast<std::int64_t>(ahead));
    if (skip >= packet.l4_len) return Added::nothing_new;  // a retransmission
    const std::size_t fresh = packet.l4_len - skip;
    const std::size_t room = Capacity - size;
    const std::size_t copied = fresh < room ? fresh : room;
    std::memcpy(bytes + size, packet.l4_data + skip, copied);
    size += static_cast<std::uint32_t>(copied);
    next_seq += static_cast<std::uint32_t>(fresh);
    return copied < fresh ? Added::full : Added::data;
  }

  [[nodiscard]] std::span<const std::uint8_t> view() const noexcept { return {bytes, size}; }
  /// Forgets the first n bytes (consumed lines).
  void consume(std::size_t n) noexcept {
    if (n >= size) {
      size = 0;
      return;
    }
    std::memmove(bytes, bytes + n, size - n);
    size -= static_cast<std::uint32_t>(n);
  }
};

}  // namespace pktbroker::plugins
