// One direction of a TCP stream as a plugin reads it, in flow state (plain memory the host
// zeroes, so every type here is valid all-zero and has no destructor: a plugin frees what it
// holds with `clear` in flow_close). StreamCursor says which bytes of a segment are new;
// HeldBytes keeps bytes between segments, on the heap only while it keeps some; TcpStream adds
// the segments that arrived ahead of a gap, kept until the gap fills, so out-of-order data is
// read in order instead of passing unseen.
#pragma once

#include "pktbroker/plugin.h"

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

namespace pktbroker::plugins {

/// Bytes one plugin's buffers may hold across all its flows (every queue): a plugin's global
/// state owns one, so many flows holding partial heads cannot take the broker's memory.
class ByteBudget {
 public:
  explicit ByteBudget(std::size_t limit) noexcept : left_(limit) {}
  [[nodiscard]] bool take(std::size_t n) noexcept {
    std::size_t left = left_.load(std::memory_order_relaxed);
    do {
      if (left < n) return false;
    } while (!left_.compare_exchange_weak(left, left - n, std::memory_order_relaxed));
    return true;
  }
  void give(std::size_t n) noexcept { left_.fetch_add(n, std::memory_order_relaxed); }
  [[nodiscard]] std::size_t left() const noexcept { return left_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::size_t> left_;
};

/// Bytes kept between segments. Nothing allocated while empty; freed when emptied.
struct HeldBytes {
  std::uint8_t* data;
  std::uint32_t size;
  std::uint32_t capacity;

  /// Appends all of `bytes`, or nothing (false) when more than `limit` bytes would be held or
  /// the memory (or the budget) is refused.
  [[nodiscard]] bool append(std::span<const std::uint8_t> bytes, std::size_t limit,
                            ByteBudget* budget) noexcept {
    if (bytes.empty()) return true;
    if (!reserve(std::size_t{size} + bytes.size(), limit, budget)) return false;
    std::memcpy(data + size, bytes.data(), bytes.size());
    size += static_cast<std::uint32_t>(bytes.size());
    return true;
  }
  /// Puts `bytes` before what is held (same limits as append).
  [[nodiscard]] bool prepend(std::span<const std::uint8_t> bytes, std::size_t limit,
                             ByteBudget* budget) noexcept {
    if (bytes.empty()) return true;
    if (!reserve(std::size_t{size} + bytes.size(), limit, budget)) return false;
    std::memmove(data + bytes.size(), data, size);
    std::memcpy(data, bytes.data(), bytes.size());
    size += static_cast<std::uint32_t>(bytes.size());
    return true;
  }
  [[nodiscard]] std::span<const std::uint8_t> view() const noexcept { return {data, size}; }
  [[nodiscard]] bool empty() const noexcept { return size == 0; }
  /// Forgets the first n bytes; frees the memory when nothing is left.
  void consume(std::size_t n, ByteBudget* budget) noexcept {
    if (n >= size) {
      clear(budget);
      return;
    }
    std::memmove(data, data + n, size - n);
    size -= static_cast<std::uint32_t>(n);
  }
  /// Forgets everything and frees the memory.
  void clear(ByteBudget* budget) noexcept {
    std::free(data);
    if (budget != nullptr) budget->give(capacity);
    data = nullptr;
    size = capacity = 0;
  }

 private:
  bool reserve(std::size_t needed, std::size_t limit, ByteBudget* budget) noexcept {
    if (needed > limit) return false;
    if (needed <= capacity) return true;
    constexpr std::size_t smallest = 256;
    std::size_t grown = std::bit_ceil(needed < smallest ? smallest : needed);
    if (grown > limit) grown = limit;
    if (budget != nullptr && !budget->take(grown - capacity)) return false;
    void* moved = std::realloc(data, grown);
    if (moved == nullptr) {
      if (budget != nullptr) budget->give(grown - capacity);
      return false;
    }
    data = static_cast<std::uint8_t*>(moved);
    capacity = static_cast<std::uint32_t>(grown);
    return true;
  }
};

/// Where one direction of a TCP stream is: which bytes of a segment are new.
struct StreamCursor {
  enum class Added : std::uint8_t { data, nothing_new, gap };

  std::uint32_t next_seq;  ///< the sequence number of the next byte wanted
  bool started;

  /// The segment's bytes not seen before, in stream order (`data`), or why there are none:
  /// `nothing_new` (empty, a retransmission) or `gap` (bytes before it are missing).
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
};

/// A TCP stream read in order: the cursor, and one run of bytes that arrived ahead of a gap.
struct TcpStream {
  enum class Added : std::uint8_t {
    data,         ///< `fresh` holds the segment's new bytes, in order
    nothing_new,  ///< nothing new (empty, a retransmission)
    kept_ahead,   ///< ahead of a gap: kept, to be read when the gap fills (see `resume`)
    lost,         ///< ahead of a gap and not kept (a second gap, over the limit, no memory)
  };

  StreamCursor cursor;
  std::uint32_t ahead_seq;  ///< the sequence number of ahead.data[0]
  HeldBytes ahead;

  /// `limit` bounds the bytes kept ahead of a gap.
  Added take(const pktb_packet& packet, std::span<const std::uint8_t>& fresh, std::size_t limit,
             ByteBudget* budget) noexcept {
    switch (cursor.take(packet, fresh)) {
      case StreamCursor::Added::data: return Added::data;
      case StreamCursor::Added::nothing_new: return Added::nothing_new;
      case StreamCursor::Added::gap: break;
    }
    return keep_ahead(packet, limit, budget);
  }

  /// After the caller read `fresh`: the kept bytes that now follow the cursor (empty when a
  /// gap remains or nothing is kept). The cursor moves past them; call `done_ahead` after
  /// reading them.
  [[nodiscard]] std::span<const std::uint8_t> resume(ByteBudget* budget) noexcept {
    if (ahead.empty()) return {};
    const auto behind = static_cast<std::int32_t>(cursor.next_seq - ahead_seq);
    if (behind < 0) return {};  // still a gap
    if (static_cast<std::uint32_t>(behind) >= ahead.size) {
      done_ahead(budget);  // the caller skipped past them (a body it did not need to read)
      return {};
    }
    const auto rest = ahead.view().subspan(static_cast<std::uint32_t>(behind));
    cursor.next_seq += static_cast<std::uint32_t>(rest.size());
    return rest;
  }
  void done_ahead(ByteBudget* budget) noexcept { ahead.clear(budget); }
  void clear(ByteBudget* budget) noexcept { ahead.clear(budget); }

 private:
  Added keep_ahead(const pktb_packet& packet, std::size_t limit, ByteBudget* budget) noexcept {
    const std::span<const std::uint8_t> bytes{packet.l4_data, packet.l4_len};
    if (ahead.empty()) {
      if (!ahead.append(bytes, limit, budget)) return Added::lost;
      ahead_seq = packet.tcp_seq;
      return Added::kept_ahead;
    }
    const std::uint32_t end = ahead_seq + ahead.size;
    const auto from_end = static_cast<std::int32_t>(packet.tcp_seq - end);
    const auto from_start = static_cast<std::int32_t>(packet.tcp_seq - ahead_seq);
    if (from_end > 0) return Added::lost;  // a second gap: one run is kept
    if (from_start >= 0) {                 // starts within the run: keep what goes past it
      const auto skip = static_cast<std::size_t>(-static_cast<std::int64_t>(from_end));
      if (skip >= bytes.size()) return Added::kept_ahead;  // a retransmission
      return ahead.append(bytes.subspan(skip), limit, budget) ? Added::kept_ahead : Added::lost;
    }
    // Starts before the run: it must reach it, and then comes first.
    const auto before = static_cast<std::size_t>(-static_cast<std::int64_t>(from_start));
    const std::size_t run = ahead.size;
    if (bytes.size() < before) return Added::lost;
    if (!ahead.prepend(bytes.first(before), limit, budget)) return Added::lost;
    ahead_seq = packet.tcp_seq;
    if (bytes.size() > before + run && !ahead.append(bytes.subspan(before + run), limit, budget)) {
      return Added::lost;
    }
    return Added::kept_ahead;
  }
};

}  // namespace pktbroker::plugins
