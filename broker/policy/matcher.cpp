#include "broker/policy/matcher.hpp"

#include "broker/identity/app_info.hpp"

#include <fnmatch.h>
#include <net/if.h>
#include <netinet/in.h>
#include <time.h>

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

bool MatchFields::has(MatchField field) const noexcept {
  switch (field) {
    case MatchField::queue: return !queues.empty();
    case MatchField::mark: return mark.has_value();
    case MatchField::proto: return !protocols.empty();
    case MatchField::src: return !src.empty();
    case MatchField::dst: return !dst.empty();
    case MatchField::sport: return sport.has_value();
    case MatchField::dport: return dport.has_value();
    case MatchField::iif: return !iif.empty();
    case MatchField::oif: return !oif.empty();
    case MatchField::uid: return !uids.empty();
    case MatchField::gid: return !gids.empty();
    case MatchField::ct_state: return ct_states != 0;
    case MatchField::icmp_type: return !icmp_types.empty();
    case MatchField::length: return length.has_value();
    case MatchField::dst_name: return dst_name.has_value();
    case MatchField::plugin_fields: return !plugin_fields.empty();
    case MatchField::app: return !app.empty();
  }
  return false;
}

bool MatchFields::empty() const noexcept {
  return size() == 0;
}

std::size_t MatchFields::size() const noexcept {
  std::size_t count = 0;
  for (std::size_t i = 0; i < match_field_count; ++i) {
    count += has(static_cast<MatchField>(i)) ? 1 : 0;
  }
  return count;
}

bool MatchFields::holds(MatchField field, const PacketMeta& meta,
                        const PacketView& view) const noexcept {
  switch (field) {
    case MatchField::queue: return contains(queues, meta.queue);
    case MatchField::mark: return (meta.mark & mark->second) == mark->first;
    case MatchField::proto: return contains(protocols, view.protocol);
    case MatchField::src: return any_cidr_contains(src, view.src);
    case MatchField::dst: return any_cidr_contains(dst, view.dst);
    case MatchField::sport: return view.has_ports && sport->contains(view.src_port);
    case MatchField::dport: return view.has_ports && dport->contains(view.dst_port);
    case MatchField::iif: return name_in(iif, meta.in_ifindex);
    case MatchField::oif: return name_in(oif, meta.out_ifindex);
    case MatchField::uid: return meta.uid.has_value() && contains(uids, *meta.uid);
    case MatchField::gid: return meta.gid.has_value() && contains(gids, *meta.gid);
    case MatchField::ct_state:
      return (ct_states & (1U << static_cast<unsigned>(meta.ct_state))) != 0;
    case MatchField::icmp_type: return icmp_type_in(icmp_types, view);
    case MatchField::length:
      return meta.wire_length >= length->first && meta.wire_length <= length->second;
    case MatchField::dst_name:
      return std::any_of(meta.dst_names.begin(), meta.dst_names.end(),
                         [this](const std::string& name) { return dst_name->holds(name); });
    case MatchField::plugin_fields:
      return std::all_of(plugin_fields.begin(), plugin_fields.end(),
                         [&](const FieldMatch& m) { return m.holds_in(meta); });
    case MatchField::app:
      return meta.app != nullptr && std::all_of(app.begin(), app.end(), [&](const AppMatch& m) {
               return m.holds(*meta.app);
             });
  }
  return false;
}

bool AppMatch::holds(const AppInfo& app) const noexcept {
  const auto glob = [](const std::string& value) {
    return [&value](const std::string& pattern) {
      return !value.empty() && ::fnmatch(pattern.c_str(), value.c_str(), 0) == 0;
    };
  };
  switch (attribute) {
    case Attribute::path: return std::any_of(patterns.begin(), patterns.end(), glob(app.path));
    case Attribute::cmdline:
      return std::any_of(patterns.begin(), patterns.end(), glob(app.cmdline));
    case Attribute::parent: return std::any_of(patterns.begin(), patterns.end(), glob(app.parent));
    case Attribute::name: return contains(patterns, app.name);
    case Attribute::cgroup:
      return std::any_of(patterns.begin(), patterns.end(), [&](const std::string& prefix) {
        const std::string_view cgroup = app.cgroup;
        return cgroup.starts_with(prefix) &&
               (cgroup.size() == prefix.size() || prefix.ends_with('/') ||
                cgroup[prefix.size()] == '/');
      });
  }
  return false;
}

bool FieldMatch::holds_in(const PacketMeta& meta) const noexcept {
  const auto found = std::find_if(meta.fields.begin(), meta.fields.end(),
                                  [&](const auto& published) { return published.first == field; });
  return found != meta.fields.end() && holds(found->second);
}

bool FieldMatch::holds(std::string_view value) const noexcept {
  return std::any_of(patterns.begin(), patterns.end(), [value](std::string_view pattern) {
    if (pattern.starts_with("*.")) {
      const std::string_view parent = pattern.substr(2);
      return value == parent || (value.ends_with(parent) && value.size() > parent.size() &&
                                 value[value.size() - parent.size() - 1] == '.');
    }
    if (pattern.size() > 1 && pattern.ends_with('*')) {
      return value.starts_with(pattern.substr(0, pattern.size() - 1));
    }
    return value == pattern;
  });
}

Matcher::Matcher(MatchFields required, MatchFields excluded)
    : required_present_(present_in(required)),
      excluded_present_(present_in(excluded)),
      required_(std::move(required)),
      excluded_(std::move(excluded)) {}

Matcher::Present Matcher::present_in(const MatchFields& fields) noexcept {
  Present present;
  for (std::size_t i = 0; i < match_field_count; ++i) {
    const auto field = static_cast<MatchField>(i);
    if (fields.has(field)) present.fields[present.count++] = field;
  }
  return present;
}

bool Matcher::matches(const PacketMeta& meta, const PacketView& view) const noexcept {
  for (std::size_t i = 0; i < required_present_.count; ++i) {
    if (!required_.holds(required_present_.fields[i], meta, view)) return false;
  }
  for (std::size_t i = 0; i < excluded_present_.count; ++i) {
    const MatchField field = excluded_present_.fields[i];
    if (field == MatchField::plugin_fields) {  // negated each on its own, like every field
      for (const FieldMatch& one : excluded_.plugin_fields) {
        if (one.holds_in(meta)) return false;
      }
      continue;
    }
    if (field == MatchField::app) {
      for (const AppMatch& one : excluded_.app) {
        if (meta.app != nullptr && one.holds(*meta.app)) return false;
      }
      continue;
    }
    if (excluded_.holds(field, meta, view)) return false;
  }
  return true;
}

std::string_view interface_name(std::uint32_t ifindex) noexcept {
  struct Cache {
    unsigned generation = 0;
    std::unordered_map<std::uint32_t, std::array<char, IF_NAMESIZE>> names;
  };
  thread_local Cache cache;
  // Interfaces are renamed and indexes reused: names are looked up again once a second.
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
  const unsigned generation =
      interface_generation.load(std::memory_order_relaxed) + static_cast<unsigned>(now.tv_sec);
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

namespace {

template <typename T>
bool subset(const std::vector<T>& inner, const std::vector<T>& outer) {
  return std::all_of(inner.begin(), inner.end(), [&](const T& value) {
    return std::find(outer.begin(), outer.end(), value) != outer.end();
  });
}

bool cidr_within(const Cidr& inner, const Cidr& outer) noexcept {
  return inner.network.family == outer.network.family && inner.prefix >= outer.prefix &&
         outer.contains(inner.network);
}

bool cidrs_within(const std::vector<Cidr>& inner, const std::vector<Cidr>& outer) {
  return std::all_of(inner.begin(), inner.end(), [&](const Cidr& block) {
    return std::any_of(outer.begin(), outer.end(),
                       [&](const Cidr& o) { return cidr_within(block, o); });
  });
}

bool ports_within(const PortSet& inner, const PortSet& outer) {
  return std::all_of(inner.ranges().begin(), inner.ranges().end(), [&](const auto& range) {
    return std::any_of(outer.ranges().begin(), outer.ranges().end(), [&](const auto& o) {
      return o.first <= range.first && range.second <= o.second;
    });
  });
}

// Every mark `inner` accepts is accepted by `outer`: outer's mask bits are fixed by inner too.
bool mark_within(std::pair<std::uint32_t, std::uint32_t> inner,
                 std::pair<std::uint32_t, std::uint32_t> outer) noexcept {
  return (outer.second & ~inner.second) == 0 &&
         (inner.first & outer.second) == (outer.first & outer.second);
}

// Whether the values `inner` allows for `field` are a subset of those `outer` allows (both
// present).
bool field_within(MatchField field, const MatchFields& inner, const MatchFields& outer) {
  switch (field) {
    case MatchField::queue: return subset(inner.queues, outer.queues);
    case MatchField::mark: return mark_within(*inner.mark, *outer.mark);
    case MatchField::proto: return subset(inner.protocols, outer.protocols);
    case MatchField::src: return cidrs_within(inner.src, outer.src);
    case MatchField::dst: return cidrs_within(inner.dst, outer.dst);
    case MatchField::sport: return ports_within(*inner.sport, *outer.sport);
    case MatchField::dport: return ports_within(*inner.dport, *outer.dport);
    case MatchField::iif: return subset(inner.iif, outer.iif);
    case MatchField::oif: return subset(inner.oif, outer.oif);
    case MatchField::uid: return subset(inner.uids, outer.uids);
    case MatchField::gid: return subset(inner.gids, outer.gids);
    case MatchField::ct_state: return (inner.ct_states & ~outer.ct_states) == 0;
    case MatchField::icmp_type: return subset(inner.icmp_types, outer.icmp_types);
    case MatchField::length:
      return outer.length->first <= inner.length->first &&
             inner.length->second <= outer.length->second;
    case MatchField::dst_name: return *inner.dst_name == *outer.dst_name;
    case MatchField::plugin_fields: return subset(outer.plugin_fields, inner.plugin_fields);
    case MatchField::app: return subset(outer.app, inner.app);
  }
  return false;
}

}  // namespace

bool Matcher::allows_mark(std::uint32_t mark) const noexcept {
  const auto holds = [mark](const auto& wanted) {
    return (mark & wanted->second) == wanted->first;
  };
  return (!required_.mark || holds(required_.mark)) && (!excluded_.mark || !holds(excluded_.mark));
}

bool Matcher::uses_broker_fields() const noexcept {
  const auto uses = [](const MatchFields& f) {
    return f.ct_states != 0 || f.dst_name.has_value() || !f.plugin_fields.empty() || !f.app.empty();
  };
  return uses(required_) || uses(excluded_);
}

bool Matcher::within(const Matcher& outer) const noexcept {
  try {
    for (std::size_t i = 0; i < outer.required_present_.count; ++i) {
      const MatchField field = outer.required_present_.fields[i];
      if (!required_.has(field) || !field_within(field, required_, outer.required_)) return false;
    }
    for (std::size_t i = 0; i < outer.excluded_present_.count; ++i) {
      const MatchField field = outer.excluded_present_.fields[i];
      if (!excluded_.has(field)) return false;
      if (field == MatchField::plugin_fields) {  // each excluded on its own: keep all of outer's
        if (!subset(outer.excluded_.plugin_fields, excluded_.plugin_fields)) return false;
      } else if (field == MatchField::app) {
        if (!subset(outer.excluded_.app, excluded_.app)) return false;
      } else if (!field_within(field, outer.excluded_, excluded_)) {
        return false;
      }
    }
    return true;
  } catch (...) {  // allocation failure: unsure
    return false;
  }
}

}  // namespace pktbroker
