#include "plugins/common/siphash.hpp"

#include <catch2/catch.hpp>

#include <vector>

TEST_CASE("SipHash-2-4 gives the reference digest (key 00..0f, message 00..0e)") {
  const pktbroker::plugins::SipKey key = {0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};
  std::vector<std::uint8_t> message(15);
  for (std::size_t i = 0; i < message.size(); ++i) message[i] = static_cast<std::uint8_t>(i);
  CHECK(pktbroker::plugins::siphash24(key, message) == 0xa129ca6149be45e5ULL);
  CHECK(pktbroker::plugins::siphash24(key, {}) == 0x726fdb47dd0e0e31ULL);
}
