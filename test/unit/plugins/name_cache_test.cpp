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
  CHECK(names.lookup(v4(1), t0 + 299s) == std::vector<std::string>{"a.test"});
  CHECK(names.lookup(v4(1), t0 + 300s).empty());
  CHECK(names.lookup(v4(2), t0 + 59s) == std::vector<std::string>{"b.test"});
  CHECK(names.lookup(v4(2), t0 + 60s).empty());
  CHECK(names.lookup(v4(3), t0 + 24h - 1s) == std::vector<std::string>{"c.test"});
  CHECK(names.lookup(v4(3), t0 + 24h).empty());
  CHECK(names.lookup(v4(4), t0).empty());
  IpAddress six;
  six.family = 6;
  six.bytes[0] = 10;  // same leading bytes as v4(0), another family
  CHECK(names.lookup(six, t0).empty());
}

// Anyone may make a zone answer with any address: a later answer for another name must not
// rename an address (the tracker's address answered for x.attacker.example would stop
// matching `*.tracker.example`).
TEST_CASE("a later name joins the names of an address and never displaces a live one") {
  NameCache names(2);
  CHECK(names.remember(v4(1), "a.tracker.test", 300, t0));
  CHECK(names.remember(v4(1), "x.attacker.test", 3600, t0));
  CHECK(names.lookup(v4(1), t0) == std::vector<std::string>{"a.tracker.test", "x.attacker.test"});
  for (std::size_t i = 2; i < NameCache::max_names; ++i) {
    CHECK(names.remember(v4(1), "n" + std::to_string(i) + ".attacker.test", 3600, t0));
  }
  CHECK_FALSE(names.remember(v4(1), "one-too-many.attacker.test", 3600, t0));
  CHECK(names.lookup(v4(1), t0).front() == "a.tracker.test");
  // The same name again refreshes it; once it expires its slot is free.
  CHECK(names.remember(v4(1), "a.tracker.test", 60, t0));
  CHECK(names.remember(v4(1), "late.test", 300, t0 + 301s));  // the 300 s names have expired
  CHECK(names.lookup(v4(1), t0 + 301s).back() == "late.test");
}

TEST_CASE("at capacity the least recently remembered address is forgotten") {
  NameCache names(2);
  names.remember(v4(1), "a.test", 300, t0);
  names.remember(v4(2), "b.test", 300, t0);
  names.remember(v4(1), "a.test", 300, t0);  // 1 is now the newest
  names.remember(v4(3), "c.test", 300, t0);
  CHECK(names.size() == 2);
  CHECK(names.lookup(v4(1), t0) == std::vector<std::string>{"a.test"});
  CHECK(names.lookup(v4(2), t0).empty());
  CHECK(names.lookup(v4(3), t0) == std::vector<std::string>{"c.test"});
}
