// A compiled `match:` expression: every field present must hold, every `not:` field must fail.
#pragma once

#include "broker/packet_meta.hpp"
#include "pktbroker/packet_view.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace pktbroker {

/// An address block; IPv4 blocks never match IPv6 addresses and vice versa.
struct Cidr {
  IpAddress network;  ///< host bits cleared
  std::uint8_t prefix = 0;

  [[nodiscard]] bool contains(const IpAddress& address) const noexcept;
};

/// Ports as sorted, merged inclusive ranges.
class PortSet {
 public:
  void add(std::uint16_t first, std::uint16_t last);
  [[nodiscard]] bool contains(std::uint16_t port) const noexcept;
  /// Inclusive ranges, sorted, disjoint and not adjacent.
  [[nodiscard]] const std::vector<std::pair<std::uint16_t, std::uint16_t>>& ranges()
      const noexcept {
    return ranges_;
  }

 private:
  std::vector<std::pair<std::uint16_t, std::uint16_t>> ranges_;
};

/// ICMP type by number (both families) or by name (value per family).
struct IcmpType {
  std::optional<std::uint8_t> v4;
  std::optional<std::uint8_t> v6;

  friend bool operator==(const IcmpType&, const IcmpType&) = default;
};

/// A field a `match:` (or its `not:`) may constrain.
enum class MatchField : std::uint8_t {
  queue,
  mark,
  proto,
  src,
  dst,
  sport,
  dport,
  iif,
  oif,
  uid,
  gid,
  ct_state,
  icmp_type,
  length,
  dst_name,
  plugin_fields,
  app
};
inline constexpr std::size_t match_field_count = 17;

/// A field a plugin publishes (`dns.qname: ["*.example.com", ...]`): the value must equal one
/// pattern, or end with it when the pattern starts with `*.` (the name itself or any name under
/// it), or start with it when the pattern ends with `*`.
struct FieldMatch {
  std::string field;  ///< "plugin.field"
  std::vector<std::string> patterns;

  [[nodiscard]] bool holds(std::string_view value) const noexcept;
  /// Whether the packet's flow has published `field` with a value that holds.
  [[nodiscard]] bool holds_in(const PacketMeta& meta) const noexcept;

  friend bool operator==(const FieldMatch&, const FieldMatch&) = default;
};

/// An `app.*` field: which attribute of the sending process, and the patterns one of which its
/// value must satisfy. path, cmdline and parent are globs (fnmatch, `*` crosses `/`); name is
/// exact; cgroup is a path prefix (the cgroup itself or any below it).
struct AppMatch {
  enum class Attribute : std::uint8_t { path, name, cmdline, cgroup, parent };
  Attribute attribute = Attribute::path;
  std::vector<std::string> patterns;

  [[nodiscard]] bool holds(const AppInfo& app) const noexcept;
  friend bool operator==(const AppMatch&, const AppMatch&) = default;
};

/// The fields one `match:` (or its `not:`) may constrain; absent fields are not checked.
struct MatchFields {
  std::vector<std::uint16_t> queues;
  std::optional<std::pair<std::uint32_t, std::uint32_t>> mark;  ///< value, mask
  std::vector<std::uint8_t> protocols;
  std::vector<Cidr> src;
  std::vector<Cidr> dst;
  std::optional<PortSet> sport;
  std::optional<PortSet> dport;
  std::vector<std::string> iif;
  std::vector<std::string> oif;
  std::vector<std::uint32_t> uids;
  std::vector<std::uint32_t> gids;
  std::uint8_t ct_states = 0;  ///< bit per CtState
  std::vector<IcmpType> icmp_types;
  std::optional<std::pair<std::uint32_t, std::uint32_t>> length;  ///< inclusive range
  std::optional<FieldMatch> dst_name;  ///< the name DNS gave out for the destination
  /// Required: all must hold (a field not published fails). Excluded: each on its own, like
  /// every other field: the packet is excluded when any one holds.
  std::vector<FieldMatch> plugin_fields;
  /// The sending process (`app.path: ...`): like plugin fields, all required ones must hold
  /// and each excluded one excludes on its own. A packet whose process is unknown holds none.
  std::vector<AppMatch> app;

  [[nodiscard]] bool has(MatchField field) const noexcept;
  [[nodiscard]] bool empty() const noexcept;
  /// Number of fields present.
  [[nodiscard]] std::size_t size() const noexcept;
  /// Whether the packet satisfies `field` (which must be present).
  [[nodiscard]] bool holds(MatchField field, const PacketMeta& meta,
                           const PacketView& view) const noexcept;
};

/// Every field of `required` must hold and every field of `excluded` must fail: `not: {dport:
/// 22, src: 10.0.0.0/8}` means "dport is not 22 and src is not in 10.0.0.0/8".
class Matcher {
 public:
  Matcher(MatchFields required, MatchFields excluded);

  [[nodiscard]] bool matches(const PacketMeta& meta, const PacketView& view) const noexcept;
  /// Whether every packet this matches is certainly matched by `outer` as well: each field
  /// `outer` requires is required here with a subset of its values, each field it excludes is
  /// excluded here with a superset. Conservative: false when unsure.
  [[nodiscard]] bool within(const Matcher& outer) const noexcept;
  /// Whether a packet given `mark` still satisfies this expression's mark field (if any).
  [[nodiscard]] bool allows_mark(std::uint32_t mark) const noexcept;
  /// Whether it names what only the broker knows of a packet (ct_state from its flow table,
  /// dst_name, plugin fields): these cannot be judged again for rewritten bytes.
  [[nodiscard]] bool uses_broker_fields() const noexcept;
  /// Whether it names `app.*` fields: the packet's process must be looked up first.
  [[nodiscard]] bool uses_app() const noexcept {
    return !required_.app.empty() || !excluded_.app.empty();
  }
  [[nodiscard]] const MatchFields& required() const noexcept { return required_; }
  [[nodiscard]] const MatchFields& excluded() const noexcept { return excluded_; }

 private:
  /// The fields present, so a match touches only those (first in the object: one cache line).
  struct Present {
    std::uint8_t count = 0;
    std::array<MatchField, match_field_count> fields{};
  };
  static Present present_in(const MatchFields& fields) noexcept;

  Present required_present_;
  Present excluded_present_;
  MatchFields required_;
  MatchFields excluded_;
};

/// Interface name for an ifindex, cached per thread for at most a second (interfaces are
/// renamed); empty when unknown.
std::string_view interface_name(std::uint32_t ifindex) noexcept;
/// Forgets cached interface names (called when a policy is loaded).
void forget_interface_names() noexcept;

}  // namespace pktbroker
