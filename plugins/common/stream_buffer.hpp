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
    std::span<const std::uint8_t> fresh;
    const Added taken = take(packet, fresh);
    if (taken != Added::data) return taken;
    return append(fresh) < fresh.size() ? Added::full : Added::data;
  }

  /// The segment's bytes not seen before, in stream order, without keeping them (`data`), or
  /// why there are none: `nothing_new` (empty, a retransmission) or `gap` (bytes are missing).
  Added take(const pktb_packet& packet, std::span<const std::uint8_t>& fresh) noexcept {
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
    fresh = {packet.l4_data + skip, packet.l4_len - skip};
    next_seq += static_cast<std::uint32_t>(fresh.size());
    return Added::data;
  }

  /// Keeps what fits of `data`; returns how many bytes that was.
  std::size_t append(std::span<const std::uint8_t> data) noexcept {
    const std::size_t room = Capacity - size;
    const std::size_t copied = data.size() < room ? data.size() : room;
    if (copied != 0) std::memcpy(bytes + size, data.data(), copied);
    size += static_cast<std::uint32_t>(copied);
    return copied;
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
