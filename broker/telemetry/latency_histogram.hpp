// How long packets waited for their verdict, in fixed buckets: one per queue, kept on the
// queue's executor (no atomics), exported as pktbroker_verdict_latency_seconds.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace pktbroker {

class LatencyHistogram {
 public:
  /// Upper bounds in seconds, from a policy verdict within one read batch to a client that
  /// answers at its deadline (at most an hour, socket.max_timeout_ms).
  static constexpr std::array<double, 14> bounds = {
      0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 300};

  /// Counts `packets` that each waited `waited`.
  void observe(std::chrono::nanoseconds waited, std::uint64_t packets = 1) noexcept {
    const double seconds = std::chrono::duration<double>(waited).count();
    std::size_t bucket = 0;
    while (bucket < bounds.size() && seconds > bounds[bucket]) ++bucket;
    counts_[bucket] += packets;
    sum_ += seconds * static_cast<double>(packets);
  }

  LatencyHistogram& operator+=(const LatencyHistogram& other) noexcept {
    for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
    sum_ += other.sum_;
    return *this;
  }

  /// Packets per bucket; the last holds those above every bound.
  [[nodiscard]] const std::array<std::uint64_t, bounds.size() + 1>& counts() const noexcept {
    return counts_;
  }
  [[nodiscard]] double sum_seconds() const noexcept { return sum_; }

 private:
  std::array<std::uint64_t, bounds.size() + 1> counts_{};
  double sum_ = 0;
};

}  // namespace pktbroker
