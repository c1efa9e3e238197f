#include "packet_ids.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <optional>
#include <vector>

using pktbroker::nfq::PacketIds;

TEST_CASE("ids start at 1, count up, and each names its token until its verdict") {
  PacketIds ids;
  CHECK(ids.assign(100) == 1);
  CHECK(ids.assign(200) == 2);
  CHECK(ids.assign(300) == 3);
  CHECK(ids.take(2) == std::optional<std::uint64_t>(200));
  CHECK_FALSE(ids.take(2));  // decided already: the kernel's ENOENT
  CHECK_FALSE(ids.take(4));  // never handed out
  CHECK_FALSE(ids.take(0));
  CHECK(ids.take(1) == std::optional<std::uint64_t>(100));
  CHECK(ids.waiting() == 1);
  CHECK(ids.assign(400) == 4);  // ids keep counting after verdicts
  CHECK(ids.take(3) == std::optional<std::uint64_t>(300));
}

TEST_CASE("a batch verdict takes every waiting id up to its own, and no later one") {
  PacketIds ids;
  for (std::uint64_t token = 1; token <= 6; ++token) ids.assign(token * 10);
  CHECK(ids.take(2));
  CHECK(ids.take_through(4) == std::vector<std::uint64_t>{10, 30, 40});
  CHECK(ids.take_through(4).empty());  // nothing left up to 4
  CHECK(ids.take_through(0).empty());  // before the first waiting id
  CHECK(ids.waiting() == 2);
  CHECK(ids.take_through(1000) == std::vector<std::uint64_t>{50, 60});  // past the last: all
  CHECK(ids.waiting() == 0);
}

TEST_CASE("ids wrap like the kernel's 32-bit ids, batch verdicts included") {
  PacketIds ids(0xffff'fffe);
  CHECK(ids.assign(1) == 0xffff'fffe);
  CHECK(ids.assign(2) == 0xffff'ffff);
  CHECK(ids.assign(3) == 0);
  CHECK(ids.assign(4) == 1);
  CHECK(ids.take(0) == std::optional<std::uint64_t>(3));
  // Id 1 comes after 0xfffffffe in serial order: the batch takes everything before it too.
  CHECK(ids.take_through(1) == std::vector<std::uint64_t>{1, 2, 4});
  CHECK(ids.assign(5) == 2);
  CHECK(ids.take_through(0xffff'fff0).empty());  // before the waiting ids, in serial order
  CHECK(ids.take(2) == std::optional<std::uint64_t>(5));
}

TEST_CASE("past max_tracked ids the oldest waiting one is forgotten and counted, not kept") {
  PacketIds ids;
  for (std::size_t i = 0; i < PacketIds::max_tracked; ++i) ids.assign(i);
  CHECK(ids.waiting() == PacketIds::max_tracked);
  const std::uint32_t next = ids.assign(999'999);
  CHECK(next == PacketIds::max_tracked + 1);
  CHECK(ids.waiting() == PacketIds::max_tracked);
  CHECK(ids.forgotten() == 1);
  CHECK_FALSE(ids.take(1));  // the forgotten one
  CHECK(ids.take(2) == std::optional<std::uint64_t>(1));
  CHECK(ids.take(next) == std::optional<std::uint64_t>(999'999));
}

TEST_CASE("one id never answered does not make the others pile up") {
  PacketIds ids;
  const std::uint32_t ignored = ids.assign(7);
  for (std::uint64_t i = 0; i < 3 * PacketIds::max_tracked; ++i) {
    REQUIRE(ids.take(ids.assign(i)));  // every later id is answered at once
  }
  CHECK(ids.waiting() == 0);
  CHECK(ids.forgotten() == 1);
  CHECK_FALSE(ids.take(ignored));
}
