#include "pktbroker/packet_view.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace pktbroker {
namespace {

constexpr std::size_t ipv4_min_header = 20;
constexpr std::size_t ipv6_header = 40;
constexpr std::size_t tcp_min_header = 20;
constexpr std::size_t udp_header = 8;
constexpr std::size_t icmp_min_header = 4;
constexpr int max_ipv6_extensions = 8;

std::uint16_t read16(std::span<const std::uint8_t> bytes, std::size_t offset) noexcept {
  return static_cast<std::uint16_t>((bytes[offset] << 8) | bytes[offset + 1]);
}

// Parses the transport header at view.l4_offset; `end` is where the IP payload stops.
ParseError parse_transport(std::span<const std::uint8_t> bytes, std::size_t end,
                           PacketView& view) noexcept {
  const std::size_t offset = view.l4_offset;
  const std::size_t available = end > offset ? end - offset : 0;
  view.payload_offset = static_cast<std::uint32_t>(offset);
  switch (view.protocol) {
    case IPPROTO_TCP: {
      if (available < tcp_min_header) return ParseError::tcp_truncated_header;
      const std::size_t header_length = static_cast<std::size_t>(bytes[offset + 12] >> 4) * 4;
      if (header_length < tcp_min_header) return ParseError::tcp_bad_data_offset;
      if (available < header_length) return ParseError::tcp_truncated_header;
      view.has_ports = true;
      view.src_port = read16(bytes, offset);
      view.dst_port = read16(bytes, offset + 2);
      view.tcp_flags = bytes[offset + 13];
      view.payload_offset = static_cast<std::uint32_t>(offset + header_length);
      return ParseError::none;
    }
    case IPPROTO_UDP:
    case IPPROTO_UDPLITE: {
      if (available < udp_header) return ParseError::udp_truncated_header;
      const std::uint16_t length = read16(bytes, offset + 4);
      // The IP length bounds the datagram; a partial capture does not change that.
      const std::size_t ip_payload = view.ip_length - offset;
      if (view.protocol == IPPROTO_UDP && (length < udp_header || length > ip_payload)) {
        return ParseError::udp_bad_length;
      }
      view.has_ports = true;
      view.src_port = read16(bytes, offset);
      view.dst_port = read16(bytes, offset + 2);
      view.payload_offset = static_cast<std::uint32_t>(offset + udp_header);
      return ParseError::none;
    }
    case IPPROTO_ICMP:
    case IPPROTO_ICMPV6: {
      if (available < icmp_min_header) return ParseError::icmp_truncated_header;
      view.has_icmp = true;
      view.icmp_type = bytes[offset];
      view.icmp_code = bytes[offset + 1];
      view.payload_offset = static_cast<std::uint32_t>(offset + icmp_min_header);
      return ParseError::none;
    }
    default: return ParseError::none;
  }
}

ParseError parse_ipv4(std::span<const std::uint8_t> bytes, PacketView& view) noexcept {
  if (bytes.size() < ipv4_min_header) return ParseError::ipv4_truncated_header;
  const std::size_t header_length = static_cast<std::size_t>(bytes[0] & 0x0f) * 4;
  if (header_length < ipv4_min_header) return ParseError::ipv4_bad_header_length;
  if (bytes.size() < header_length) return ParseError::ipv4_truncated_header;
  const std::uint16_t total_length = read16(bytes, 2);
  if (total_length < header_length) return ParseError::ipv4_bad_total_length;

  view.ip_version = 4;
  view.ip_length = total_length;
  view.protocol = bytes[9];
  view.src.family = view.dst.family = 4;
  std::memcpy(view.src.bytes.data(), &bytes[12], 4);
  std::memcpy(view.dst.bytes.data(), &bytes[16], 4);
  const std::uint16_t fragment = read16(bytes, 6);
  const bool more_fragments = (fragment & 0x2000) != 0;
  const std::uint16_t fragment_offset = fragment & 0x1fff;
  view.fragment = more_fragments || fragment_offset != 0;
  view.first_fragment = fragment_offset == 0;
  view.l4_offset = static_cast<std::uint32_t>(header_length);
  view.payload_offset = view.l4_offset;
  if (!view.first_fragment) return ParseError::none;
  return parse_transport(bytes, std::min<std::size_t>(bytes.size(), total_length), view);
}

bool is_ipv6_extension(std::uint8_t next_header) noexcept {
  switch (next_header) {
    case 0:    // hop-by-hop options
    case 43:   // routing
    case 44:   // fragment
    case 51:   // authentication header
    case 60:   // destination options
    case 135:  // mobility
      return true;
    default: return false;
  }
}

ParseError parse_ipv6(std::span<const std::uint8_t> bytes, PacketView& view) noexcept {
  if (bytes.size() < ipv6_header) return ParseError::ipv6_truncated_header;
  view.ip_version = 6;
  view.ip_length = static_cast<std::uint32_t>(ipv6_header + read16(bytes, 4));
  view.src.family = view.dst.family = 6;
  std::memcpy(view.src.bytes.data(), &bytes[8], 16);
  std::memcpy(view.dst.bytes.data(), &bytes[24], 16);
  const std::size_t end = std::min<std::size_t>(bytes.size(), view.ip_length);

  std::uint8_t next = bytes[6];
  std::size_t offset = ipv6_header;
  for (int count = 0; is_ipv6_extension(next); ++count) {
    if (count == max_ipv6_extensions) return ParseError::ipv6_too_many_extensions;
    if (end < offset + 8) return ParseError::ipv6_truncated_extension;
    std::size_t length = 0;
    if (next == 44) {
      // An atomic fragment (offset 0, no more fragments: RFC 6946) is a whole packet.
      const std::uint16_t fragment = read16(bytes, offset + 2);
      view.fragment = view.fragment || (fragment & 0xfff9) != 0;
      view.first_fragment = view.first_fragment && (fragment & 0xfff8) == 0;
      length = 8;
    } else if (next == 51) {
      length = (static_cast<std::size_t>(bytes[offset + 1]) + 2) * 4;
    } else {
      length = (static_cast<std::size_t>(bytes[offset + 1]) + 1) * 8;
    }
    if (end < offset + length) return ParseError::ipv6_truncated_extension;
    next = bytes[offset];
    offset += length;
  }
  view.protocol = next;
  view.l4_offset = static_cast<std::uint32_t>(offset);
  view.payload_offset = view.l4_offset;
  if (!view.first_fragment) return ParseError::none;
  return parse_transport(bytes, end, view);
}

}  // namespace

std::string_view to_string(ParseError error) noexcept {
  switch (error) {
    case ParseError::none: return "none";
    case ParseError::empty: return "empty";
    case ParseError::bad_ip_version: return "bad_ip_version";
    case ParseError::ipv4_truncated_header: return "ipv4_truncated_header";
    case ParseError::ipv4_bad_header_length: return "ipv4_bad_header_length";
    case ParseError::ipv4_bad_total_length: return "ipv4_bad_total_length";
    case ParseError::ipv6_truncated_header: return "ipv6_truncated_header";
    case ParseError::ipv6_truncated_extension: return "ipv6_truncated_extension";
    case ParseError::ipv6_too_many_extensions: return "ipv6_too_many_extensions";
    case ParseError::tcp_truncated_header: return "tcp_truncated_header";
    case ParseError::tcp_bad_data_offset: return "tcp_bad_data_offset";
    case ParseError::udp_truncated_header: return "udp_truncated_header";
    case ParseError::udp_bad_length: return "udp_bad_length";
    case ParseError::icmp_truncated_header: return "icmp_truncated_header";
    case ParseError::count_: break;
  }
  return "unknown";
}

std::string IpAddress::to_string() const {
  std::array<char, INET6_ADDRSTRLEN> text{};
  if (family != 4 && family != 6) return "-";
  inet_ntop(family == 4 ? AF_INET : AF_INET6, bytes.data(), text.data(), text.size());
  return text.data();
}

std::span<const std::uint8_t> PacketView::payload() const noexcept {
  const std::size_t end = std::min<std::size_t>(bytes.size(), ip_length);
  if (payload_offset >= end) return {};
  return bytes.subspan(payload_offset, end - payload_offset);
}

ParseError parse_packet(std::span<const std::uint8_t> bytes, PacketView& view) noexcept {
  view = PacketView{};
  view.bytes = bytes;
  if (bytes.empty()) return ParseError::empty;
  ParseError error = ParseError::bad_ip_version;
  switch (bytes[0] >> 4) {
    case 4: error = parse_ipv4(bytes, view); break;
    case 6: error = parse_ipv6(bytes, view); break;
    default: break;
  }
  if (error == ParseError::none) view.captured_truncated = bytes.size() < view.ip_length;
  return error;
}

}  // namespace pktbroker
