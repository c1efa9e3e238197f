// A compiled `match:` expression: every field present must hold, every `not:` field must fail.
#pragma once

#include "broker/packet_meta.hpp"
#include "pktbroker/packet_view.hpp"

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

 private:
  std::vector<std::pair<std::uint16_t, std::uint16_t>> ranges_;
};

/// ICMP type by number (both families) or by name (value per family).
struct IcmpType {
  std::optional<std::uint8_t> v4;
  std::optional<std::uint8_t> v6;
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

  [[nodiscard]] bool empty() const noexcept;
  /// Number of fields present.
  [[nodiscard]] std::size_t size() const noexcept;
  /// For `match:` every present field must hold; for `not:` each field is tested on its own.
  template <typename Visit>
  bool for_each_field(const PacketMeta& meta, const PacketView& view, Visit&& visit) const noexcept;
};

class Matcher {
 public:
  Matcher(MatchFields required, MatchFields excluded)
      : required_(std::move(required)), excluded_(std::move(excluded)) {}

  [[nodiscard]] bool matches(const PacketMeta& meta, const PacketView& view) const noexcept;
  [[nodiscard]] const MatchFields& required() const noexcept { return required_; }

 private:
  MatchFields required_;
  MatchFields excluded_;
};

/// Interface name for an ifindex, cached per thread; empty when unknown.
std::string_view interface_name(std::uint32_t ifindex) noexcept;
/// Forgets cached interface names (called when a policy is loaded).
void forget_interface_names() noexcept;

}  // namespace pktbroker
