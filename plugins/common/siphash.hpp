// SipHash-2-4 (Aumasson and Bernstein): a keyed 64-bit hash. A plugin that remembers a digest
// of what a peer sent (a DNS query's name) uses it with a random key, so no peer can choose
// another input with the same digest.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>

namespace pktbroker::plugins {

using SipKey = std::array<std::uint64_t, 2>;

inline std::uint64_t siphash24(const SipKey& key, std::span<const std::uint8_t> bytes) noexcept {
  std::uint64_t v0 = 0x736f6d6570736575ULL ^ key[0];
  std::uint64_t v1 = 0x646f72616e646f6dULL ^ key[1];
  std::uint64_t v2 = 0x6c7967656e657261ULL ^ key[0];
  std::uint64_t v3 = 0x7465646279746573ULL ^ key[1];
  const auto round = [&] {
    v0 += v1;
    v1 = std::rotl(v1, 13);
    v1 ^= v0;
    v0 = std::rotl(v0, 32);
    v2 += v3;
    v3 = std::rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = std::rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = std::rotl(v1, 17);
    v1 ^= v2;
    v2 = std::rotl(v2, 32);
  };
  const auto word = [](const std::uint8_t* p, std::size_t n) {
    std::uint64_t w = 0;
    for (std::size_t i = 0; i < n; ++i) w |= std::uint64_t{p[i]} << (8 * i);  // little endian
    return w;
  };
  const std::size_t whole = bytes.size() / 8 * 8;
  for (std::size_t at = 0; at < whole; at += 8) {
    const std::uint64_t m = word(bytes.data() + at, 8);
    v3 ^= m;
    round();
    round();
    v0 ^= m;
  }
  const std::uint64_t last =
      (std::uint64_t{bytes.size()} << 56) | word(bytes.data() + whole, bytes.size() - whole);
  v3 ^= last;
  round();
  round();
  v0 ^= last;
  v2 ^= 0xff;
  for (int i = 0; i < 4; ++i) round();
  return v0 ^ v1 ^ v2 ^ v3;
}

}  // namespace pktbroker::plugins
