#include "broker/dispatcher.hpp"

#include "../packet_builder.hpp"
#include "broker/stats_report.hpp"

#include <netinet/in.h>
#include <catch2/catch.hpp>

#include <array>
#include <vector>

using pktbroker::Dispatcher;
using pktbroker::PacketMeta;
using pktbroker::parse_policy;
using pktbroker::Verdict;
using pktbroker::VerdictKind;

namespace {

constexpr const char* policy_text = R"(
broker:
  queues: [{num: 0}]
  default_verdict: accept
  malformed_verdict: drop
rules:
  - name: no-telnet
    match: {proto: tcp, dport: 23}
    verdict: drop
  - name: tag
    match: {proto: udp, dport: 9}
    verdict: {repeat: true, set_mark: 0x11}
)";

std::vector<std::uint8_t> tcp_packet(std::uint16_t dport) {
  return pktbroker::test::ipv4(IPPROTO_TCP, pktbroker::test::tcp_header(40000, dport));
}

std::vector<std::uint8_t> udp_packet(std::uint16_t dport) {
  return pktbroker::test::ipv4(IPPROTO_UDP, pktbroker::test::udp_header(40000, dport));
}

PacketMeta meta_for(const std::vector<std::uint8_t>& bytes, std::uint32_t id) {
  PacketMeta meta;
  meta.packet_id = id;
  meta.payload = bytes;
  meta.wire_length = static_cast<std::uint32_t>(bytes.size());
  return meta;
}

/// What BrokerQueue does when no client takes part: decide, then record the final verdict.
Verdict settle(Dispatcher& dispatcher, const PacketMeta& meta) {
  const pktbroker::Decision decision = dispatcher.decide(meta);
  dispatcher.record(decision.verdict);
  return decision.verdict;
}

}  // namespace

TEST_CASE("the dispatcher applies the first matching rule, else the default") {
  Dispatcher dispatcher(0, parse_policy(policy_text, "test.yaml"));
  const auto telnet = tcp_packet(23);
  const auto web = tcp_packet(80);
  const auto discard = udp_packet(9);

  CHECK(settle(dispatcher, meta_for(telnet, 1)) == Verdict{VerdictKind::drop, std::nullopt});
  CHECK(settle(dispatcher, meta_for(web, 2)) == Verdict{VerdictKind::accept, std::nullopt});
  CHECK(settle(dispatcher, meta_for(discard, 3)) == Verdict{VerdictKind::repeat, 0x11U});

  const auto& counters = dispatcher.counters();
  CHECK(counters.received.packets == 3);
  CHECK(counters.received.bytes == 40 + 40 + 28);
  CHECK(counters.accepted == 1);
  CHECK(counters.dropped == 1);
  CHECK(counters.repeated == 1);
  CHECK(counters.default_verdicts == 1);
  REQUIRE(dispatcher.rule_stats().size() == 2);
  CHECK(dispatcher.rule_stats()[0].counters.packets == 1);
  CHECK(dispatcher.rule_stats()[1].counters.bytes == 28);
}

TEST_CASE("a malformed packet is counted by reason and takes the malformed verdict") {
  Dispatcher dispatcher(0, parse_policy(policy_text, "test.yaml"));
  const std::vector<std::uint8_t> short_ipv4 = {0x45, 0, 0};
  const std::vector<std::uint8_t> not_ip = {0x10, 0, 0, 0};
  CHECK(settle(dispatcher, meta_for(short_ipv4, 1)).kind == VerdictKind::drop);
  CHECK(settle(dispatcher, meta_for(not_ip, 2)).kind == VerdictKind::drop);
  const auto& counters = dispatcher.counters();
  CHECK(counters.malformed == 2);
  using pktbroker::ParseError;
  CHECK(counters.malformed_by_reason[static_cast<std::size_t>(ParseError::ipv4_truncated_header)] ==
        1);
  CHECK(counters.malformed_by_reason[static_cast<std::size_t>(ParseError::bad_ip_version)] == 1);
}

TEST_CASE("rule counters survive a reload by rule name") {
  Dispatcher dispatcher(0, parse_policy(policy_text, "test.yaml"));
  const auto telnet = tcp_packet(23);
  (void)settle(dispatcher, meta_for(telnet, 1));
  dispatcher.set_policy(parse_policy(R"(
rules:
  - name: first
    match: {proto: udp}
    verdict: accept
  - name: no-telnet
    match: {dport: 23}
    verdict: drop
)",
                                     "new.yaml"));
  REQUIRE(dispatcher.rule_stats().size() == 2);
  CHECK(dispatcher.rule_stats()[0].counters.packets == 0);
  CHECK(dispatcher.rule_stats()[1].counters.packets == 1);
  CHECK(settle(dispatcher, meta_for(telnet, 2)).kind == VerdictKind::drop);
  CHECK(dispatcher.rule_stats()[1].counters.packets == 2);
}

TEST_CASE("stats lines carry every counter as key=value") {
  Dispatcher dispatcher(3, parse_policy(policy_text, "test.yaml"));
  const auto telnet = tcp_packet(23);
  const std::vector<std::uint8_t> short_ipv4 = {0x45};
  (void)settle(dispatcher, meta_for(telnet, 1));
  (void)settle(dispatcher, meta_for(short_ipv4, 2));
  pktbroker::QueueSnapshot snapshot{
      3, dispatcher.counters(), {}, dispatcher.rule_stats(), pktbroker::KernelQueueStats{}, 0, {},
      {}};
  const auto lines = pktbroker::format_stats(snapshot);
  REQUIRE(lines.size() == 4);
  CHECK(lines[0] ==
        "stats queue=3 packets=2 bytes=41 accepted=0 dropped=2 repeated=0 default=0 malformed=1 "
        "netlink_errors=0 kernel_queue_total=0 kernel_queue_dropped=0 kernel_user_dropped=0 "
        "outstanding=0 verdict_sends=0 verdict_messages=0 verdict_batches=0 batched_packets=0 "
        "delivered=0 observed=0 client_datagrams=0 client_verdicts=0 passes=0 "
        "rejected_verdicts=0 timeouts=0 disconnect_fallbacks=0 overflows=0 observer_overflows=0 "
        "outstanding_overflows=0 fallbacks_outside_grant=0");
  CHECK(lines[1] == "stats queue=3 rule=no-telnet packets=1 bytes=40");
  CHECK(lines[2] == "stats queue=3 rule=tag packets=0 bytes=0");
  CHECK(lines[3] == "stats queue=3 malformed=ipv4_truncated_header count=1");
}

TEST_CASE("unmatched packets and deliver rules are offered to clients") {
  Dispatcher dispatcher(0, parse_policy(R"(
rules:
  - name: to-workers
    match: {proto: udp}
    verdict: {deliver: workers, fallback: drop, timeout_ms: 100}
)",
                                        "t.yaml"));
  const auto web = tcp_packet(80);
  const auto dns = udp_packet(53);
  const pktbroker::Decision unmatched = dispatcher.decide(meta_for(web, 1));
  CHECK(unmatched.parsed);
  CHECK(unmatched.unmatched);
  CHECK(unmatched.offered_to_clients());
  CHECK(unmatched.view.dst_port == 80);
  const pktbroker::Decision delivered = dispatcher.decide(meta_for(dns, 2));
  REQUIRE(delivered.deliver != nullptr);
  CHECK(delivered.deliver->subscription == "workers");
  CHECK(delivered.verdict.kind == VerdictKind::drop);
  CHECK_FALSE(delivered.unmatched);
  CHECK(dispatcher.counters().accepted == 0);  // nothing final recorded yet
}
