#include "broker/flow/flow_table.hpp"

#include "test/unit/packet_builder.hpp"

#include <catch2/catch.hpp>

#include <netinet/in.h>

using namespace pktbroker;
using namespace pktbroker::test;
using namespace std::chrono_literals;

namespace {

PacketView view_of(const Bytes& bytes) {
  PacketView view;
  REQUIRE(parse_packet(bytes, view) == ParseError::none);
  return view;
}

Bytes udp(std::uint16_t sport, std::uint16_t dport, bool reply = false) {
  return reply ? ipv4(IPPROTO_UDP, udp_header(sport, dport), 0, {10, 0, 0, 2}, {10, 0, 0, 1})
               : ipv4(IPPROTO_UDP, udp_header(sport, dport));
}

Bytes tcp(std::uint16_t sport, std::uint16_t dport, std::uint8_t flags, bool reply = false) {
  return reply ? ipv4(IPPROTO_TCP, tcp_header(sport, dport, flags), 0, {10, 0, 0, 2}, {10, 0, 0, 1})
               : ipv4(IPPROTO_TCP, tcp_header(sport, dport, flags));
}

const Clock::time_point t0{};

}  // namespace

TEST_CASE("both directions of a 5-tuple are one flow, and the first sender is its client") {
  FlowTable table;
  const auto first = table.lookup(view_of(udp(40000, 53)), CtState::none, t0);
  REQUIRE(first.created);
  CHECK(first.direction == PKTB_FROM_CLIENT);
  const auto reply = table.lookup(view_of(udp(53, 40000, true)), CtState::none, t0);
  CHECK_FALSE(reply.created);
  CHECK(reply.flow == first.flow);
  CHECK(reply.direction == PKTB_FROM_SERVER);
  const pktb_tuple tuple = FlowTable::tuple_of(*first.flow);
  CHECK(tuple.client_port == 40000);
  CHECK(tuple.server_port == 53);
  CHECK(tuple.client_addr[3] == 1);
  CHECK(tuple.server_addr[3] == 2);
  CHECK(table.lookup(view_of(udp(40001, 53)), CtState::none, t0).created);
  CHECK(table.size() == 2);

  const Bytes v6 = ipv6(IPPROTO_UDP, udp_header(5000, 53));
  const Bytes v6_reply = ipv6(IPPROTO_UDP, udp_header(53, 5000), 0, 2, 1);
  const auto six = table.lookup(view_of(v6), CtState::none, t0);
  CHECK(six.created);
  CHECK(table.lookup(view_of(v6_reply), CtState::none, t0).flow == six.flow);
}

TEST_CASE("idle flows expire by protocol and TCP state") {
  std::vector<std::uint64_t> closed;
  FlowLimits limits;
  limits.idle = {30s, 20s, 300s, 10s, 30s};  // udp, tcp opening, established, closing, other
  FlowTable table(limits, [&](Flow& flow) { closed.push_back(flow.id); });
  const auto dns = table.lookup(view_of(udp(40000, 53)), CtState::none, t0).flow->id;
  const auto opening = table.lookup(view_of(tcp(40000, 80, 0x02)), CtState::none, t0).flow->id;
  table.lookup(view_of(tcp(40001, 80, 0x02)), CtState::none, t0);
  table.lookup(view_of(tcp(80, 40001, 0x12, true)), CtState::none, t0);
  const auto established = table.lookup(view_of(tcp(40001, 80, 0x10)), CtState::none, t0).flow->id;
  table.lookup(view_of(tcp(40002, 80, 0x10)), CtState::none, t0);
  const auto closing = table.lookup(view_of(tcp(40002, 80, 0x04)), CtState::none, t0).flow->id;

  table.expire(t0 + 9s);
  CHECK(closed.empty());
  table.expire(t0 + 10s);
  CHECK(closed == std::vector{closing});
  table.expire(t0 + 20s);
  CHECK(closed == std::vector{closing, opening});
  table.expire(t0 + 30s);
  CHECK(closed == std::vector{closing, opening, dns});
  table.expire(t0 + 299s);
  CHECK(table.size() == 1);
  table.expire(t0 + 300s);
  CHECK(closed.back() == established);
  CHECK(table.size() == 0);
  CHECK(table.counters().expired == 4);
}

TEST_CASE("a packet keeps its flow alive; the kernel's conntrack state is trusted") {
  FlowTable table;
  table.lookup(view_of(tcp(40000, 80, 0x10)), CtState::established, t0);
  const auto again = table.lookup(view_of(tcp(40000, 80, 0x10)), CtState::established, t0 + 200s);
  CHECK(again.flow->idle_class == FlowClass::tcp_established);
  table.expire(t0 + 400s);
  CHECK(table.size() == 1);  // seen at 200 s: idle for 200 s only
}

TEST_CASE("at capacity the least recently seen flow is evicted and counted") {
  std::vector<std::uint64_t> closed;
  FlowLimits limits;
  limits.capacity = 3;
  FlowTable table(limits, [&](Flow& flow) { closed.push_back(flow.id); });
  const auto a = table.lookup(view_of(udp(1, 53)), CtState::none, t0).flow->id;
  const auto b = table.lookup(view_of(udp(2, 53)), CtState::none, t0 + 1s).flow->id;
  table.lookup(view_of(tcp(3, 80, 0x02)), CtState::none, t0 + 2s);
  table.lookup(view_of(udp(1, 53)), CtState::none, t0 + 3s);  // a is fresh again
  table.lookup(view_of(udp(4, 53)), CtState::none, t0 + 4s);
  CHECK(closed == std::vector{b});
  CHECK(table.size() == 3);
  CHECK(table.counters().evicted == 1);
  CHECK(table.counters().created == 4);
  CHECK(table.find(*table.lookup(view_of(udp(1, 53)), CtState::none, t0 + 5s).flow->key)->id == a);
}

TEST_CASE("an expectation turns the next matching new flow into a child, once") {
  FlowTable table;
  Flow& control = *table.lookup(view_of(tcp(40000, 21, 0x10)), CtState::none, t0).flow;
  Expectation expectation;
  expectation.pattern = FlowTable::tuple_of(control);
  expectation.pattern.server_port = 50000;
  expectation.wildcards = PKTB_ANY_CLIENT_PORT;
  expectation.deadline = t0 + 30s;
  expectation.parent_id = control.id;
  expectation.parent_key = *control.key;
  REQUIRE(table.expect(expectation));

  CHECK_FALSE(table.lookup(view_of(tcp(40001, 50001, 0x02)), CtState::none, t0).expectation);
  const auto data = table.lookup(view_of(tcp(40002, 50000, 0x02)), CtState::none, t0 + 1s);
  REQUIRE(data.expectation);
  CHECK(data.flow->parent_id == control.id);
  CHECK(table.counters().expectations_matched == 1);
  CHECK_FALSE(table.lookup(view_of(tcp(40003, 50000, 0x02)), CtState::none, t0).expectation);

  REQUIRE(table.expect(expectation));
  table.expire(t0 + 31s);
  CHECK(table.expectations() == 0);
  CHECK(table.counters().expectations_expired == 1);

  FlowLimits tight;
  tight.max_expectations = 1;
  FlowTable small(tight);
  CHECK(small.expect(expectation));
  CHECK_FALSE(small.expect(expectation));
  CHECK(small.counters().expectations_refused == 1);
}

TEST_CASE("wildcards in an expectation pattern") {
  pktb_tuple pattern{};
  pattern.family = 4;
  pattern.protocol = 6;
  pattern.server_port = 2000;
  pattern.client_addr[0] = 10;
  pattern.server_addr[0] = 10;
  pattern.server_addr[3] = 2;
  pktb_tuple tuple = pattern;
  tuple.client_port = 1234;
  CHECK_FALSE(tuple_matches(tuple, pattern, 0));
  CHECK(tuple_matches(tuple, pattern, PKTB_ANY_CLIENT_PORT));
  tuple.client_addr[3] = 9;
  CHECK_FALSE(tuple_matches(tuple, pattern, PKTB_ANY_CLIENT_PORT));
  CHECK(tuple_matches(tuple, pattern, PKTB_ANY_CLIENT_PORT | PKTB_ANY_CLIENT_ADDR));
  tuple.protocol = 17;
  CHECK_FALSE(tuple_matches(tuple, pattern, 0xf));
}
