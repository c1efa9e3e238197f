#include "pktbroker/packet_view.hpp"

#include "../packet_builder.hpp"

#include <netinet/in.h>
#include <catch2/catch.hpp>

using namespace pktbroker;
using namespace pktbroker::test;

namespace {

PacketView parse_ok(const Bytes& bytes) {
  PacketView view;
  const ParseError error = parse_packet(bytes, view);
  INFO("error: " << to_string(error));
  REQUIRE(error == ParseError::none);
  return view;
}

ParseError parse_error(const Bytes& bytes) {
  PacketView view;
  return parse_packet(bytes, view);
}

}  // namespace

TEST_CASE("IPv4 TCP: addresses, ports, flags, offsets and payload") {
  const Bytes packet =
      ipv4(IPPROTO_TCP, tcp_header(40000, 443, 0x12), 10, {192, 168, 1, 7}, {8, 8, 4, 4});
  const PacketView v = parse_ok(packet);
  CHECK(v.ip_version == 4);
  CHECK(v.src.to_string() == "192.168.1.7");
  CHECK(v.dst.to_string() == "8.8.4.4");
  CHECK(v.protocol == IPPROTO_TCP);
  CHECK(v.has_ports);
  CHECK(v.src_port == 40000);
  CHECK(v.dst_port == 443);
  CHECK(v.tcp_flags == 0x12);
  CHECK(v.l4_offset == 20);
  CHECK(v.payload_offset == 40);
  CHECK(v.payload().size() == 10);
  CHECK(v.payload()[0] == 0xab);
  CHECK(v.ip_length == 50);
  CHECK_FALSE(v.fragment);
  CHECK_FALSE(v.captured_truncated);
  CHECK_FALSE(v.has_icmp);
}

TEST_CASE("IPv4 options move the transport header") {
  const PacketView v =
      parse_ok(ipv4(IPPROTO_UDP, udp_header(53, 5353, 4), 4, {1, 2, 3, 4}, {5, 6, 7, 8}, 0, 8));
  CHECK(v.l4_offset == 28);
  CHECK(v.src_port == 53);
  CHECK(v.dst_port == 5353);
  CHECK(v.payload_offset == 36);
  CHECK(v.payload().size() == 4);
}

TEST_CASE("ICMP and ICMPv6 types and codes") {
  const PacketView v4 = parse_ok(ipv4(IPPROTO_ICMP, icmp_header(8, 0)));
  CHECK(v4.has_icmp);
  CHECK(v4.icmp_type == 8);
  CHECK_FALSE(v4.has_ports);
  const PacketView v6 = parse_ok(ipv6(IPPROTO_ICMPV6, icmp_header(128, 3)));
  CHECK(v6.has_icmp);
  CHECK(v6.icmp_type == 128);
  CHECK(v6.icmp_code == 3);
}

TEST_CASE("IPv6 UDP with a chain of extension headers") {
  const Bytes rest = concat({ipv6_extension(0, 43, 8),    // hop-by-hop -> routing
                             ipv6_extension(43, 60, 24),  // routing -> destination options
                             ipv6_extension(60, 51, 16),  // destination options -> AH
                             ipv6_extension(51, IPPROTO_UDP, 24), udp_header(1000, 2000, 6)});
  const PacketView v = parse_ok(ipv6(0, rest, 6));
  CHECK(v.ip_version == 6);
  CHECK(v.src.to_string() == "fd00::1");
  CHECK(v.dst.to_string() == "fd00::2");
  CHECK(v.protocol == IPPROTO_UDP);
  CHECK(v.l4_offset == 40 + 8 + 24 + 16 + 24);
  CHECK(v.src_port == 1000);
  CHECK(v.dst_port == 2000);
  CHECK(v.payload().size() == 6);
}

TEST_CASE("fragments: only the first carries the transport header") {
  SECTION("IPv4 first fragment (MF set)") {
    const PacketView v =
        parse_ok(ipv4(IPPROTO_UDP, udp_header(1, 2, 100), 100, {1, 1, 1, 1}, {2, 2, 2, 2}, 0x2000));
    CHECK(v.fragment);
    CHECK(v.first_fragment);
    CHECK(v.has_ports);
  }
  SECTION("IPv4 later fragment") {
    const PacketView v =
        parse_ok(ipv4(IPPROTO_UDP, Bytes(3, 0), 0, {1, 1, 1, 1}, {2, 2, 2, 2}, 0x0010));
    CHECK(v.fragment);
    CHECK_FALSE(v.first_fragment);
    CHECK_FALSE(v.has_ports);
  }
  SECTION("IPv6 later fragment") {
    Bytes fragment = ipv6_extension(44, IPPROTO_TCP, 8);
    put16(fragment, 2, 0x0100);  // offset 32
    const PacketView v = parse_ok(ipv6(44, concat({fragment, Bytes(5, 0)})));
    CHECK(v.fragment);
    CHECK_FALSE(v.first_fragment);
    CHECK(v.protocol == IPPROTO_TCP);
    CHECK_FALSE(v.has_ports);
  }
  SECTION("IPv6 atomic fragment (offset 0, no more fragments) is a whole packet") {
    const Bytes fragment = ipv6_extension(44, IPPROTO_UDP, 8);
    const PacketView v =
        parse_ok(ipv6(44, concat({fragment, udp_header(1000, 2000, 6), Bytes(6, 0)})));
    CHECK_FALSE(v.fragment);
    CHECK(v.first_fragment);
    CHECK(v.has_ports);
    CHECK(v.dst_port == 2000);
  }
  SECTION("IPv6 first fragment (more fragments)") {
    Bytes fragment = ipv6_extension(44, IPPROTO_UDP, 8);
    put16(fragment, 2, 0x0001);
    const PacketView v =
        parse_ok(ipv6(44, concat({fragment, udp_header(1000, 2000, 6), Bytes(6, 0)})));
    CHECK(v.fragment);
    CHECK(v.first_fragment);
  }
}

TEST_CASE("a capture shorter than the packet is flagged, not rejected") {
  Bytes packet = ipv4(IPPROTO_TCP, tcp_header(1, 2), 1000);
  packet.resize(60);  // copy_range 60
  const PacketView v = parse_ok(packet);
  CHECK(v.captured_truncated);
  CHECK(v.ip_length == 1040);
  CHECK(v.dst_port == 2);
  CHECK(v.payload().size() == 20);
}

TEST_CASE("unknown transport protocols parse without ports") {
  const PacketView v = parse_ok(ipv4(47, Bytes(4, 0)));  // GRE
  CHECK(v.protocol == 47);
  CHECK_FALSE(v.has_ports);
  CHECK_FALSE(v.has_icmp);
}

TEST_CASE("every parse error is reachable and named") {
  Bytes bad_ihl = ipv4(IPPROTO_TCP, tcp_header(1, 2));
  bad_ihl[0] = 0x44;
  Bytes long_ihl = ipv4(IPPROTO_TCP, tcp_header(1, 2));
  long_ihl[0] = 0x4f;  // 60-byte header in a 40-byte packet
  long_ihl.resize(40);
  Bytes bad_total = ipv4(IPPROTO_TCP, tcp_header(1, 2));
  put16(bad_total, 2, 10);
  Bytes bad_offset = ipv4(IPPROTO_TCP, tcp_header(1, 2));
  bad_offset[32] = 0x40;
  Bytes long_offset = ipv4(IPPROTO_TCP, tcp_header(1, 2));
  long_offset[32] = 0xf0;
  Bytes udp_short_length = ipv4(IPPROTO_UDP, udp_header(1, 2));
  put16(udp_short_length, 24, 4);
  Bytes udp_long_length = ipv4(IPPROTO_UDP, udp_header(1, 2));
  put16(udp_long_length, 24, 100);
  Bytes many_extensions;
  for (int i = 0; i < 9; ++i)
    many_extensions = concat({many_extensions, ipv6_extension(60, 60, 8)});

  const std::vector<std::pair<Bytes, ParseError>> cases = {
      {{}, ParseError::empty},
      {{0x50, 0, 0, 0}, ParseError::bad_ip_version},
      {Bytes(19, 0x45), ParseError::ipv4_truncated_header},
      {long_ihl, ParseError::ipv4_truncated_header},
      {bad_ihl, ParseError::ipv4_bad_header_length},
      {bad_total, ParseError::ipv4_bad_total_length},
      {Bytes{0x60, 0, 0, 0}, ParseError::ipv6_truncated_header},
      {ipv6(0, Bytes{IPPROTO_UDP, 2, 0, 0}), ParseError::ipv6_truncated_extension},
      {ipv6(60, many_extensions), ParseError::ipv6_too_many_extensions},
      {ipv4(IPPROTO_TCP, Bytes(10, 0)), ParseError::tcp_truncated_header},
      {long_offset, ParseError::tcp_truncated_header},
      {bad_offset, ParseError::tcp_bad_data_offset},
      {ipv4(IPPROTO_UDP, Bytes(7, 0)), ParseError::udp_truncated_header},
      {udp_short_length, ParseError::udp_bad_length},
      {udp_long_length, ParseError::udp_bad_length},
      {ipv6(IPPROTO_ICMPV6, Bytes(3, 0)), ParseError::icmp_truncated_header},
  };
  std::vector<bool> seen(static_cast<std::size_t>(ParseError::count_));
  seen[0] = true;
  for (const auto& [bytes, expected] : cases) {
    INFO("expected " << to_string(expected));
    CHECK(parse_error(bytes) == expected);
    seen[static_cast<std::size_t>(expected)] = true;
    CHECK(to_string(expected) != "unknown");
  }
  for (std::size_t i = 0; i < seen.size(); ++i) {
    INFO("no test case for " << to_string(static_cast<ParseError>(i)));
    CHECK(seen[i]);
  }
  CHECK(to_string(ParseError::udp_bad_length) == "udp_bad_length");
}

TEST_CASE("every truncation of valid packets is handled without reading past the end") {
  const Bytes rest =
      concat({ipv6_extension(0, 44, 8), ipv6_extension(44, IPPROTO_UDP, 8), udp_header(7, 9, 12)});
  const std::vector<Bytes> packets = {
      ipv4(IPPROTO_TCP, tcp_header(1, 2), 30, {1, 2, 3, 4}, {5, 6, 7, 8}, 0, 12),
      ipv6(0, rest, 12),
      ipv4(IPPROTO_ICMP, icmp_header(3, 1), 28),
  };
  for (const Bytes& full : packets) {
    for (std::size_t length = 0; length <= full.size(); ++length) {
      // A fresh allocation of exactly `length` bytes lets ASan catch any over-read.
      const Bytes cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(length));
      PacketView view;
      const ParseError error = parse_packet(cut, view);
      if (error == ParseError::none) {
        CHECK((view.captured_truncated || length == full.size()));
        CHECK(view.payload().size() <= length);
      }
    }
  }
}

TEST_CASE("address formatting") {
  IpAddress unset;
  CHECK(unset.to_string() == "-");
  const PacketView v = parse_ok(ipv6(IPPROTO_UDP, udp_header(1, 2), 0, 1, 2, 0x20));
  CHECK(v.src.to_string() == "2000::1");
}
