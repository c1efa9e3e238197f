#include "broker/policy/rule_index.hpp"

#include "broker/policy/matcher.hpp"

#include <algorithm>
#include <map>

namespace pktbroker {
namespace {

std::uint32_t v4_key(const IpAddress& address) noexcept {
  return static_cast<std::uint32_t>(address.bytes[0]) << 24 |
         static_cast<std::uint32_t>(address.bytes[1]) << 16 |
         static_cast<std::uint32_t>(address.bytes[2]) << 8 | address.bytes[3];
}

Ipv6Key v6_key(const IpAddress& address) noexcept {
  Ipv6Key key;
  for (std::size_t i = 0; i < 8; ++i) {
    key.high = key.high << 8 | address.bytes[i];
    key.low = key.low << 8 | address.bytes[8 + i];
  }
  return key;
}

/// Ones in the host part of a `prefix`-bit network of a `bits`-wide number.
std::uint64_t host_mask(unsigned prefix, unsigned bits) noexcept {
  if (prefix >= bits) return 0;
  const std::uint64_t all = bits == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << bits) - 1;
  return all >> prefix;
}

/// Files `rule` under each block's address range, v4 blocks in `v4`, v6 blocks in `v6`.
void add_blocks(const std::vector<Cidr>& blocks, std::uint32_t rule,
                std::vector<IntervalIndex<std::uint32_t>::Entry>& v4,
                std::vector<IntervalIndex<Ipv6Key>::Entry>& v6) {
  for (const Cidr& block : blocks) {
    if (block.network.family == 4) {
      const std::uint32_t first = v4_key(block.network);
      v4.push_back({first, first | static_cast<std::uint32_t>(host_mask(block.prefix, 32)), rule});
    } else {
      const Ipv6Key first = v6_key(block.network);
      const Ipv6Key last{first.high | host_mask(block.prefix, 64),
                         first.low | host_mask(block.prefix < 64 ? 0 : block.prefix - 64, 64)};
      v6.push_back({first, last, rule});
    }
  }
}

}  // namespace

RuleIndex::RuleIndex(std::vector<const Matcher*> matchers) : matchers_(std::move(matchers)) {
  std::vector<std::uint8_t> named;  // protocols some rule requires
  for (const Matcher* matcher : matchers_) {
    if (matcher == nullptr) continue;
    for (const std::uint8_t protocol : matcher->required().protocols) named.push_back(protocol);
  }
  std::sort(named.begin(), named.end());
  named.erase(std::unique(named.begin(), named.end()), named.end());

  buckets_.resize(named.size() + 1);
  build_bucket(buckets_[0], std::nullopt);
  for (std::size_t i = 0; i < named.size(); ++i) {
    bucket_of_protocol_[named[i]] = static_cast<std::uint16_t>(i + 1);
    build_bucket(buckets_[i + 1], named[i]);
  }
}

void RuleIndex::build_bucket(Bucket& bucket, std::optional<std::uint8_t> protocol) {
  std::vector<IntervalIndex<std::uint16_t>::Entry> dport;
  std::vector<IntervalIndex<std::uint32_t>::Entry> dst4;
  std::vector<IntervalIndex<std::uint32_t>::Entry> src4;
  std::vector<IntervalIndex<Ipv6Key>::Entry> dst6;
  std::vector<IntervalIndex<Ipv6Key>::Entry> src6;
  std::map<std::uint32_t, std::vector<IntervalIndex<std::uint32_t>::Entry>> marks;  // by mask
  for (std::uint32_t rule = 0; rule < matchers_.size(); ++rule) {
    if (matchers_[rule] == nullptr) continue;  // not in the index (an answer rule)
    const MatchFields& fields = matchers_[rule]->required();
    if (!fields.protocols.empty() &&
        (!protocol || std::find(fields.protocols.begin(), fields.protocols.end(), *protocol) ==
                          fields.protocols.end())) {
      continue;  // cannot match a packet of this bucket's protocol
    }
    if (fields.dport) {
      for (const auto& [first, last] : fields.dport->ranges()) dport.push_back({first, last, rule});
    } else if (!fields.dst.empty()) {
      add_blocks(fields.dst, rule, dst4, dst6);
    } else if (!fields.src.empty()) {
      add_blocks(fields.src, rule, src4, src6);
    } else if (fields.mark) {
      const auto [value, mask] = *fields.mark;
      marks[mask].push_back({value, value, rule});
    } else {
      bucket.every_packet.push_back(rule);
    }
  }
  const auto file = [&](auto& index, const auto& entries) {
    const auto too_wide = index.build(entries);
    bucket.every_packet.insert(bucket.every_packet.end(), too_wide.begin(), too_wide.end());
  };
  std::vector<std::pair<std::uint32_t, const std::vector<IntervalIndex<std::uint32_t>::Entry>*>>
      by_use;
  for (const auto& [mask, entries] : marks) by_use.emplace_back(mask, &entries);
  std::stable_sort(by_use.begin(), by_use.end(), [](const auto& a, const auto& b) {
    return a.second->size() > b.second->size();
  });
  for (std::size_t i = 0; i < by_use.size(); ++i) {
    const auto& [mask, entries] = by_use[i];
    if (i < max_mark_masks) {
      file(bucket.marks.emplace_back(MarkGroup{mask, {}}).values, *entries);
    } else {
      for (const auto& entry : *entries) bucket.every_packet.push_back(entry.rule);
    }
  }
  file(bucket.dport, dport);
  file(bucket.dst4, dst4);
  file(bucket.src4, src4);
  file(bucket.dst6, dst6);
  file(bucket.src6, src6);
  std::sort(bucket.every_packet.begin(), bucket.every_packet.end());
  bucket.every_packet.erase(std::unique(bucket.every_packet.begin(), bucket.every_packet.end()),
                            bucket.every_packet.end());
}

RuleIndex::Lists RuleIndex::lookup(const PacketMeta& meta, const PacketView& view) const noexcept {
  const Bucket& bucket = buckets_[bucket_of_protocol_[view.protocol]];
  Lists lists{bucket.every_packet};
  if (view.has_ports) lists[1] = bucket.dport.find(view.dst_port);
  if (view.dst.family == 4) {
    lists[2] = bucket.dst4.find(v4_key(view.dst));
    lists[3] = bucket.src4.find(v4_key(view.src));
  } else if (view.dst.family == 6) {
    lists[2] = bucket.dst6.find(v6_key(view.dst));
    lists[3] = bucket.src6.find(v6_key(view.src));
  }
  for (std::size_t i = 0; i < bucket.marks.size(); ++i) {
    lists[4 + i] = bucket.marks[i].values.find(meta.mark & bucket.marks[i].mask);
  }
  return lists;
}

std::size_t RuleIndex::first_match(const PacketMeta& meta, const PacketView& view) const noexcept {
  if (buckets_.empty()) return no_match;
  Lists lists = lookup(meta, view);
  // Each rule is in at most one list: walking them merged tests rules in increasing order.
  for (;;) {
    std::span<const std::uint32_t>* lowest = nullptr;
    for (auto& list : lists) {
      if (!list.empty() && (lowest == nullptr || list.front() < lowest->front())) lowest = &list;
    }
    if (lowest == nullptr) return no_match;
    const std::uint32_t rule = lowest->front();
    *lowest = lowest->subspan(1);
    if (matchers_[rule]->matches(meta, view)) return rule;
  }
}

std::size_t RuleIndex::candidates(const PacketMeta& meta, const PacketView& view) const noexcept {
  if (buckets_.empty()) return 0;
  std::size_t count = 0;
  for (const auto& list : lookup(meta, view)) count += list.size();
  return count;
}

}  // namespace pktbroker
