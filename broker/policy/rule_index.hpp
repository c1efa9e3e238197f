// Narrows the rules one packet is tested against, keeping first-match order.
#pragma once

#include "broker/packet_meta.hpp"
#include "broker/policy/interval_index.hpp"
#include "pktbroker/packet_view.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace pktbroker {

class Matcher;

/// Rules are split into buckets by the IP protocols they require (rules that name no protocol
/// are in every bucket). Within a bucket each rule is filed under one selective field, the first
/// it requires of: destination ports, destination addresses, source addresses, mark (grouped by
/// mask); a rule with none of them (or too wide a range, see IntervalIndex, or a mask beyond the
/// max_mark_masks most used) is tried for every packet of the bucket. A packet looks up its
/// protocol's bucket, then its destination port, addresses and mark there, and tests the rules
/// found in increasing rule order: the first that matches is the answer, exactly as a scan of
/// every rule would give.
class RuleIndex {
 public:
  static constexpr std::size_t no_match = static_cast<std::size_t>(-1);
  /// Distinct mark masks indexed per bucket.
  static constexpr std::size_t max_mark_masks = 4;

  RuleIndex() = default;
  /// `matchers[i]` is rule i's; they must outlive the index. A null one is never matched.
  explicit RuleIndex(std::vector<const Matcher*> matchers);

  /// Index of the first rule that matches, or no_match. Never throws, never allocates.
  [[nodiscard]] std::size_t first_match(const PacketMeta& meta,
                                        const PacketView& view) const noexcept;

  /// Number of rules `first_match` tests at most for this packet (for tests and diagnostics).
  [[nodiscard]] std::size_t candidates(const PacketMeta& meta,
                                       const PacketView& view) const noexcept;

 private:
  struct MarkGroup {
    std::uint32_t mask = 0;
    IntervalIndex<std::uint32_t> values;  ///< keyed by packet mark & mask
  };
  struct Bucket {
    std::vector<std::uint32_t> every_packet;  ///< increasing rule indices
    IntervalIndex<std::uint16_t> dport;
    IntervalIndex<std::uint32_t> dst4;
    IntervalIndex<std::uint32_t> src4;
    IntervalIndex<Ipv6Key> dst6;
    IntervalIndex<Ipv6Key> src6;
    std::vector<MarkGroup> marks;  ///< at most max_mark_masks
  };
  using Lists = std::array<std::span<const std::uint32_t>, 4 + max_mark_masks>;

  void build_bucket(Bucket& bucket, std::optional<std::uint8_t> protocol);
  [[nodiscard]] Lists lookup(const PacketMeta& meta, const PacketView& view) const noexcept;

  std::vector<const Matcher*> matchers_;
  std::array<std::uint16_t, 256> bucket_of_protocol_{};  ///< 0: a protocol no rule names
  std::vector<Bucket> buckets_;
};

}  // namespace pktbroker
