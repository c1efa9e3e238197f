#include "broker/flow/name_cache.hpp"

#include <catch2/catch.hpp>

using namespace pktbroker;
using namespace std::chrono_literals;

namespace {

IpAddress v4(std::uint8_t last) {
  IpAddress address;
  address.family = 4;
  address.bytes = {10, 0, 0, last};
  return address;
}

const Clock::time_point t0{};

}  // namespace

TEST_CASE("names are kept for their TTL, at least a minute and at most a day") {
  NameCache names;
  names.remember(v4(1), "a.test", 300, t0);
  names.remember(v4(2), "b.test", 0, t0);
  names.remember(v4(3), "c.test", 10 * 24 * 3600, t0);
  CHECK(names.lookup(v4(1), t0 + 299s) == "a.test");
  CHECK(names.lookup(v4(1), t0 + 300s).empty());
  CHECK(names.lookup(v4(2), t0 + 59s) == "b.test");
  CHECK(names.lookup(v4(2), t0 + 60s).empty());
  CHECK(names.lookup(v4(3), t0 + 24h - 1s) == "c.test");
  CHECK(names.lookup(v4(3), t0 + 24h).empty());
  CHECK(names.lookup(v4(4), t0).empty());
  IpAddress six;
  six.family = 6;
  six.bytes[0] = 10;  // same leading bytes as v4(0), another family
  CHECK(names.lookup(six, t0).empty());
}

TEST_CASE("a new answer replaces the name; at capacity the oldest address is forgotten") {
  NameCache names(2);
  names.remember(v4(1), "a.test", 300, t0);
  names.remember(v4(2), "b.test", 300, t0);
  names.remember(v4(1), "renamed.test", 300, t0);  // 1 is now the newest
  names.remember(v4(3), "c.test", 300, t0);
  CHECK(names.size() == 2);
  CHECK(names.lookup(v4(1), t0) == "renamed.test");
  CHECK(names.lookup(v4(2), t0).empty());
  CHECK(names.lookup(v4(3), t0) == "c.test");
}
