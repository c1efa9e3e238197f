#include "broker/flow/flow_inspector.hpp"

#include "broker/dispatcher.hpp"
#include "broker/policy/policy.hpp"
#include "broker/policy_plugins.hpp"
#include "test/unit/packet_builder.hpp"

#include <catch2/catch.hpp>

#include <malloc.h>
#include <netinet/in.h>

#include <string>

using namespace pktbroker;
using namespace pktbroker::test;

namespace {

const std::string plugin_path = std::string(TEST_PLUGIN_DIR) + "/valid.so";

Bytes udp(std::uint16_t sport, std::uint16_t dport, std::string_view payload) {
  Bytes l4 = udp_header(sport, dport, static_cast<std::uint16_t>(payload.size()));
  l4.insert(l4.end(), payload.begin(), payload.end());
  return ipv4(IPPROTO_UDP, l4);
}

PacketMeta meta_for(const Bytes& bytes, std::uint32_t id = 1) {
  PacketMeta meta;
  meta.packet_id = id;
  meta.payload = bytes;
  meta.wire_length = static_cast<std::uint32_t>(bytes.size());
  return meta;
}

std::shared_ptr<const PluginSet> valid_plugin() {
  return std::make_shared<const PluginSet>(
      std::vector<PluginSpec>{{"valid", plugin_path, {{"mode", "strict"}}, "test:1"}});
}

}  // namespace

TEST_CASE("the flow's plugin sees each packet and publishes fields for the flow") {
  FlowInspector inspector(valid_plugin(), {}, {});
  const Bytes packet = udp(40000, 9000, "accept");
  PacketView view;
  REQUIRE(parse_packet(packet, view) == ParseError::none);
  const Inspection first = inspector.inspect(meta_for(packet), view, 1, Clock::now());
  REQUIRE(first.plugin != nullptr);
  CHECK(first.plugin->name() == "valid");
  CHECK(first.decision.action == PKTB_ACCEPT);
  CHECK(first.state == CtState::new_);
  REQUIRE(first.flow->plugin);
  CHECK(first.flow->plugin->fields ==
        std::vector<std::pair<std::string, std::string>>{{"valid.value", "accept"}});

  const Bytes other_port = udp(40000, 7000, "accept");
  REQUIRE(parse_packet(other_port, view) == ParseError::none);
  const Inspection unclaimed = inspector.inspect(meta_for(other_port), view, 2, Clock::now());
  CHECK(unclaimed.plugin == nullptr);
  CHECK(unclaimed.flow != nullptr);
  CHECK(inspector.counters().active_flows == 2);
  CHECK(inspector.counters().plugin_calls == 1);
}

TEST_CASE("a plugin's timer fires on its flow and its release decides a held packet") {
  std::vector<std::pair<std::uint64_t, pktb_action>> released;
  FlowInspector inspector(valid_plugin(), {}, [&](std::uint64_t id, const pktb_decision& d) {
    released.emplace_back(id, static_cast<pktb_action>(d.action));
    return 0;
  });
  const Bytes packet = udp(40000, 9000, "timer");
  PacketView view;
  REQUIRE(parse_packet(packet, view) == ParseError::none);
  const auto now = Clock::now();
  CHECK(inspector.inspect(meta_for(packet), view, 77, now).decision.action == PKTB_HOLD);
  REQUIRE(inspector.next_timer());
  CHECK(*inspector.next_timer() == now + std::chrono::milliseconds(20));
  inspector.maintain(now + std::chrono::milliseconds(19));
  CHECK(released.empty());
  inspector.maintain(now + std::chrono::milliseconds(20));
  CHECK(released == std::vector<std::pair<std::uint64_t, pktb_action>>{{77, PKTB_ACCEPT}});
  CHECK_FALSE(inspector.next_timer());
}

TEST_CASE("a tracked flow costs at most 256 bytes of broker memory") {
#if defined(__SANITIZE_ADDRESS__)
  SUCCEED("the sanitizer's allocator does not report through mallinfo2");
#else
  constexpr std::size_t flows = 100'000;
  FlowLimits limits;
  limits.capacity = flows;
  FlowTable table(limits);
  const auto before = mallinfo2().uordblks;
  for (std::uint32_t i = 0; i < flows; ++i) {
    const Bytes packet = ipv4(IPPROTO_UDP, udp_header(static_cast<std::uint16_t>(i), 53), 0,
                              {10, static_cast<std::uint8_t>(i >> 16), 0, 1}, {10, 0, 0, 2});
    PacketView view;
    if (parse_packet(packet, view) != ParseError::none) FAIL("packet " << i << " did not parse");
    table.lookup(view, CtState::none, Clock::now());
  }
  REQUIRE(table.size() == flows);
  const double per_flow = static_cast<double>(mallinfo2().uordblks - before) / flows;
  INFO("bytes per flow: " << per_flow);
  CHECK(per_flow <= 256);
#endif
}

TEST_CASE("with plugins the dispatcher matches plugin fields and applies inspect verdicts") {
  const auto policy = parse_policy(R"(
plugins: [{name: valid, path: )" + plugin_path +
                                       R"(, config: {mode: strict}}]
rules:
  - name: by-field
    match: {valid.value: "block*"}
    verdict: drop
  - name: inspected
    match: {proto: udp, dport: 9000-9001}
    verdict: {inspect: [valid], fallback: {accept: true, set_mark: 5}, timeout_ms: 300}
)",
                                   "test.yaml");
  const auto plugins = load_policy_plugins(*policy);
  FlowInspector inspector(plugins, {}, {});
  Dispatcher dispatcher(0, policy, &inspector);
  const auto decide = [&](std::string_view payload, std::uint16_t sport = 40000) {
    static std::vector<Bytes> packets;  // the decision's view points into the packet
    packets.push_back(udp(sport, 9000, payload));
    return dispatcher.decide(meta_for(packets.back()));
  };

  CHECK(decide("blocked").verdict == Verdict{VerdictKind::drop, {}});
  CHECK(decide("drop").verdict == Verdict{VerdictKind::drop, {}});  // the plugin says drop
  CHECK(decide("mark").verdict == Verdict{VerdictKind::accept, 7});
  CHECK(decide("pass").verdict == Verdict{VerdictKind::accept, 5});  // no opinion: fallback
  CHECK(decide("garbage").verdict == Verdict{VerdictKind::accept, 5});
  const Decision modified = decide("Modified");
  CHECK(modified.verdict == Verdict{VerdictKind::accept, {}});
  CHECK(modified.replacement.size() == 28 + 8);
  const Decision not_ip = decide("xnot an IP packet");  // counted, and the fallback applies
  CHECK(not_ip.verdict == Verdict{VerdictKind::accept, 5});
  CHECK(not_ip.replacement.empty());
  const Decision held = decide("hold");
  REQUIRE(held.hold_ms);
  CHECK(*held.hold_ms == 300);
  CHECK(held.verdict == Verdict{VerdictKind::accept, 5});  // what applies at the deadline
  CHECK(dispatcher.counters().plugin_verdicts == 3);
  CHECK(plugins->find("valid")->invalid_decisions() == 2);
  CHECK(dispatcher.rule_stats()[0].counters.packets == 1);
}

TEST_CASE("a rule on a field its plugin does not publish is refused at load") {
  const auto policy = parse_policy(R"(
plugins: [{name: valid, path: )" + plugin_path +
                                       R"(}]
rules:
  - {name: typo, match: {valid.valu: x}, verdict: drop}
)",
                                   "test.yaml");
  CHECK_THROWS_WITH(load_policy_plugins(*policy),
                    "test.yaml:4: rule 'typo': plugin 'valid' has no field 'valu' (it publishes: "
                    "value)");
}

TEST_CASE("TCP data a rule dropped stays dropped when sent again, per direction") {
  FlowInspector inspector(nullptr, FlowLimits{}, nullptr);
  Flow flow;
  const auto segment = [&flow](pktb_direction direction, std::uint32_t seq, std::uint32_t data) {
    Inspection inspection;
    inspection.flow = &flow;
    inspection.direction = direction;
    inspection.tcp_seq = seq;
    inspection.tcp_data = data;
    return inspection;
  };
  const std::uint32_t near_wrap = 0xffffff00;  // the dropped bytes run across the wrap
  CHECK_FALSE(inspector.dropped_before(segment(PKTB_FROM_CLIENT, near_wrap, 512)));
  inspector.remember_drop(segment(PKTB_FROM_CLIENT, near_wrap, 512));
  CHECK(inspector.dropped_before(segment(PKTB_FROM_CLIENT, near_wrap, 512)));
  CHECK(inspector.dropped_before(segment(PKTB_FROM_CLIENT, near_wrap, 1024)));     // collapsed
  CHECK(inspector.dropped_before(segment(PKTB_FROM_CLIENT, 0xff, 100)));           // its tail
  CHECK_FALSE(inspector.dropped_before(segment(PKTB_FROM_CLIENT, 0x100, 100)));    // after it
  CHECK_FALSE(inspector.dropped_before(segment(PKTB_FROM_CLIENT, near_wrap, 0)));  // an ACK
  CHECK_FALSE(inspector.dropped_before(segment(PKTB_FROM_SERVER, near_wrap, 512)));
  inspector.remember_drop(segment(PKTB_FROM_CLIENT, 0x50, 10));  // earlier: end stays
  CHECK(inspector.dropped_before(segment(PKTB_FROM_CLIENT, 0xff, 1)));
  inspector.policy_changed();  // a reload judges them anew
  CHECK_FALSE(inspector.dropped_before(segment(PKTB_FROM_CLIENT, near_wrap, 512)));
}
