/// @file packet_view.hpp
/// @brief Bounds-checked, zero-copy view of an IPv4/IPv6 packet and its transport header.
///
/// Shared by the broker and by client programs (libpktbroker). Parsing never throws and never
/// reads outside the given bytes: a packet that cannot be parsed yields a ParseError that names
/// the reason, so callers can count it.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace pktbroker {

/// Why a packet could not be parsed. `none` means success.
enum class ParseError : std::uint8_t {
  none,
  empty,                     ///< zero bytes
  bad_ip_version,            ///< version nibble is neither 4 nor 6
  ipv4_truncated_header,     ///< fewer than 20 bytes, or fewer than IHL*4
  ipv4_bad_header_length,    ///< IHL < 5
  ipv4_bad_total_length,     ///< total length < header length
  ipv6_truncated_header,     ///< fewer than 40 bytes
  ipv6_truncated_extension,  ///< an extension header runs past the data
  ipv6_too_many_extensions,  ///< more extension headers than we are willing to walk
  tcp_truncated_header,      ///< TCP header (or its data offset) runs past the data
  tcp_bad_data_offset,       ///< data offset < 5
  udp_truncated_header,      ///< fewer than 8 bytes of UDP header
  udp_bad_length,            ///< UDP length < 8 or larger than the IP payload
  icmp_truncated_header,     ///< fewer than 4 bytes of ICMP/ICMPv6 header
  count_                     ///< number of values; not an error
};

/// Stable, snake_case name of a ParseError, used in counters and logs.
std::string_view to_string(ParseError error) noexcept;

/// An IPv4 or IPv6 address in network byte order. IPv4 uses the first 4 bytes.
struct IpAddress {
  std::array<std::uint8_t, 16> bytes{};
  std::uint8_t family = 0;  ///< 4 or 6; 0 when unset

  [[nodiscard]] std::size_t size() const noexcept { return family == 4 ? 4 : 16; }
  [[nodiscard]] std::string to_string() const;
  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

/// Result of parsing. All offsets are relative to the start of `bytes`.
///
/// `bytes` may be shorter than the packet on the wire when the queue copies only a prefix
/// (copy_range); `captured_truncated` says so. That is not an error as long as the headers
/// that were parsed are complete.
struct PacketView {
  std::span<const std::uint8_t> bytes;  ///< the whole captured packet, starting at the IP header
  std::uint8_t ip_version = 0;          ///< 4 or 6
  IpAddress src;
  IpAddress dst;
  std::uint32_t ip_length = 0;      ///< packet length on the wire per the IP header
  std::uint8_t protocol = 0;        ///< transport protocol (IPPROTO_*) after extension headers
  bool fragment = false;            ///< part of a fragmented datagram
  bool first_fragment = true;       ///< offset 0: the transport header is present
  bool captured_truncated = false;  ///< fewer bytes captured than ip_length
  bool has_ports = false;           ///< TCP or UDP header parsed
  std::uint16_t src_port = 0;
  std::uint16_t dst_port = 0;
  std::uint8_t tcp_flags = 0;  ///< TCP flags byte (FIN=0x01 ... CWR=0x80)
  bool has_icmp = false;       ///< ICMP or ICMPv6 header parsed
  std::uint8_t icmp_type = 0;
  std::uint8_t icmp_code = 0;
  std::uint32_t l4_offset = 0;       ///< start of the transport header
  std::uint32_t payload_offset = 0;  ///< start of the transport payload (application data)

  /// Application data that was captured (may be shorter than on the wire).
  [[nodiscard]] std::span<const std::uint8_t> payload() const noexcept;
};

/// Parses an IP packet. On success returns ParseError::none and fills `view`.
/// Non-first fragments and unknown transport protocols parse successfully without ports.
[[nodiscard]] ParseError parse_packet(std::span<const std::uint8_t> bytes,
                                      PacketView& view) noexcept;

}  // namespace pktbroker
