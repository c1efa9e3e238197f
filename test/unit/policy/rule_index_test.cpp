#include "broker/policy/rule_index.hpp"

#include "broker/policy/matcher.hpp"
#include "broker/policy/policy.hpp"

#include <netinet/in.h>
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

using namespace pktbroker;

namespace {

using Rules = std::vector<std::uint32_t>;

Rules list(std::span<const std::uint32_t> rules) {
  return {rules.begin(), rules.end()};
}

IpAddress v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  IpAddress address;
  address.family = 4;
  address.bytes = {a, b, c, d};
  return address;
}

IpAddress v6(std::uint8_t first, std::uint8_t last) {
  IpAddress address;
  address.family = 6;
  address.bytes[0] = first;
  address.bytes[15] = last;
  return address;
}

/// A parsed packet built field by field.
PacketView view_of(std::uint8_t protocol, IpAddress src, IpAddress dst, std::uint16_t dport = 0,
                   std::uint8_t icmp_type = 0) {
  PacketView view;
  view.ip_version = src.family;
  view.src = src;
  view.dst = dst;
  view.protocol = protocol;
  view.has_ports = protocol == IPPROTO_TCP || protocol == IPPROTO_UDP;
  view.src_port = view.has_ports ? 40000 : 0;
  view.dst_port = view.has_ports ? dport : 0;
  view.has_icmp = protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6;
  view.icmp_type = icmp_type;
  return view;
}

/// What the index must reproduce: the first rule whose matcher holds, testing every rule.
std::size_t scan(const Policy& policy, const PacketMeta& meta, const PacketView& view) {
  for (std::size_t i = 0; i < policy.rules().size(); ++i) {
    if (policy.rules()[i].matcher->matches(meta, view)) return i;
  }
  return Policy::no_match;
}

std::string pick(std::mt19937& random, const std::vector<std::string>& choices) {
  return choices[random() % choices.size()];
}

/// A random rule over a small universe of values, so that packets often match.
std::string random_match(std::mt19937& random) {
  const std::vector<std::string> protos = {"tcp", "udp", "icmp", "icmpv6", "[tcp, udp]"};
  const std::vector<std::string> ports = {
      "22", "80", "[80, 443]", "\"1000-2000\"", "\"0-65535\"", "[7, \"9-11\"]", "65535"};
  const std::vector<std::string> blocks = {"10.0.0.0/8",
                                           "10.1.0.0/16",
                                           "10.1.2.3",
                                           "0.0.0.0/0",
                                           "\"fd00::/8\"",
                                           "\"::/0\"",
                                           "[10.0.0.0/24, \"fd00::2/128\"]",
                                           "192.168.0.0/16",
                                           "\"fd00::/64\"",
                                           "\"fd00::/127\"",
                                           "10.1.2.2/31",
                                           "8.0.0.0/7"};
  const std::vector<std::string> marks = {"1",
                                          "0x10",
                                          "{value: 0x10, mask: 0xf0}",
                                          "{value: 0x20, mask: 0xf0}",
                                          "{value: 1, mask: 1}",
                                          "{value: 0, mask: 0x100}",
                                          "{value: 2, mask: 3}",
                                          "{value: 0x400, mask: 0x400}"};
  std::string match;
  const auto add = [&](const std::string& field) { match += (match.empty() ? "" : ", ") + field; };
  if (random() % 2 == 0) add("proto: " + pick(random, protos));
  if (random() % 3 == 0) add("dport: " + pick(random, ports));
  if (random() % 4 == 0) add("sport: " + pick(random, {"40000", "\"1-100\""}));
  if (random() % 3 == 0) add("dst: " + pick(random, blocks));
  if (random() % 4 == 0) add("src: " + pick(random, blocks));
  if (random() % 3 == 0) add("mark: " + pick(random, marks));
  if (random() % 6 == 0) add("icmp_type: " + pick(random, {"echo-request", "3"}));
  if (random() % 8 == 0)
    add("not: {" + pick(random, {"dport: 80", "dst: 10.0.0.0/8", "mark: 1"}) + "}");
  return "{" + match + "}";
}

PacketView random_packet(std::mt19937& random, std::uint32_t& mark) {
  const std::vector<std::uint16_t> ports = {22,   80, 443, 999, 1000, 2000,
                                            2001, 7,  9,   11,  12,   65535};
  const std::vector<std::uint8_t> protocols = {IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP,
                                               IPPROTO_ICMPV6, IPPROTO_SCTP};
  const std::vector<std::uint32_t> marks = {0, 1, 2, 3, 0x10, 0x11, 0x20, 0x100, 0x401};
  mark = marks[random() % marks.size()];
  const std::uint8_t protocol = protocols[random() % protocols.size()];
  const std::uint16_t port = ports[random() % ports.size()];
  if (random() % 2 == 0) {
    const std::vector<IpAddress> addresses = {v4(10, 1, 2, 3), v4(10, 0, 0, 9), v4(192, 168, 1, 1),
                                              v4(8, 8, 8, 8), v4(10, 1, 0, 0)};
    return view_of(protocol, addresses[random() % addresses.size()],
                   addresses[random() % addresses.size()], port,
                   static_cast<std::uint8_t>(random() % 2 == 0 ? 8 : 3));
  }
  const std::vector<IpAddress> addresses = {v6(0xfd, 2), v6(0xfd, 1), v6(0x20, 1), v6(0, 0)};
  return view_of(protocol, addresses[random() % addresses.size()],
                 addresses[random() % addresses.size()], port,
                 static_cast<std::uint8_t>(random() % 2 == 0 ? 128 : 1));
}

}  // namespace

TEST_CASE("interval index: rules per elementary interval, edges included") {
  IntervalIndex<std::uint16_t> index;
  CHECK(index.find(5).empty());
  CHECK(
      index.build({{10, 20, 0}, {15, 30, 1}, {65535, 65535, 2}, {40, 40, 3}, {42, 50, 3}}).empty());
  CHECK(index.find(0).empty());
  CHECK(index.find(9).empty());
  CHECK(list(index.find(10)) == Rules{0});
  CHECK(list(index.find(14)) == Rules{0});
  CHECK(list(index.find(15)) == Rules{0, 1});
  CHECK(list(index.find(20)) == Rules{0, 1});
  CHECK(list(index.find(21)) == Rules{1});
  CHECK(list(index.find(30)) == Rules{1});
  CHECK(index.find(31).empty());
  CHECK(list(index.find(40)) == Rules{3});
  CHECK(index.find(41).empty());
  CHECK(list(index.find(50)) == Rules{3});
  CHECK(list(index.find(65535)) == Rules{2});
  CHECK(index.find(65534).empty());
}

TEST_CASE("interval index: a rule too wide to file is handed back") {
  std::vector<IntervalIndex<std::uint32_t>::Entry> entries;
  for (std::uint32_t rule = 0; rule < 1000; ++rule) entries.push_back({rule * 10, rule * 10, rule});
  entries.push_back({0, 0xffffffff, 1000});  // covers ~2000 intervals, more than its share
  IntervalIndex<std::uint32_t> index;
  CHECK(index.build(entries) == Rules{1000});
  CHECK(list(index.find(500)) == Rules{50});
  CHECK(index.find(501).empty());
  CHECK(index.find(0xffffffff).empty());
}

TEST_CASE("IPv6 keys order and step across the halves") {
  CHECK(Ipv6Key{0, ~0ULL} < Ipv6Key{1, 0});
  CHECK(next_key(Ipv6Key{0, ~0ULL}) == Ipv6Key{1, 0});
  CHECK(next_key(Ipv6Key{5, 6}) == Ipv6Key{5, 7});
  CHECK_FALSE(next_key(Ipv6Key{~0ULL, ~0ULL}).has_value());
  CHECK_FALSE(next_key(std::uint16_t{65535}).has_value());
  CHECK(next_key(std::uint32_t{7}) == 8U);
}

TEST_CASE("the index tests only rules that can match") {
  std::string yaml = "rules:\n";
  for (int i = 0; i < 1000; ++i) {
    yaml += "  - {name: port-" + std::to_string(i) +
            ", match: {proto: tcp, dport: " + std::to_string(10000 + i) + "}, verdict: drop}\n";
  }
  yaml += "  - {name: lan, match: {dst: [10.0.0.0/8, \"fd00::/8\"]}, verdict: accept}\n";
  yaml += "  - {name: tagged, match: {mark: {value: 0x10, mask: 0xf0}}, verdict: repeat}\n";
  yaml += "  - {name: high-ports, match: {dport: \"1024-65535\"}, verdict: drop}\n";
  yaml += "  - {name: everything, verdict: accept}\n";
  const auto policy = parse_policy(yaml, "t.yaml");
  PacketMeta meta;

  const PacketView last_port = view_of(IPPROTO_TCP, v4(1, 1, 1, 1), v4(2, 2, 2, 2), 10999);
  CHECK(policy->match(meta, last_port) == 999);
  // port-999, high-ports (too wide for its share of the port index) and everything.
  CHECK(policy->candidates(meta, last_port) == 3);

  const PacketView lan = view_of(IPPROTO_UDP, v4(1, 1, 1, 1), v4(10, 9, 9, 9), 53);
  CHECK(policy->match(meta, lan) == 1000);
  CHECK(policy->candidates(meta, lan) == 2);  // lan, everything (UDP files high-ports by port)

  const PacketView lan6 = view_of(IPPROTO_UDP, v6(0x20, 1), v6(0xfd, 1), 53);
  CHECK(policy->match(meta, lan6) == 1000);

  meta.mark = 0x1f;
  const PacketView ping = view_of(IPPROTO_ICMP, v4(1, 1, 1, 1), v4(2, 2, 2, 2), 0, 8);
  CHECK(policy->match(meta, ping) == 1001);
  CHECK(policy->candidates(meta, ping) == 2);  // tagged, everything
  meta.mark = 0x2f;
  CHECK(policy->match(meta, ping) == 1003);
  CHECK(policy->candidates(meta, ping) == 1);
}

TEST_CASE("an empty policy and a policy of catch-all rules") {
  PacketMeta meta;
  const PacketView packet = view_of(IPPROTO_TCP, v4(1, 1, 1, 1), v4(2, 2, 2, 2), 80);
  CHECK(RuleIndex().first_match(meta, packet) == RuleIndex::no_match);
  CHECK(parse_policy("", "t")->match(meta, packet) == Policy::no_match);
  const auto policy = parse_policy(
      "rules:\n  - {name: a, match: {not: {dport: 80}}, verdict: drop}\n"
      "  - {name: b, verdict: accept}\n",
      "t");
  CHECK(policy->match(meta, packet) == 1);
}

TEST_CASE("the index gives the same first match as testing every rule in order") {
  std::mt19937 random(20240611);
  for (int round = 0; round < 40; ++round) {
    std::string yaml = "rules:\n";
    const int rules = 1 + static_cast<int>(random() % 60);
    for (int i = 0; i < rules; ++i) {
      yaml += "  - {name: r" + std::to_string(i) + ", match: " + random_match(random) +
              ", verdict: drop}\n";
    }
    INFO(yaml);
    const auto policy = parse_policy(yaml, "random.yaml");
    for (int i = 0; i < 500; ++i) {
      PacketMeta meta;
      const PacketView view = random_packet(random, meta.mark);
      INFO("protocol " << int(view.protocol) << " dst " << view.dst.to_string() << " src "
                       << view.src.to_string() << " dport " << view.dst_port << " mark "
                       << meta.mark);
      REQUIRE(policy->match(meta, view) == scan(*policy, meta, view));
    }
  }
}
