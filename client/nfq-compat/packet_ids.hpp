// The packet ids a program sees, as the kernel would give them, and the broker tokens behind them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

namespace pktbroker::nfq {

/// One queue's ids: consecutive from 1 (wrapping like the kernel's 32-bit ids), each naming one
/// broker token until its verdict. Ids are handed out in order, so an id's entry is found by
/// subtraction; decided entries leave from the front.
class PacketIds {
 public:
  /// At most this many ids, from the oldest one waiting to the newest, are remembered; past it
  /// the oldest waiting one is forgotten (the broker has long since given it its fallback) and
  /// counted.
  static constexpr std::size_t max_tracked = 65536;

  /// `first` is the first id handed out (the kernel starts at 1).
  explicit PacketIds(std::uint32_t first = 1) noexcept : first_(first) {}

  /// The next id, now naming `token`.
  std::uint32_t assign(std::uint64_t token);
  /// The token of a waiting `id`, which stops waiting; nullopt when it is not waiting (decided,
  /// forgotten or never handed out: the kernel's ENOENT).
  std::optional<std::uint64_t> take(std::uint32_t id);
  /// The tokens of every waiting id up to and including `id` (a batch verdict), oldest first.
  std::vector<std::uint64_t> take_through(std::uint32_t id);
  [[nodiscard]] std::size_t waiting() const noexcept { return waiting_; }
  [[nodiscard]] std::uint64_t forgotten() const noexcept { return forgotten_; }

 private:
  void drop_decided_front();

  std::deque<std::optional<std::uint64_t>> tokens_;  // tokens_[i] belongs to id first_ + i
  std::uint32_t first_;
  std::size_t waiting_ = 0;
  std::uint64_t forgotten_ = 0;
};

}  // namespace pktbroker::nfq
