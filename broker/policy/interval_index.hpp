// Rules filed under ranges of a key (ports, addresses), looked up by one key value.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace pktbroker {

/// The key right after `key`, or nothing at the top of the key space.
template <typename Key>
std::optional<Key> next_key(Key key) noexcept {
  if (key == static_cast<Key>(~Key{})) return std::nullopt;
  return static_cast<Key>(key + 1);
}

/// An IPv6 address as a 128-bit number (for ordering and ranges).
struct Ipv6Key {
  std::uint64_t high = 0;
  std::uint64_t low = 0;

  friend auto operator<=>(const Ipv6Key&, const Ipv6Key&) = default;
};

template <>
inline std::optional<Ipv6Key> next_key(Ipv6Key key) noexcept {
  if (key.low != ~std::uint64_t{0}) return Ipv6Key{key.high, key.low + 1};
  if (key.high != ~std::uint64_t{0}) return Ipv6Key{key.high + 1, 0};
  return std::nullopt;
}

/// Splits the key space at every range edge into elementary intervals and keeps, per interval,
/// the rules (in increasing rule index) whose ranges cover it. A lookup is a binary search.
template <typename Key>
class IntervalIndex {
 public:
  struct Entry {
    Key first;
    Key last;  ///< inclusive
    std::uint32_t rule;
  };

  /// Entries filed in all intervals together, beyond which wide rules are left out.
  static constexpr std::size_t entry_budget = std::size_t{1} << 18;
  /// A rule may always cover this many intervals.
  static constexpr std::size_t min_cover = 64;

  /// Files every entry's rule under the intervals its ranges cover. `entries` must come in
  /// increasing rule order. A rule covering very many intervals (more than min_cover and its
  /// share of entry_budget) would make memory grow with the square of the rule count; it is not
  /// filed but returned (increasing, unique), for the caller to try on every packet instead.
  std::vector<std::uint32_t> build(const std::vector<Entry>& entries) {
    starts_.clear();
    offsets_.clear();
    rules_.clear();
    if (entries.empty()) return {};
    starts_.push_back(Key{});
    for (const Entry& entry : entries) {
      starts_.push_back(entry.first);
      if (const auto after = next_key(entry.last)) starts_.push_back(*after);
    }
    std::sort(starts_.begin(), starts_.end());
    starts_.erase(std::unique(starts_.begin(), starts_.end()), starts_.end());

    const auto span_of = [&](const Entry& entry) {
      const auto position = [&](const Key& key) {
        return static_cast<std::size_t>(std::lower_bound(starts_.begin(), starts_.end(), key) -
                                        starts_.begin());
      };
      const auto after = next_key(entry.last);
      return std::pair{position(entry.first), after ? position(*after) : starts_.size()};
    };

    std::size_t rules = 0;
    for (std::size_t i = 0; i < entries.size(); ++i) {
      rules += (i == 0 || entries[i].rule != entries[i - 1].rule) ? 1 : 0;
    }
    const std::size_t max_cover = std::max(min_cover, entry_budget / rules);

    std::vector<std::uint32_t> too_wide;
    std::vector<std::vector<std::uint32_t>> lists(starts_.size());
    for (std::size_t begin = 0; begin < entries.size();) {
      const std::uint32_t rule = entries[begin].rule;
      std::size_t end = begin;
      std::size_t cover = 0;
      for (; end < entries.size() && entries[end].rule == rule; ++end) {
        const auto [low, high] = span_of(entries[end]);
        cover += high - low;
      }
      if (cover > max_cover) {
        too_wide.push_back(rule);
      } else {
        for (std::size_t i = begin; i < end; ++i) {
          const auto [low, high] = span_of(entries[i]);
          for (std::size_t interval = low; interval < high; ++interval) {
            auto& list = lists[interval];
            if (list.empty() || list.back() != rule) list.push_back(rule);
          }
        }
      }
      begin = end;
    }

    offsets_.reserve(lists.size() + 1);
    offsets_.push_back(0);
    for (const auto& list : lists) {
      rules_.insert(rules_.end(), list.begin(), list.end());
      offsets_.push_back(static_cast<std::uint32_t>(rules_.size()));
    }
    return too_wide;
  }

  /// The rules filed under the interval holding `key`, in increasing order.
  [[nodiscard]] std::span<const std::uint32_t> find(const Key& key) const noexcept {
    if (starts_.empty()) return {};
    const auto interval =
        static_cast<std::size_t>(std::upper_bound(starts_.begin(), starts_.end(), key) -
                                 starts_.begin()) -
        1;
    return std::span<const std::uint32_t>(rules_).subspan(
        offsets_[interval], offsets_[interval + 1] - offsets_[interval]);
  }

  /// Number of elementary intervals (0 when nothing is filed).
  [[nodiscard]] std::size_t intervals() const noexcept { return starts_.size(); }

 private:
  std::vector<Key> starts_;             ///< interval i is [starts_[i], starts_[i + 1])
  std::vector<std::uint32_t> offsets_;  ///< rules of interval i: rules_[offsets_[i], offsets_[i+1])
  std::vector<std::uint32_t> rules_;
};

}  // namespace pktbroker
