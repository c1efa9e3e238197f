#include "broker/policy/matcher.hpp"

#include <net/if.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <unordered_map>

namespace pktbroker {
namespace {

std::atomic<unsigned> interface_generation{0};

template <typename T, typename V>
bool contains(const std::vector<T>& values, const V& value) noexcept {
  return std::find(values.begin(), values.end(), value) != values.end();
}

bool any_cidr_contains(const std::vector<Cidr>& blocks, const IpAddress& address) noexcept {
  return std::any_of(blocks.begin(), blocks.end(),
                     [&](const Cidr& block) { return block.contains(address); });
}

bool name_in(const std::vector<std::string>& names, std::uint32_t ifindex) noexcept {
  if (ifindex == 0) return false;
  const std::string_view name = interface_name(ifindex);
  return !name.empty() && std::find(names.begin(), names.end(), name) != names.end();
}

bool icmp_type_in(const std::vector<IcmpType>& types, const PacketView& view) noexcept {
  if (!view.has_icmp) return false;
  const bool v6 = view.protocol == IPPROTO_ICMPV6;
  return std::any_of(types.begin(), types.end(), [&](const IcmpType& type) {
    const auto& wanted = v6 ? type.v6 : type.v4;
    return wanted && *wanted == view.icmp_type;
  });
}

}  // namespace

bool Cidr::contains(const IpAddress& address) const noexcept {
  if (address.family != network.family) return false;
  const std::size_t full_bytes = prefix / 8;
  for (std::size_t i = 0; i < full_bytes; ++i) {
    if (address.bytes[i] != network.bytes[i]) return false;
  }
  const unsigned rest = prefix % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (address.bytes[full_bytes] & mask) == network.bytes[full_bytes];
}

void PortSet::add(std::uint16_t first, std::uint16_t last) {
  ranges_.emplace_back(first, last);
  std::sort(ranges_.begin(), ranges_.end());
  std::vector<std::pair<std::uint16_t, std::uint16_t>> merged;
  for (const auto& range : ranges_) {
    if (!merged.empty() && range.first <= merged.back().second + 1) {
      merged.back().second = std::max(merged.back().second, range.second);
    } else {
      merged.push_back(range);
    }
  }
  ranges_ = std::move(merged);
}

bool PortSet::contains(std::uint16_t port) const noexcept {
  const auto it =
      std::upper_bound(ranges_.begin(), ranges_.end(), port,
                       [](std::uint16_t value, const auto& range) { return value < range.first; });
  return it != ranges_.begin() && port <= std::prev(it)->second;
}

bool MatchFields::empty() const noexcept {
  return size() == 0;
}

std::size_t MatchFields::size() const noexcept {
  return !queues.empty() + mark.has_value() + !protocols.empty() + !src.empty() + !dst.empty() +
         sport.has_value() + dport.has_value() + !iif.empty() + !oif.empty() + !uids.empty() +
         !gids.empty() + (ct_states != 0) + !icmp_types.empty() + length.has_value();
}

// Calls visit(result) for each present field, stopping when visit returns false.
template <typename Visit>
bool MatchFields::for_each_field(const PacketMeta& meta, const PacketView& view,
                                 Visit&& visit) const noexcept {
  if (!queues.empty() && !visit(contains(queues, meta.queue))) return false;
  if (mark && !visit((meta.mark & mark->second) == mark->first)) return false;
  if (!protocols.empty() && !visit(contains(protocols, view.protocol))) return false;
  if (!src.empty() && !visit(any_cidr_contains(src, view.src))) return false;
  if (!dst.empty() && !visit(any_cidr_contains(dst, view.dst))) return false;
  if (sport && !visit(view.has_ports && sport->contains(view.src_port))) return false;
  if (dport && !visit(view.has_ports && dport->contains(view.dst_port))) return false;
  if (!iif.empty() && !visit(name_in(iif, meta.in_ifindex))) return false;
  if (!oif.empty() && !visit(name_in(oif, meta.out_ifindex))) return false;
  if (!uids.empty() && !visit(meta.uid.has_value() && contains(uids, *meta.uid))) return false;
  if (!gids.empty() && !visit(meta.gid.has_value() && contains(gids, *meta.gid))) return false;
  if (ct_states != 0 && !visit((ct_states & (1U << static_cast<unsigned>(meta.ct_state))) != 0)) {
    return false;
  }
  if (!icmp_types.empty() && !visit(icmp_type_in(icmp_types, view))) return false;
  if (length && !visit(meta.wire_length >= length->first && meta.wire_length <= length->second)) {
    return false;
  }
  return true;
}

bool Matcher::matches(const PacketMeta& meta, const PacketView& view) const noexcept {
  return required_.for_each_field(meta, view, [](bool holds) { return holds; }) &&
         excluded_.for_each_field(meta, view, [](bool holds) { return !holds; });
}

std::string_view interface_name(std::uint32_t ifindex) noexcept {
  struct Cache {
    unsigned generation = 0;
    std::unordered_map<std::uint32_t, std::array<char, IF_NAMESIZE>> names;
  };
  thread_local Cache cache;
  const unsigned generation = interface_generation.load(std::memory_order_relaxed);
  try {
    if (cache.generation != generation) {
      cache.names.clear();
      cache.generation = generation;
    }
    auto found = cache.names.find(ifindex);
    if (found == cache.names.end()) {
      std::array<char, IF_NAMESIZE> name{};
      if (if_indextoname(ifindex, name.data()) == nullptr) return {};
      found = cache.names.emplace(ifindex, name).first;
    }
    return found->second.data();
  } catch (...) {  // allocation failure: behave as an unknown interface
    return {};
  }
}

void forget_interface_names() noexcept {
  interface_generation.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace pktbroker
