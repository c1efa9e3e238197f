// Crafts IPv4/IPv6 packets byte by byte for unit tests.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <vector>

namespace pktbroker::test {

using Bytes = std::vector<std::uint8_t>;

inline void put16(Bytes& b, std::size_t at, std::uint16_t v) {
  b[at] = static_cast<std::uint8_t>(v >> 8);
  b[at + 1] = static_cast<std::uint8_t>(v);
}

inline Bytes tcp_header(std::uint16_t sport, std::uint16_t dport, std::uint8_t flags = 0x02) {
  Bytes h(20, 0);
  put16(h, 0, sport);
  put16(h, 2, dport);
  h[12] = 0x50;
  h[13] = flags;
  return h;
}

inline Bytes udp_header(std::uint16_t sport, std::uint16_t dport, std::uint16_t payload = 0) {
  Bytes h(8, 0);
  put16(h, 0, sport);
  put16(h, 2, dport);
  put16(h, 4, static_cast<std::uint16_t>(8 + payload));
  return h;
}

inline Bytes icmp_header(std::uint8_t type, std::uint8_t code = 0) {
  return {type, code, 0, 0, 0, 0, 0, 0};
}

/// IPv4 packet: header (with options of `options` bytes) + transport + payload.
inline Bytes ipv4(std::uint8_t protocol, const Bytes& l4, std::size_t payload = 0,
                  std::initializer_list<std::uint8_t> src = {10, 0, 0, 1},
                  std::initializer_list<std::uint8_t> dst = {10, 0, 0, 2},
                  std::uint16_t fragment = 0, std::size_t options = 0) {
  Bytes p(20 + options, 0);
  p[0] = static_cast<std::uint8_t>(0x40 | ((20 + options) / 4));
  p[8] = 64;
  p[9] = protocol;
  put16(p, 6, fragment);
  std::copy(src.begin(), src.end(), p.begin() + 12);
  std::copy(dst.begin(), dst.end(), p.begin() + 16);
  p.insert(p.end(), l4.begin(), l4.end());
  p.insert(p.end(), payload, 0xab);
  put16(p, 2, static_cast<std::uint16_t>(p.size()));
  return p;
}

/// An IPv6 extension header of `length` bytes (multiple of 8; AH uses its own length unit).
inline Bytes ipv6_extension(std::uint8_t type, std::uint8_t next, std::size_t length = 8) {
  Bytes e(length, 0);
  e[0] = next;
  e[1] = static_cast<std::uint8_t>(type == 51 ? length / 4 - 2 : length / 8 - 1);
  return e;
}

/// IPv6 packet; `extensions` already carry their next-header bytes; `first` is the first
/// next-header value.
inline Bytes ipv6(std::uint8_t first, const Bytes& rest, std::size_t payload = 0,
                  std::uint8_t src_last = 1, std::uint8_t dst_last = 2,
                  std::uint8_t prefix = 0xfd) {
  Bytes p(40, 0);
  p[0] = 0x60;
  p[6] = first;
  p[7] = 64;
  p[8] = prefix;
  p[23] = src_last;
  p[24] = prefix;
  p[39] = dst_last;
  p.insert(p.end(), rest.begin(), rest.end());
  p.insert(p.end(), payload, 0xcd);
  put16(p, 4, static_cast<std::uint16_t>(p.size() - 40));
  return p;
}

inline Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes all;
  for (const auto& part : parts) all.insert(all.end(), part.begin(), part.end());
  return all;
}

}  // namespace pktbroker::test
