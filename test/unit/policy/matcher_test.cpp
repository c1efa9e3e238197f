#include "broker/policy/matcher.hpp"

#include "../packet_builder.hpp"
#include "broker/identity/app_info.hpp"
#include "broker/policy/policy.hpp"

#include <net/if.h>
#include <netinet/in.h>
#include <catch2/catch.hpp>

using namespace pktbroker;
using namespace pktbroker::test;

namespace {

/// A packet plus its queue metadata, ready to match.
struct Packet {
  Bytes bytes;
  PacketMeta meta;
  PacketView view;

  explicit Packet(Bytes b) : bytes(std::move(b)) {
    meta.payload = bytes;
    meta.wire_length = static_cast<std::uint32_t>(bytes.size());
    REQUIRE(parse_packet(bytes, view) == ParseError::none);
  }
};

Packet tcp4(std::uint16_t dport, std::initializer_list<std::uint8_t> dst = {10, 0, 0, 2}) {
  return Packet(ipv4(IPPROTO_TCP, tcp_header(40000, dport), 0, {10, 0, 0, 1}, dst));
}
Packet udp6(std::uint16_t dport, std::uint8_t prefix = 0xfd) {
  return Packet(ipv6(IPPROTO_UDP, udp_header(5353, dport), 0, 1, 2, prefix));
}
Packet icmp4(std::uint8_t type) {
  return Packet(ipv4(IPPROTO_ICMP, icmp_header(type)));
}
Packet icmp6(std::uint8_t type) {
  return Packet(ipv6(IPPROTO_ICMPV6, icmp_header(type)));
}

/// Compiles `match` as the only rule and says whether it matches.
bool matches(const std::string& match, const Packet& packet) {
  const auto policy =
      parse_policy("rules:\n  - name: r\n    match: " + match + "\n    verdict: drop\n", "t.yaml");
  return policy->match(packet.meta, packet.view) == 0;
}

}  // namespace

TEST_CASE("port sets: singles, lists and ranges, edges included") {
  const std::string match = "{dport: [80, \"1000-2000\"]}";
  CHECK(matches(match, tcp4(80)));
  CHECK_FALSE(matches(match, tcp4(81)));
  CHECK_FALSE(matches(match, tcp4(999)));
  CHECK(matches(match, tcp4(1000)));
  CHECK(matches(match, tcp4(2000)));
  CHECK_FALSE(matches(match, tcp4(2001)));
  CHECK(matches("{sport: 40000}", tcp4(1)));
  CHECK(matches("{dport: \"0-65535\"}", tcp4(65535)));
}

TEST_CASE("PortSet merges overlapping ranges") {
  PortSet ports;
  ports.add(10, 20);
  ports.add(15, 30);
  ports.add(31, 31);
  ports.add(5, 5);
  CHECK(ports.contains(5));
  CHECK_FALSE(ports.contains(6));
  CHECK(ports.contains(10));
  CHECK(ports.contains(31));
  CHECK_FALSE(ports.contains(32));
}

TEST_CASE("a port match never matches a packet without ports; its negation does") {
  CHECK_FALSE(matches("{dport: 22}", icmp4(8)));
  CHECK(matches("{not: {dport: 22}}", icmp4(8)));
  CHECK_FALSE(matches("{not: {dport: 22}}", tcp4(22)));
  CHECK(matches("{not: {dport: 22}}", tcp4(23)));
}

TEST_CASE("ports on packets without ports: ICMP and non-first fragments") {
  const Packet fragment(ipv4(IPPROTO_TCP, tcp_header(40000, 22), 0, {10, 0, 0, 1}, {10, 0, 0, 2},
                             /*fragment offset*/ 185));
  CHECK_FALSE(fragment.view.has_ports);
  CHECK(matches("{proto: tcp}", fragment));
  CHECK_FALSE(matches("{dport: 22}", fragment));
  CHECK_FALSE(matches("{dport: \"0-65535\"}", fragment));
  CHECK(matches("{not: {dport: 22}}", fragment));
  CHECK_FALSE(matches("{sport: \"0-65535\"}", icmp6(128)));
  CHECK(matches("{not: {sport: 40000}}", icmp6(128)));
  CHECK(matches("{sport: 5353, dport: 53}", udp6(53)));
}

TEST_CASE("protocols by name and number") {
  CHECK(matches("{proto: tcp}", tcp4(1)));
  CHECK_FALSE(matches("{proto: udp}", tcp4(1)));
  CHECK(matches("{proto: [udp, 6]}", tcp4(1)));
  CHECK(matches("{proto: udp}", udp6(1)));
  CHECK(matches("{proto: icmpv6}", icmp6(128)));
}

TEST_CASE("CIDRs: family-specific, host bits, /0") {
  CHECK(matches("{dst: 10.0.0.0/8}", tcp4(1)));
  CHECK(matches("{dst: 10.0.0.2}", tcp4(1)));
  CHECK_FALSE(matches("{dst: 10.0.0.3}", tcp4(1)));
  CHECK(matches("{dst: 10.1.2.3/8}", tcp4(1)));  // host bits are ignored
  CHECK_FALSE(matches("{dst: 11.0.0.0/8}", tcp4(1)));
  CHECK(matches("{dst: 10.0.0.0/31}", tcp4(1, {10, 0, 0, 1})));
  CHECK_FALSE(matches("{dst: 10.0.0.0/31}", tcp4(1, {10, 0, 0, 2})));
  CHECK(matches("{dst: 0.0.0.0/0}", tcp4(1)));
  CHECK_FALSE(matches("{dst: 0.0.0.0/0}", udp6(1)));  // v4 never matches v6
  CHECK(matches("{dst: \"::/0\"}", udp6(1)));
  CHECK_FALSE(matches("{dst: \"::/0\"}", tcp4(1)));
  CHECK(matches("{dst: \"fd00::/8\"}", udp6(1)));
  CHECK_FALSE(matches("{dst: \"fd00::/8\"}", udp6(1, 0xfe)));
  CHECK(matches("{src: [192.168.0.0/16, \"fd00::1/128\"]}", udp6(1)));
  CHECK(matches("{not: {src: 10.0.0.0/8}}", udp6(1)));
}

TEST_CASE("marks: exact and masked") {
  Packet p = tcp4(1);
  p.meta.mark = 0x12;
  CHECK(matches("{mark: 0x12}", p));
  CHECK(matches("{mark: 18}", p));
  CHECK_FALSE(matches("{mark: 0x10}", p));
  CHECK(matches("{mark: {value: 0x10, mask: 0xf0}}", p));
  p.meta.mark = 0x22;
  CHECK_FALSE(matches("{mark: {value: 0x10, mask: 0xf0}}", p));
  CHECK(matches("{mark: {value: 0, mask: 0x1}}", p));
  CHECK(matches("{mark: {value: 0, mask: 0}}", p));  // an empty mask matches every mark
  CHECK_FALSE(matches("{not: {mark: {value: 0x20, mask: 0xf0}}}", p));
  CHECK(matches("{not: {mark: {value: 0x10, mask: 0xf0}}}", p));
  p.meta.mark = 0xffffffff;
  CHECK(matches("{mark: 0xffffffff}", p));
  CHECK(matches("{mark: {value: 0xf0000000, mask: 0xf0000000}}", p));
}

TEST_CASE("uid and gid need the kernel to know the socket owner") {
  Packet p = tcp4(1);
  CHECK_FALSE(matches("{uid: 0}", p));
  CHECK(matches("{not: {uid: 0}}", p));
  p.meta.uid = 0;
  p.meta.gid = 100;
  CHECK(matches("{uid: root}", p));
  CHECK(matches("{uid: [1000, 0]}", p));
  CHECK_FALSE(matches("{uid: 1000}", p));
  CHECK(matches("{gid: 100}", p));
  CHECK_FALSE(matches("{gid: 0}", p));
}

TEST_CASE("packet length range edges (wire length, not captured length)") {
  Packet p = tcp4(1);
  const std::string match = "{length: \"64-1500\"}";
  for (const auto& [length, expected] : std::vector<std::pair<std::uint32_t, bool>>{
           {0, false}, {63, false}, {64, true}, {1500, true}, {1501, false}, {65535, false}}) {
    p.meta.wire_length = length;
    INFO("length " << length);
    CHECK(matches(match, p) == expected);
    CHECK(matches("{not: " + match + "}", p) == !expected);
  }
}

TEST_CASE("a packet without conntrack state matches no ct_state, so it matches their negation") {
  Packet p = tcp4(1);
  CHECK_FALSE(matches("{ct_state: [new, established, related]}", p));
  CHECK(matches("{not: {ct_state: new}}", p));
  p.meta.ct_state = CtState::new_;
  CHECK(matches("{ct_state: new}", p));
  CHECK_FALSE(matches("{not: {ct_state: new}}", p));
  p.meta.ct_state = CtState::related;
  CHECK(matches("{ct_state: related}", p));
  CHECK_FALSE(matches("{ct_state: [new, established]}", p));
}

TEST_CASE("conntrack states, queue numbers and lengths") {
  Packet p = tcp4(1);
  CHECK_FALSE(matches("{ct_state: new}", p));
  p.meta.ct_state = CtState::established;
  CHECK(matches("{ct_state: [new, established]}", p));
  CHECK_FALSE(matches("{ct_state: related}", p));
  p.meta.queue = 7;
  CHECK(matches("{queue: [1, 7]}", p));
  CHECK_FALSE(matches("{queue: 0}", p));
  CHECK(matches("{length: 40}", p));
  CHECK(matches("{length: \"40-1500\"}", p));
  CHECK_FALSE(matches("{length: \"41-1500\"}", p));
}

TEST_CASE("ICMP types: numbers apply to both families, names resolve per family") {
  CHECK(matches("{icmp_type: echo-request}", icmp4(8)));
  CHECK(matches("{icmp_type: echo-request}", icmp6(128)));
  CHECK_FALSE(matches("{icmp_type: echo-request}", icmp4(0)));
  CHECK(matches("{icmp_type: [echo-reply, 3]}", icmp4(3)));
  CHECK(matches("{icmp_type: neighbor-solicitation}", icmp6(135)));
  CHECK_FALSE(matches("{icmp_type: neighbor-solicitation}", icmp4(135)));
  CHECK_FALSE(matches("{icmp_type: 8}", tcp4(8)));
}

TEST_CASE("interfaces by name") {
  Packet p = tcp4(1);
  const unsigned lo = if_nametoindex("lo");
  REQUIRE(lo != 0);
  CHECK(interface_name(lo) == "lo");
  CHECK(interface_name(0x7fffffff).empty());
  CHECK_FALSE(matches("{iif: lo}", p));  // no input interface (locally generated)
  p.meta.in_ifindex = lo;
  p.meta.out_ifindex = lo;
  CHECK(matches("{iif: lo}", p));
  CHECK(matches("{oif: [eth9, lo]}", p));
  CHECK_FALSE(matches("{iif: eth9}", p));
  CHECK(matches("{not: {iif: eth9}}", p));
}

TEST_CASE("every field of a match must hold; every field of not must fail") {
  Packet p = tcp4(443);
  CHECK(matches("{proto: tcp, dport: 443, dst: 10.0.0.0/8}", p));
  CHECK_FALSE(matches("{proto: tcp, dport: 443, dst: 11.0.0.0/8}", p));
  CHECK(matches("{proto: tcp, not: {dport: 22, src: 192.168.0.0/16}}", p));
  CHECK_FALSE(matches("{proto: tcp, not: {dport: 22, src: 10.0.0.0/8}}", p));
  CHECK(matches("{}", p));
}

TEST_CASE("the first matching rule wins") {
  const auto policy = parse_policy(R"(
rules:
  - {name: web, match: {dport: 80}, verdict: accept}
  - {name: all-tcp, match: {proto: tcp}, verdict: drop}
  - {name: web-again, match: {dport: 80}, verdict: drop}
)",
                                   "t.yaml");
  const Packet web = tcp4(80);
  CHECK(policy->match(web.meta, web.view) == 0);
  const Packet ssh = tcp4(22);
  CHECK(policy->match(ssh.meta, ssh.view) == 1);
  const Packet dns = udp6(53);
  CHECK(policy->match(dns.meta, dns.view) == Policy::no_match);
}

TEST_CASE("a selector lies within a grant only when every packet it takes is granted") {
  const auto grant = compile_match(
      "{mark: {value: 0x10, mask: 0xf0}, dport: 1000-2000, "
      "dst: 10.0.0.0/8, not: {src: 10.9.0.0/16}}",
      "grant");
  const auto inside = [&](const char* selector) {
    return compile_match(selector, "selector")->within(*grant);
  };
  CHECK(
      inside("{mark: {value: 0x12, mask: 0xff}, dport: [1000, 1500], dst: 10.1.0.0/16, "
             "not: {src: 10.0.0.0/8}}"));
  CHECK_FALSE(inside("{}"));
  CHECK_FALSE(inside("{mark: 0x12, dport: 1000, dst: 10.1.0.0/16}"));  // no not: src
  CHECK_FALSE(inside("{mark: 0x22, dport: 1000, dst: 10.1.0.0/16, not: {src: 10.9.0.0/16}}"));
  CHECK_FALSE(
      inside("{mark: {value: 0x10, mask: 0x10}, dport: 1000, dst: 10.1.0.0/16, "
             "not: {src: 10.9.0.0/16}}"));  // mask narrower than the grant's
  CHECK_FALSE(inside("{mark: 0x12, dport: 999-1000, dst: 10.1.0.0/16, not: {src: 10.9.0.0/16}}"));
  CHECK_FALSE(inside("{mark: 0x12, dport: 1000, dst: 0.0.0.0/0, not: {src: 10.9.0.0/16}}"));
  CHECK_FALSE(inside("{mark: 0x12, dport: 1000, dst: 10.1.0.0/16, not: {src: 10.9.1.0/24}}"));
}

// `not:` negates every field on its own; plugin fields were negated together (a packet was
// excluded only when all of them held, which never happens across two plugins).
TEST_CASE("not: excludes a packet when any one plugin field holds") {
  const auto matcher = compile_match("{not: {http.host: a.test, tls.sni: b.test}}", "selector");
  Packet web = tcp4(80);
  const std::pair<std::string, std::string> http[] = {{"http.host", "a.test"}};
  web.meta.fields = http;
  CHECK_FALSE(matcher->matches(web.meta, web.view));
  const std::pair<std::string, std::string> other[] = {{"http.host", "c.test"}};
  web.meta.fields = other;
  CHECK(matcher->matches(web.meta, web.view));
}

TEST_CASE("a mark set by a limited client must stay inside its grant's mark") {
  const auto grant = compile_match("{mark: {value: 0x10, mask: 0xf0}, not: {mark: 0x1f}}", "g");
  CHECK(grant->allows_mark(0x12));
  CHECK_FALSE(grant->allows_mark(0x22));
  CHECK_FALSE(grant->allows_mark(0x1f));
  CHECK(compile_match("{dport: 80}", "g")->allows_mark(0xdead));
  CHECK(compile_match("{http.host: x}", "g")->uses_broker_fields());
  CHECK(compile_match("{not: {dst_name: x}}", "g")->uses_broker_fields());
  CHECK_FALSE(compile_match("{dport: 80}", "g")->uses_broker_fields());
}

/// A policy rule's compiled match (app.* fields are for rules only).
std::shared_ptr<const Matcher> rule_matcher(const std::string& expression) {
  return parse_policy("rules:\n  - {name: r, match: " + expression + ", verdict: drop}\n", "t")
      ->rules()[0]
      .matcher;
}

TEST_CASE("app fields match the sending process; an unknown process matches none of them") {
  Packet packet = tcp4(443);
  AppInfo curl;
  curl.name = "curl";
  curl.path = "/usr/bin/curl";
  curl.cmdline = "curl -s https://example.test/";
  curl.cgroup = "/system.slice/backup.service";
  curl.parent = "/usr/bin/bash";
  const auto matches = [&](const std::string& expression, const AppInfo* app) {
    packet.meta.app = app;
    return rule_matcher(expression)->matches(packet.meta, packet.view);
  };
  CHECK(matches("{app.path: /usr/bin/curl}", &curl));
  CHECK(matches("{app.path: [/bin/wget, \"/usr/*/cu?l\"]}", &curl));
  CHECK_FALSE(matches("{app.path: /usr/bin/curl2}", &curl));
  CHECK(matches("{app.name: curl, app.parent: \"*/bash\"}", &curl));
  CHECK_FALSE(matches("{app.name: cur}", &curl));  // exact
  CHECK(matches("{app.cmdline: \"* -s *\"}", &curl));
  // cgroup: the cgroup itself or one below it, never a name that merely starts the same.
  CHECK(matches("{app.cgroup: /system.slice}", &curl));
  CHECK(matches("{app.cgroup: /system.slice/backup.service}", &curl));
  CHECK_FALSE(matches("{app.cgroup: /system.slice/backup}", &curl));
  CHECK_FALSE(matches("{app.cgroup: /user.slice}", &curl));
  // Excluded fields each on their own; an unknown process is excluded by none.
  CHECK_FALSE(matches("{not: {app.name: curl}}", &curl));
  CHECK(matches("{not: {app.name: wget}}", &curl));
  CHECK_FALSE(matches("{app.name: curl}", nullptr));
  CHECK(matches("{not: {app.name: curl}}", nullptr));
  // An exited process's path is empty: no glob matches it, not even "*".
  AppInfo gone;
  gone.name = "curl";
  CHECK_FALSE(matches("{app.path: \"*\"}", &gone));
  CHECK(rule_matcher("{app.name: x}")->uses_broker_fields());
  CHECK(rule_matcher("{app.name: x}")->uses_app());
  CHECK_FALSE(rule_matcher("{dport: 1}")->uses_app());
}

TEST_CASE("app fields are for rules: selectors refuse them") {
  // A packet's process is looked up for the policy's rules only.
  CHECK_THROWS_WITH(compile_match("{app.name: curl, dport: 80}", "s"),
                    "s:1:1: error: app.* fields are for policy rules; a selector cannot use them");
}
