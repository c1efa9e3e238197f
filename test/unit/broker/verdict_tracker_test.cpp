#include "broker/verdict_tracker.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <random>
#include <vector>

using pktbroker::Clock;
using pktbroker::PacketToken;
using pktbroker::Verdict;
using pktbroker::VerdictKind;
using pktbroker::VerdictTracker;
using Result = VerdictTracker::ResolveResult;
using namespace std::chrono_literals;

namespace {

const Verdict accept{VerdictKind::accept, std::nullopt};
const Verdict drop{VerdictKind::drop, std::nullopt};
const Clock::time_point t0{};

struct Released {
  std::uint32_t packet_id;
  Verdict verdict;
};

}  // namespace

TEST_CASE("tokens name their queue and are unique") {
  VerdictTracker tracker(5);
  const PacketToken a = tracker.track({1, 10, accept, t0 + 1s, nullptr});
  const PacketToken b = tracker.track({2, 10, accept, t0 + 1s, nullptr});
  CHECK(a != b);
  CHECK(pktbroker::token_queue(a) == 5);
  CHECK(pktbroker::token_queue(b) == 5);
}

TEST_CASE("only the owner resolves a packet, and only once") {
  VerdictTracker tracker(0);
  const PacketToken token = tracker.track({42, 7, accept, t0 + 1s, nullptr});
  VerdictTracker::Pending taken;
  CHECK(tracker.take(token, 8, taken) == Result::not_owner);
  CHECK(tracker.size() == 1);
  CHECK(tracker.take(token, 7, taken) == Result::resolved);
  CHECK(taken.packet_id == 42);
  CHECK(tracker.take(token, 7, taken) == Result::unknown_token);
  CHECK(tracker.size() == 0);
}

TEST_CASE("expiry releases exactly the packets past their deadline with their fallback") {
  VerdictTracker tracker(0);
  tracker.track({1, 1, accept, t0 + 100ms, nullptr});
  tracker.track({2, 1, drop, t0 + 300ms, nullptr});
  tracker.track({3, 2, accept, t0 + 200ms, nullptr});
  std::vector<Released> released;
  tracker.expire(t0 + 250ms, [&](const VerdictTracker::Pending& p) {
    released.push_back({p.packet_id, p.fallback});
  });
  REQUIRE(released.size() == 2);
  CHECK(released[0].packet_id == 1);
  CHECK(released[1].packet_id == 3);
  CHECK(tracker.size() == 1);
  CHECK(tracker.next_deadline() == t0 + 300ms);
  released.clear();
  tracker.expire(t0 + 10s, [&](const VerdictTracker::Pending& p) {
    released.push_back({p.packet_id, p.fallback});
  });
  REQUIRE(released.size() == 1);
  CHECK(released[0].verdict == drop);
  CHECK_FALSE(tracker.next_deadline().has_value());
}

TEST_CASE("a departing session releases all and only its packets") {
  VerdictTracker tracker(0);
  tracker.track({1, 1, accept, t0 + 1s, nullptr});
  tracker.track({2, 2, accept, t0 + 1s, nullptr});
  tracker.track({3, 1, drop, t0 + 2s, nullptr});
  CHECK(tracker.owned_by(1) == 2);
  std::vector<Released> released;
  tracker.release_session(1, [&](const VerdictTracker::Pending& p) {
    released.push_back({p.packet_id, p.fallback});
  });
  REQUIRE(released.size() == 2);
  CHECK(released[0].packet_id == 1);
  CHECK(released[1].packet_id == 3);
  CHECK(released[1].verdict == drop);
  CHECK(tracker.size() == 1);
  CHECK(tracker.owned_by(1) == 0);
  // The released entries no longer expire.
  released.clear();
  tracker.expire(t0 + 1500ms, [&](const VerdictTracker::Pending& p) {
    released.push_back({p.packet_id, p.fallback});
  });
  REQUIRE(released.size() == 1);
  CHECK(released[0].packet_id == 2);
}

TEST_CASE("the oldest pending kernel id follows arrival order") {
  VerdictTracker tracker(0);
  CHECK_FALSE(tracker.oldest_packet_id().has_value());
  const PacketToken first = tracker.track({100, 1, accept, t0 + 1s, nullptr});
  tracker.track({101, 1, accept, t0 + 1s, nullptr});
  CHECK(tracker.oldest_packet_id() == 100U);
  VerdictTracker::Pending taken;
  REQUIRE(tracker.take(first, 1, taken) == Result::resolved);
  CHECK(tracker.oldest_packet_id() == 101U);
  std::size_t released = 0;
  tracker.release_all([&](const VerdictTracker::Pending&) { ++released; });
  CHECK(released == 1);
  CHECK(tracker.size() == 0);
}

// A chain `pass` takes a packet and tracks it again under a newer token: the lowest kernel id
// still waiting is then not the packet of the lowest token (a batch verdict up to that would
// release the re-tracked packet unjudged).
TEST_CASE("a packet tracked again keeps its place in the kernel's order") {
  VerdictTracker tracker(0);
  const PacketToken a = tracker.track({100, 1, accept, t0 + 1s, nullptr});
  tracker.track({101, 3, accept, t0 + 1s, nullptr});
  VerdictTracker::Pending taken;
  REQUIRE(tracker.take(a, 1, taken) == Result::resolved);
  tracker.track({100, 2, accept, t0 + 1s, nullptr});  // passed on to the chain's next member
  CHECK(tracker.oldest_packet_id() == 100U);
}

TEST_CASE("the oldest pending kernel id follows the kernel's wrapping order") {
  VerdictTracker tracker(0);
  tracker.track({0xffffffffU, 1, accept, t0 + 1s, nullptr});
  tracker.track({2, 1, accept, t0 + 1s, nullptr});
  CHECK(tracker.oldest_packet_id() == 0xffffffffU);
}

TEST_CASE("a re-tracked packet first in token order still yields the lowest id") {
  VerdictTracker tracker(0);
  const PacketToken a = tracker.track({100, 1, accept, t0 + 1s, nullptr});
  const PacketToken b = tracker.track({101, 1, accept, t0 + 1s, nullptr});
  tracker.track({102, 1, accept, t0 + 1s, nullptr});
  VerdictTracker::Pending taken;
  REQUIRE(tracker.take(b, 1, taken) == Result::resolved);
  tracker.track({101, 2, accept, t0 + 1s, nullptr});  // 101 passed on: tracked after 102
  REQUIRE(tracker.take(a, 1, taken) == Result::resolved);
  CHECK(tracker.oldest_packet_id() == 101U);  // first by token is 102; 101 waits apart
  tracker.track({103, 1, accept, t0 + 1s, nullptr});
  CHECK(tracker.oldest_packet_id() == 101U);
}

// The slab against a plain model (a map by token, deadlines and ids found by scanning): random
// tracks (some re-tracked out of order, kernel ids near the wrap), takes by owner and stranger,
// expiries, departing sessions; far past the slab's first 64 slots and its index's growth.
TEST_CASE("the tracker agrees with a plain model over a random run") {
  struct Model {
    std::uint32_t packet_id;
    pktbroker::SessionId owner;
    Clock::time_point deadline;
  };
  VerdictTracker tracker(3);
  std::map<PacketToken, Model> model;
  std::mt19937 random(42);
  std::uint32_t next_id = 0xffffff00U;  // wraps during the run
  Clock::time_point now = t0;
  const auto check_left = [&](const VerdictTracker::Pending& pending) {
    const auto found = std::find_if(model.begin(), model.end(), [&](const auto& entry) {
      return entry.second.packet_id == pending.packet_id && entry.second.owner == pending.owner &&
             entry.second.deadline == pending.deadline;
    });
    REQUIRE(found != model.end());
    model.erase(found);
  };
  for (int step = 0; step < 200000; ++step) {
    const unsigned what = random() % 100;
    if (what < 45 || model.size() < 4) {
      // Mostly in order; now and then an older id again (a chain `pass`).
      const std::uint32_t id = random() % 10 == 0 ? next_id - 1 - random() % 50 : next_id++;
      const pktbroker::SessionId owner = random() % 5;
      const Clock::time_point deadline = now + std::chrono::milliseconds(random() % 1000);
      const PacketToken token = tracker.track({id, owner, accept, deadline, nullptr});
      REQUIRE(model.emplace(token, Model{id, owner, deadline}).second);
    } else if (what < 85) {
      auto it = model.begin();
      std::advance(it, random() % model.size());
      const PacketToken token = it->first;
      const pktbroker::SessionId stranger = it->second.owner + 1;
      VerdictTracker::Pending out;
      REQUIRE(tracker.take(token, stranger, out) == Result::not_owner);
      REQUIRE(tracker.take(token, it->second.owner, out) == Result::resolved);
      REQUIRE(out.packet_id == it->second.packet_id);
      model.erase(it);
      REQUIRE(tracker.take(token, out.owner, out) == Result::unknown_token);
    } else if (what < 97) {
      now += std::chrono::milliseconds(random() % 50);
      Clock::time_point last{};
      tracker.expire(now, [&](const VerdictTracker::Pending& pending) {
        REQUIRE(pending.deadline <= now);
        REQUIRE(pending.deadline >= last);  // earliest first
        last = pending.deadline;
        check_left(pending);
      });
      for (const auto& [token, entry] : model) REQUIRE(entry.deadline > now);
    } else {
      const pktbroker::SessionId gone = random() % 5;
      REQUIRE(tracker.owned_by(gone) ==
              static_cast<std::size_t>(std::count_if(
                  model.begin(), model.end(), [&](auto& e) { return e.second.owner == gone; })));
      tracker.release_session(gone, [&](const VerdictTracker::Pending& pending) {
        REQUIRE(pending.owner == gone);
        check_left(pending);
      });
      REQUIRE(tracker.owned_by(gone) == 0);
    }
    REQUIRE(tracker.size() == model.size());
    if (model.empty()) {
      REQUIRE_FALSE(tracker.oldest_packet_id());
      REQUIRE_FALSE(tracker.next_deadline());
      continue;
    }
    std::uint32_t lowest = model.begin()->second.packet_id;
    Clock::time_point earliest = model.begin()->second.deadline;
    for (const auto& [token, entry] : model) {
      if (static_cast<std::int32_t>(entry.packet_id - lowest) < 0) lowest = entry.packet_id;
      earliest = std::min(earliest, entry.deadline);
    }
    REQUIRE(tracker.oldest_packet_id() == lowest);
    REQUIRE(tracker.next_deadline() == earliest);
  }
  tracker.release_all([&](const VerdictTracker::Pending& pending) { check_left(pending); });
  REQUIRE(model.empty());
  REQUIRE(tracker.size() == 0);
}
