// Collects verdicts and sends them to the kernel in as few sendmsg calls as possible.
#pragma once

#include "broker/verdict.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

namespace pktbroker {

/// True when packet id `a` was issued before `b` (ids are a wrapping 32-bit sequence).
constexpr bool id_before(std::uint32_t a, std::uint32_t b) noexcept {
  return static_cast<std::int32_t>(a - b) < 0;
}

/// Verdicts are packed many to one sendmsg. A run of consecutive ids with the same verdict
/// becomes one NFQNL_MSG_VERDICT_BATCH, but only when that is safe: the kernel's batch verdict
/// covers every queued id up to the last one, so no earlier packet may still await a decision.
class VerdictWriter {
 public:
  struct Counters {
    std::uint64_t sends = 0;            ///< sendmsg calls
    std::uint64_t messages = 0;         ///< individual verdict messages
    std::uint64_t batch_messages = 0;   ///< NFQNL_MSG_VERDICT_BATCH messages
    std::uint64_t batched_packets = 0;  ///< packets covered by batch messages
  };

  /// Sends one buffer of netlink messages; returns 0 or an errno value.
  using Sender = std::function<int(std::span<const std::uint8_t>)>;

  VerdictWriter(std::uint16_t queue, Sender send);

  void add(std::uint32_t packet_id, const Verdict& verdict);
  /// A verdict that also replaces the packet's bytes (copied; sent as its own message).
  void add(std::uint32_t packet_id, const Verdict& verdict,
           std::span<const std::uint8_t> replacement);
  [[nodiscard]] bool empty() const noexcept { return entries_.empty(); }

  /// Sends everything added. `oldest_pending` is the oldest packet id that was received and is
  /// still waiting for a verdict from elsewhere (a client, a plugin), if any.
  /// Returns 0 or the errno of a failed send (those verdicts are lost to the kernel).
  int flush(std::optional<std::uint32_t> oldest_pending = std::nullopt) noexcept;

  [[nodiscard]] const Counters& counters() const noexcept { return counters_; }

 private:
  struct Entry {
    std::uint32_t id;
    Verdict verdict;
    std::vector<std::uint8_t> replacement;  ///< empty: the packet is unchanged
  };

  void put_single(const Entry& entry) noexcept;
  void put_batch(std::uint32_t last_id, const Verdict& verdict) noexcept;
  void reserve_message(std::size_t size) noexcept;
  int send_buffer() noexcept;

  std::uint16_t queue_;
  Sender send_;
  std::vector<Entry> entries_;
  std::vector<std::uint8_t> buffer_;
  std::size_t used_ = 0;
  int send_error_ = 0;
  Counters counters_;
};

}  // namespace pktbroker
