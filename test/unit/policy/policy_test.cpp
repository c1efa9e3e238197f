#include "broker/policy/policy.hpp"

#include "broker/identity/process_reader.hpp"
#include "broker/policy/matcher.hpp"
#include "broker/prompt/answer_file.hpp"

#include <yaml-cpp/yaml.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <random>

#include <sys/wait.h>
#include <unistd.h>

using namespace pktbroker;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> errors_of(const std::string& yaml) {
  try {
    (void)parse_policy(yaml, "test.yaml");
  } catch (const PolicyError& error) {
    std::vector<std::string> lines;
    for (const auto& d : error.diagnostics()) lines.push_back(d.to_string());
    return lines;
  }
  return {};
}

std::string only_error(const std::string& yaml) {
  const auto errors = errors_of(yaml);
  INFO(yaml);
  REQUIRE(errors.size() == 1);
  return errors[0];
}

std::string rule(const std::string& match, const std::string& verdict = "drop") {
  return "rules:\n  - name: r\n    match: " + match + "\n    verdict: " + verdict + "\n";
}

/// A temporary policy directory, removed at the end of the test.
struct PolicyDir {
  fs::path path;
  PolicyDir() {
    std::random_device random;
    path = fs::temp_directory_path() / ("pktbroker-policy-test-" + std::to_string(random()));
    fs::create_directories(path / "policy.d");
  }
  ~PolicyDir() { fs::remove_all(path); }
  PolicyDir(const PolicyDir&) = delete;
  PolicyDir& operator=(const PolicyDir&) = delete;
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
  }
  [[nodiscard]] fs::path main() const { return path / "policy.yaml"; }
};

std::vector<std::string> rule_names(const Policy& policy) {
  std::vector<std::string> names;
  for (const auto& r : policy.rules()) names.push_back(r.name);
  return names;
}

}  // namespace

TEST_CASE("a complete policy loads with its broker settings") {
  const auto policy = parse_policy(R"(
broker:
  queues:
    - {num: 3, fail_open: false, max_len: 100, copy_range: 128, gso: no, uid_gid: false, conntrack: off}
    - {num: 4}
  default_verdict: drop
  malformed_verdict: {accept: true, set_mark: 0xff}
rules:
  - name: a
    description: anything
    verdict: accept
)",
                                   "test.yaml");
  const BrokerConfig& broker = policy->broker();
  REQUIRE(broker.queues.size() == 2);
  CHECK(broker.queues[0] == QueueConfig{3, false, 100, 128, false, false, false});
  CHECK(broker.queues[1] == QueueConfig{4, true, 4096, 0xffff, true, true, true});
  CHECK(broker.default_verdict == Verdict{VerdictKind::drop, std::nullopt});
  CHECK(broker.malformed_verdict == Verdict{VerdictKind::accept, 0xffU});
  REQUIRE(policy->rules().size() == 1);
  CHECK(policy->rules()[0].line == 9);
  CHECK(policy->rules()[0].file == "test.yaml");
}

TEST_CASE("defaults: one queue 0, accept for unmatched and malformed packets") {
  const auto policy = parse_policy("", "empty.yaml");
  REQUIRE(policy->broker().queues.size() == 1);
  CHECK(policy->broker().queues[0].num == 0);
  CHECK(policy->broker().default_verdict.kind == VerdictKind::accept);
  CHECK(policy->broker().malformed_verdict.kind == VerdictKind::accept);
  CHECK(policy->rules().empty());
}

TEST_CASE("verdict forms") {
  CHECK(parse_policy(rule("{}", "repeat"), "t")->rules()[0].verdict.kind == VerdictKind::repeat);
  const auto marked = parse_policy(rule("{}", "{drop: true, set_mark: 17}"), "t");
  CHECK(marked->rules()[0].verdict == Verdict{VerdictKind::drop, 17U});
}

TEST_CASE("every diagnostic names its file, line and column") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"rulez: []\n",
       "test.yaml:1:1: error: unknown key 'rulez' in the policy (did you mean 'rules'?)"},
      {"colour: red\n",
       "test.yaml:1:1: error: unknown key 'colour' in the policy; expected one of: broker, rules, "
       "socket, clients, plugins, metrics, events, channels"},
      {"broker: 5\n", "test.yaml:1:9: error: broker must be a mapping"},
      {"metrics: {listen: 'localhost:9410'}\n",
       "test.yaml:1:19: error: metrics listen must be ADDRESS:PORT, such as 127.0.0.1:9410 or "
       "[::1]:9410"},
      {"events: {types: [drop]}\n",
       "test.yaml:1:9: error: events needs a file: the path of the JSON event log"},
      {"events: {file: eve.json}\n", "test.yaml:1:16: error: events file must be an absolute path"},
      {"events: {file: /e, types: [drop, alerts]}\n",
       "test.yaml:1:34: error: unknown event type 'alerts'; expected drop, accept, hold, session, "
       "reload or channel"},
      {"events: {file: /e, types: []}\n",
       "test.yaml:1:27: error: events types must name at least one type"},
      {"events: {file: /e, rate_limit: 0}\n",
       "test.yaml:1:32: error: rate_limit must be at least 1"},
      {"broker:\n  queues: []\n", "test.yaml:2:11: error: queues must be a non-empty list"},
      {"channels:\n  - {name: Lab}\n",
       "test.yaml:2:12: error: a channel needs a name: 1 to 64 of a-z, 0-9, '_', '.', '-'"},
      {"channels:\n  - {name: lab, overflow: block}\n",
       "test.yaml:2:27: error: overflow is drop or backpressure"},
      {"channels:\n  - {name: lab, max_members: 0}\n",
       "test.yaml:2:30: error: max_members must be at least 1"},
      {"channels:\n  - {name: lab, access: [{user: root}]}\n",
       "test.yaml:2:26: error: an access entry needs rights: [receive, send, manage]"},
      {"channels:\n  - {name: lab, access: [{uid: 0, rights: [write]}]}\n",
       "test.yaml:2:44: error: unknown right 'write'; expected receive, send or manage"},
      {"channels:\n  - {name: lab, tap: [a, a]}\n", "test.yaml:2:5: error: tap 'a' is named twice"},
      {"channels:\n  - {name: lab}\n  - {name: lab}\n",
       "test.yaml:3:5: error: duplicate channel name 'lab'"},
      {"channels:\n  - {name: lab}\nrules:\n  - {name: r, verdict: accept, mirror: lab}\n",
       "test.yaml:4:5: error: rule 'r' mirrors packets to channel 'lab', which carries ethernet "
       "frames: give it link: ip"},
      {"rules:\n  - {name: r, verdict: accept, mirror: nowhere}\n",
       "test.yaml:2:5: error: rule 'r' mirrors to channel 'nowhere', which channels: does not "
       "declare"},
      {"rules:\n  - {name: r, verdict: {deliver: x}, mirror: m}\n",
       "test.yaml:2:46: error: mirror needs a rule whose verdict the policy decides at once (not "
       "deliver, inspect or ask)"},
      {"broker:\n  queues: [{fail_open: true}]\n", "test.yaml:2:12: error: a queue needs num"},
      {"broker:\n  queues: [{num: 70000}]\n",
       "test.yaml:2:18: error: bad queue num '70000': expected a number from 0 to 65535"},
      {"broker:\n  queues: [{num: 1, max_len: 0}]\n",
       "test.yaml:2:30: error: max_len must be at least 1"},
      {"broker:\n  queues: [{num: 1, gso: perhaps}]\n",
       "test.yaml:2:26: error: gso must be true or false"},
      {"broker:\n  queues: [{num: 1}, {num: 1}]\n",
       "test.yaml:2:28: error: queue 1 is listed twice (first on line 2)"},
      {"broker:\n  default_verdict: reject\n",
       "test.yaml:2:20: error: unknown verdict 'reject'; expected accept, drop or repeat"},
      {"rules: {}\n", "test.yaml:1:8: error: rules must be a list"},
      {"rules:\n  - verdict: drop\n", "test.yaml:2:5: error: a rule needs a name"},
      {"rules:\n  - name: x\n", "test.yaml:2:5: error: rule 'x' needs a verdict"},
      {rule("{proto: tcp, dprot: 80}"),
       "test.yaml:3:25: error: unknown key 'dprot' in match (did you mean 'dport'?)"},
      {rule("{proto: tcpp}"),
       "test.yaml:3:20: error: unknown protocol 'tcpp'; expected a number or one of: ah, esp, gre, "
       "icmp, icmpv6, igmp, sctp, tcp, udp, udplite"},
      {rule("{dst: 10.0.0.0/33}"),
       "test.yaml:3:18: error: bad address or CIDR '10.0.0.0/33' in dst"},
      {rule("{src: [\"fd00::/129\"]}"),
       "test.yaml:3:19: error: bad address or CIDR 'fd00::/129' in src"},
      {rule("{src: 10.0.0.300}"), "test.yaml:3:18: error: bad address or CIDR '10.0.0.300' in src"},
      {rule("{dport: 65536}"),
       "test.yaml:3:20: error: bad port '65536': expected a number from 0 to 65535"},
      {rule("{dport: http}"),
       "test.yaml:3:20: error: bad port 'http': expected a number from 0 to 65535"},
      {rule("{sport: \"2000-1000\"}"),
       "test.yaml:3:20: error: bad port range '2000-1000': expected FIRST-LAST with 0 <= FIRST <= "
       "LAST <= 65535"},
      {rule("{dport: []}"),
       "test.yaml:3:20: error: dport must be a value or a non-empty list of values"},
      {rule("{uid: no-such-user-xyz}"), "test.yaml:3:18: error: unknown user 'no-such-user-xyz'"},
      {rule("{gid: no-such-group-xyz}"),
       "test.yaml:3:18: error: unknown group 'no-such-group-xyz'"},
      {rule("{ct_state: sleepy}"),
       "test.yaml:3:23: error: unknown ct_state 'sleepy'; expected new, established or related"},
      {rule("{icmp_type: ping}"),
       "test.yaml:3:24: error: unknown icmp_type 'ping'; expected a number or one of: "
       "dest-unreachable, destination-unreachable, echo-reply, echo-request, "
       "neighbor-advertisement, neighbor-solicitation, packet-too-big, parameter-problem, "
       "redirect, router-advertisement, router-solicitation, source-quench, time-exceeded, "
       "timestamp-reply, timestamp-request"},
      {rule("{length: \"100-50\"}"),
       "test.yaml:3:21: error: bad length range '100-50': expected FIRST-LAST with 0 <= FIRST <= "
       "LAST <= 4294967295"},
      {rule("{mark: {value: 0x11, mask: 0xf0}}"),
       "test.yaml:3:27: error: mark value has bits outside its mask, so it can never match"},
      {rule("{mark: {mask: 0xf0}}"), "test.yaml:3:19: error: mark needs a value"},
      {rule("{iif: averyveryverylongname}"),
       "test.yaml:3:18: error: bad interface name 'averyveryverylongname' in iif"},
      {rule("{not: {not: {dport: 1}}}"),
       "test.yaml:3:19: error: unknown key 'not' in not; expected one of: queue, mark, proto, src, "
       "dst, sport, dport, iif, oif, uid, gid, ct_state, icmp_type, length, dst_name"},
      {rule("[1, 2]"), "test.yaml:3:12: error: match must be a mapping"},
      {rule("{app.exe: /bin/sh}"),
       "test.yaml:3:13: error: unknown field 'app.exe': expected app.path, app.name, app.cmdline, "
       "app.cgroup or app.parent"},
      {rule("{app.path: bin/sh}"),
       "test.yaml:3:23: error: app.path 'bin/sh' must be an absolute path (or start with *)"},
      {rule("{app.name: a-very-long-process-name}"),
       "test.yaml:3:23: error: app.name 'a-very-long-process-name' is longer than a process name "
       "can be (15 bytes: the kernel's comm)"},
      {rule("{app.cgroup: \"\"}"), "test.yaml:3:25: error: empty pattern in app.cgroup"},
      {"rules:\n  - {name: r, verdict: drop, until: soon}\n",
       "test.yaml:2:37: error: until must be a duration (90s, 5m, 2h, 7d), a UTC time like "
       "2026-12-01T18:00:00Z, or restart"},
      {rule("{app.cgroup: \"*.service\"}"),
       "test.yaml:3:25: error: app.cgroup '*.service' must be a cgroup path, starting with /"},
      {"clients:\n  - {user: root, roles: [verdict], allowed: {app.name: curl}}\n",
       "test.yaml:2:45: error: app.* fields are for rules; a grant's allowed: cannot use them"},
      {"broker:\n  identity: {timeout_ms: 0, fallback: {accept: true}}\n",
       "test.yaml:2:26: error: identity timeout_ms must be at least 1"},
      {rule("{}", "{accept: true, drop: true}"),
       "test.yaml:4:14: error: a verdict needs exactly one of accept: true, drop: true or repeat: "
       "true"},
      {rule("{}", "{drop: true, set_mark: 0x1ffffffff}"),
       "test.yaml:4:37: error: bad set_mark '0x1ffffffff': expected a number from 0 to 4294967295"},
      {rule("{}", "{drop: true, set_mak: 1}"),
       "test.yaml:4:27: error: unknown key 'set_mak' in verdict (did you mean 'set_mark'?)"},
      {"rules:\n  - name: x\n    verdict: drop\n    priority: high\n",
       "test.yaml:4:15: error: priority must be a whole number, e.g. -10 or 50"},
      {"rules:\n  - name: x\n    verdict: drop\n  - name: x\n    verdict: accept\n",
       "test.yaml:4:5: error: duplicate rule name 'x' (first defined at test.yaml:2)"},
      {"rules:\n  - name: [x\n",
       "test.yaml:3:1: error: YAML syntax: end of sequence flow not found"},
      {"- a\n", "test.yaml:1:1: error: the policy must be a mapping"},
      {"broker:\n  queues: [5]\n", "test.yaml:2:12: error: queue must be a mapping"},
      {"broker:\n  queues: [{num: [1]}]\n", "test.yaml:2:18: error: queue num must be a number"},
      {"broker:\n  queues: [{num: 0, copy_range: 70000}]\n",
       "test.yaml:2:33: error: bad copy_range '70000': expected a number from 0 to 65535"},
      {"broker:\n  defualt_verdict: drop\n",
       "test.yaml:2:3: error: unknown key 'defualt_verdict' in broker (did you mean "
       "'default_verdict'?)"},
      {"broker:\n  malformed_verdict: {drop: true, accept: maybe}\n",
       "test.yaml:2:43: error: accept must be true or false"},
      {"broker:\nrules: []\n",
       "test.yaml:1:1: error: broker must be a mapping (the value is empty)"},
      {"rules:\n  - just-a-rule\n", "test.yaml:2:5: error: rule must be a mapping"},
      {"rules:\n  - name: x\n    verdict: drop\n    prio: 1\n",
       "test.yaml:4:5: error: unknown key 'prio' in rule (did you mean 'priority'?)"},
      {"rules:\n  - name: x\n    match:\n    verdict: drop\n",
       "test.yaml:3:5: error: match must be a mapping (the value is empty)"},
      {rule("{dport: 1, dport: 2}"),
       "test.yaml:3:23: error: duplicate key 'dport' in match (first on line 3)"},
      {rule("{not: 5}"), "test.yaml:3:18: error: not must be a mapping"},
      {rule("{proto: [[tcp]]}"), "test.yaml:3:21: error: proto list items must be scalars"},
      {rule("{proto: 256}"), "test.yaml:3:20: error: bad protocol number '256': expected 0 to 255"},
      {rule("{queue: 65536}"),
       "test.yaml:3:20: error: bad queue '65536': expected a number from 0 to 65535"},
      {rule("{mark: 0x1ffffffff}"),
       "test.yaml:3:19: error: bad mark '0x1ffffffff': expected a number from 0 to 4294967295"},
      {rule("{mark: {value: 1, mask: 1, bits: 2}}"),
       "test.yaml:3:39: error: unknown key 'bits' in mark; expected one of: value, mask"},
      {rule("{src: \"10.0.0.0/\"}"),
       "test.yaml:3:18: error: bad address or CIDR '10.0.0.0/' in src"},
      {rule("{src: \"10.0.0.0/0x8\"}"),
       "test.yaml:3:18: error: bad address or CIDR '10.0.0.0/0x8' in src"},
      {rule("{dport: \"1000-\"}"),
       "test.yaml:3:20: error: bad port range '1000-': expected FIRST-LAST with 0 <= FIRST <= LAST "
       "<= 65535"},
      {rule("{uid: 4294967296}"),
       "test.yaml:3:18: error: bad uid '4294967296': expected 0 to 4294967295 or a user name"},
      {rule("{gid: 4294967296}"),
       "test.yaml:3:18: error: bad gid '4294967296': expected 0 to 4294967295 or a group name"},
      {rule("{iif: \"\"}"), "test.yaml:3:18: error: bad interface name '' in iif"},
      {rule("{ct_state: [new, bogus]}"),
       "test.yaml:3:29: error: unknown ct_state 'bogus'; expected new, established or related"},
      {rule("{icmp_type: 256}"),
       "test.yaml:3:24: error: bad icmp_type number '256': expected 0 to 255"},
      {rule("{length: [1]}"),
       "test.yaml:3:21: error: length must be a number or a range like 64-1500"},
      {rule("{}", "{accept: false}"),
       "test.yaml:4:14: error: a verdict needs exactly one of accept: true, drop: true or repeat: "
       "true"},
      {rule("{}", "{set_mark: 1}"),
       "test.yaml:4:14: error: a verdict needs exactly one of accept: true, drop: true or repeat: "
       "true"},
      {rule("{}", "{repeat: perhaps}"), "test.yaml:4:23: error: repeat must be true or false"},
      {rule("{}", "[drop]"), "test.yaml:4:14: error: verdict must be a mapping"},
      {"rules:\n  - name: x\n    verdict: drop\n    priority: [1]\n",
       "test.yaml:4:15: error: priority must be a number"},
      {"rules:\n  - name: x\n    verdict: drop\n    priority: 99999999999\n",
       "test.yaml:4:15: error: priority must be a whole number, e.g. -10 or 50"},
  };
  for (const auto& [yaml, expected] : cases) {
    CHECK(only_error(yaml) == expected);
  }
}

TEST_CASE("channels: defaults, limits, access and the delivery plugins they load") {
  const auto policy = parse_policy(R"(
channels:
  - name: lab
    delivery: switch
    max_members: 3
    queue_length: 32
    overflow: backpressure
    access:
      - {uid: 1000, rights: [receive, send]}
      - {group: root, rights: receive}
    tap: [pbt0, pbt1]
  - {name: tap, link: ip}
rules:
  - {name: icmp, match: {proto: icmp}, verdict: accept, mirror: tap}
)",
                                   "test.yaml");
  const auto& channels = policy->broker().channels;
  REQUIRE(channels.size() == 2);
  const auto& lab = channels[0].spec;
  CHECK(lab.delivery == "switch");
  CHECK(lab.link == pktbroker::proto::LinkType::ethernet);
  CHECK(lab.max_frame == 1518);
  CHECK(lab.max_members == 3);
  CHECK(lab.queue_length == 32);
  CHECK(lab.overflow == pktbroker::proto::Overflow::backpressure);
  REQUIRE(lab.access.size() == 2);
  CHECK(lab.access[0] ==
        pktbroker::proto::ChannelAccess{pktbroker::proto::ChannelAccess::Kind::uid, 1000, 3});
  CHECK(lab.access[1] ==
        pktbroker::proto::ChannelAccess{pktbroker::proto::ChannelAccess::Kind::gid, 0, 1});
  CHECK(channels[0].taps == std::vector<std::string>{"pbt0", "pbt1"});
  CHECK(channels[1].spec.delivery == "broadcast");
  CHECK(channels[1].spec.link == pktbroker::proto::LinkType::ip);
  CHECK(channels[1].spec.max_frame == 65535);
  CHECK(channels[1].spec.overflow == pktbroker::proto::Overflow::drop);
  CHECK(policy->rules()[0].mirror == "tap");
  // The delivery policies the channels name are loaded though plugins: does not list them.
  const auto& plugins = policy->broker().plugins;
  REQUIRE(plugins.size() == 2);
  CHECK(plugins[0].name == "switch");
  CHECK(plugins[1].name == "broadcast");
}

TEST_CASE("field forms: scalars, lists, names, numbers in hex and decimal") {
  const auto policy = parse_policy(R"(
rules:
  - name: every-field
    match:
      queue: [0, 3]
      mark: {value: 0x10, mask: 240}
      proto: [tcp, 17, icmpv6]
      src: 10.0.0.1
      dst: [192.168.0.0/16, "fd00::/8", "::1"]
      sport: 1024
      dport: [22, "8000-8080", 443]
      iif: eth0
      oif: [lo, veth1]
      uid: [root, 1000]
      gid: root
      ct_state: [new, related]
      icmp_type: [echo-request, 3]
      length: "64-1500"
      not: {dport: 8001, uid: 1000}
    verdict: {accept: true, set_mark: 17}
  - name: scalars
    match: {queue: 7, mark: 0xff, proto: 132, length: 100, ct_state: established}
    verdict: repeat
)",
                                   "test.yaml");
  REQUIRE(policy->rules().size() == 2);
  const MatchFields& all = policy->rules()[0].matcher->required();
  CHECK(all.queues == std::vector<std::uint16_t>{0, 3});
  CHECK(all.mark == std::pair{0x10U, 0xf0U});
  CHECK(all.protocols == std::vector<std::uint8_t>{6, 17, 58});
  REQUIRE(all.src.size() == 1);
  CHECK(all.src[0].prefix == 32);
  CHECK(all.src[0].network.to_string() == "10.0.0.1");
  REQUIRE(all.dst.size() == 3);
  CHECK(all.dst[0].network.family == 4);
  CHECK(all.dst[0].prefix == 16);
  CHECK(all.dst[1].network.family == 6);
  CHECK(all.dst[1].prefix == 8);
  CHECK(all.dst[2].prefix == 128);
  REQUIRE(all.sport.has_value());
  CHECK(all.sport->ranges() == std::vector<std::pair<std::uint16_t, std::uint16_t>>{{1024, 1024}});
  REQUIRE(all.dport.has_value());
  CHECK(all.dport->ranges() ==
        std::vector<std::pair<std::uint16_t, std::uint16_t>>{{22, 22}, {443, 443}, {8000, 8080}});
  CHECK(all.iif == std::vector<std::string>{"eth0"});
  CHECK(all.oif == std::vector<std::string>{"lo", "veth1"});
  CHECK(all.uids == std::vector<std::uint32_t>{0, 1000});
  CHECK(all.gids == std::vector<std::uint32_t>{0});
  CHECK(all.ct_states == ((1U << static_cast<unsigned>(CtState::new_)) |
                          (1U << static_cast<unsigned>(CtState::related))));
  REQUIRE(all.icmp_types.size() == 2);
  CHECK(all.icmp_types[0].v4 == 8);
  CHECK(all.icmp_types[0].v6 == 128);
  CHECK(all.icmp_types[1].v4 == 3);
  CHECK(all.icmp_types[1].v6 == 3);
  CHECK(all.length == std::pair{64U, 1500U});
  CHECK(all.size() == 14);
  const MatchFields& excluded = policy->rules()[0].matcher->excluded();
  CHECK(excluded.size() == 2);
  CHECK(excluded.uids == std::vector<std::uint32_t>{1000});
  CHECK(policy->rules()[0].verdict == Verdict{VerdictKind::accept, 17U});

  const MatchFields& scalars = policy->rules()[1].matcher->required();
  CHECK(scalars.queues == std::vector<std::uint16_t>{7});
  CHECK(scalars.mark == std::pair{0xffU, 0xffffffffU});
  CHECK(scalars.protocols == std::vector<std::uint8_t>{132});
  CHECK(scalars.length == std::pair{100U, 100U});
  CHECK(policy->rules()[1].verdict == Verdict{VerdictKind::repeat, std::nullopt});
}

TEST_CASE("an empty rules section is allowed (every rule commented out)") {
  CHECK(parse_policy("rules:\n# - name: later\n", "t.yaml")->rules().empty());
}

TEST_CASE("all problems of a file are reported, in order") {
  const auto errors = errors_of(rule("{dport: 99999, proto: nope}", "maybe"));
  REQUIRE(errors.size() == 3);
  CHECK(errors[0].starts_with("test.yaml:3:20: error: bad port"));
  CHECK(errors[1].starts_with("test.yaml:3:34: error: unknown protocol"));
  CHECK(errors[2].starts_with("test.yaml:4:14: error: unknown verdict"));
}

TEST_CASE("PolicyError's what() summarizes the first problem") {
  try {
    (void)parse_policy("colour: red\nbroker: 1\n", "p.yaml");
    FAIL("no error");
  } catch (const PolicyError& error) {
    CHECK(std::string(error.what()).starts_with("p.yaml:1:1: error: unknown key 'colour'"));
    CHECK(std::string(error.what()).ends_with("(and 1 more)"));
  }
}

TEST_CASE("drop-ins are appended in file-name order; priority places rules") {
  PolicyDir dir;
  dir.write(
      "policy.yaml",
      "rules:\n  - name: main-1\n    verdict: accept\n  - name: main-2\n    verdict: accept\n");
  dir.write("policy.d/20-b.yaml", "rules:\n  - name: b\n    verdict: drop\n");
  dir.write("policy.d/10-a.yaml",
            "rules:\n  - name: a\n    verdict: drop\n  - name: early\n    priority: -10\n    "
            "verdict: drop\n");
  dir.write("policy.d/README", "not yaml, ignored");
  const auto policy = load_policy(dir.main());
  CHECK(rule_names(*policy) == std::vector<std::string>{"early", "main-1", "main-2", "a", "b"});
  CHECK(policy->rules()[0].file == (dir.path / "policy.d/10-a.yaml").string());
  CHECK(policy->rules()[0].line == 4);
}

TEST_CASE("drop-ins may not change broker settings, and names are unique across files") {
  PolicyDir dir;
  dir.write("policy.yaml", "rules:\n  - name: dup\n    verdict: accept\n");
  dir.write("policy.d/10-x.yaml",
            "broker:\n  default_verdict: drop\nrules:\n  - name: dup\n    verdict: drop\n");
  try {
    (void)load_policy(dir.main());
    FAIL("no error");
  } catch (const PolicyError& error) {
    const auto& d = error.diagnostics();
    REQUIRE(d.size() == 2);
    const std::string drop_in = (dir.path / "policy.d/10-x.yaml").string();
    CHECK(d[0].to_string() == drop_in +
                                  ":1:1: error: unknown key 'broker' in a policy.d drop-in (only "
                                  "rules: is allowed); expected one of: rules");
    CHECK(d[1].to_string() == drop_in +
                                  ":4:5: error: duplicate rule name 'dup' (first defined at " +
                                  dir.main().string() + ":2)");
  }
}

TEST_CASE("problems in the main file and in drop-ins are all reported, file by file") {
  PolicyDir dir;
  dir.write("policy.yaml", "rules:\n  - name: a\n    verdict: maybe\n");
  dir.write("policy.d/20-b.yaml",
            "rules:\n  - name: b\n    match: {dport: x}\n    verdict: drop\n");
  dir.write("policy.d/10-a.yaml", "rules: [\n");
  try {
    (void)load_policy(dir.main());
    FAIL("no error");
  } catch (const PolicyError& error) {
    const auto& d = error.diagnostics();
    REQUIRE(d.size() == 3);
    CHECK(d[0].to_string() == dir.main().string() +
                                  ":3:14: error: unknown verdict 'maybe'; expected accept, drop or "
                                  "repeat");
    CHECK(d[1].to_string() == (dir.path / "policy.d/10-a.yaml").string() +
                                  ":2:1: error: YAML syntax: end of sequence flow not found");
    CHECK(d[2].to_string() == (dir.path / "policy.d/20-b.yaml").string() +
                                  ":3:20: error: bad port 'x': expected a number from 0 to 65535");
  }
}

TEST_CASE("priority sorts stably across files; equal priorities keep reading order") {
  PolicyDir dir;
  dir.write(
      "policy.yaml",
      "rules:\n  - {name: m1, verdict: accept}\n  - {name: late, priority: 5, verdict: drop}\n"
      "  - {name: m2, verdict: accept}\n  - {name: first, priority: -20, verdict: drop}\n");
  dir.write("policy.d/50-x.yaml",
            "rules:\n  - {name: x-early, priority: -10, verdict: drop}\n"
            "  - {name: x-late, priority: 5, verdict: drop}\n  - {name: x, verdict: drop}\n");
  dir.write("policy.d/05-empty.yaml", "");
  const auto policy = load_policy(dir.main());
  CHECK(rule_names(*policy) ==
        std::vector<std::string>{"first", "x-early", "m1", "m2", "x", "late", "x-late"});
}

TEST_CASE("a policy without a policy.d directory loads") {
  PolicyDir dir;
  fs::remove(dir.path / "policy.d");
  dir.write("policy.yaml", "rules:\n  - {name: only, verdict: drop}\n");
  CHECK(rule_names(*load_policy(dir.main())) == std::vector<std::string>{"only"});
}

TEST_CASE("a missing policy file is a diagnostic too") {
  try {
    (void)load_policy("/nonexistent/pktbroker/policy.yaml");
    FAIL("no error");
  } catch (const PolicyError& error) {
    REQUIRE(error.diagnostics().size() == 1);
    CHECK(error.diagnostics()[0].to_string() ==
          "/nonexistent/pktbroker/policy.yaml: error: cannot read the file: No such file or "
          "directory");
  }
}

TEST_CASE("until: a rule past it is left out; durations count from the save") {
  const auto policy = parse_policy(
      "rules:\n"
      "  - {name: old, verdict: drop, until: 2020-01-01T00:00:00Z}\n"
      "  - {name: hour, verdict: drop, until: 1h}\n"
      "  - {name: run, verdict: drop, until: restart}\n"
      "  - {name: always, verdict: accept}\n",
      "test.yaml");
  REQUIRE(policy->rules().size() == 3);
  CHECK(policy->rules()[0].name == "hour");
  CHECK(policy->expired() == std::vector<std::string>{"old (test.yaml:2)"});
  const auto hour = *policy->rules()[0].until - std::chrono::system_clock::now();
  CHECK(hour > std::chrono::minutes(59));
  CHECK(hour <= std::chrono::hours(1));
  CHECK_FALSE(policy->rules()[1].until);  // saved while this process runs: until it restarts
  CHECK(policy->next_expiry() == policy->rules()[0].until);
}

TEST_CASE("until: restart in a file saved before pktbrokerd started has expired") {
  PolicyDir dir;
  dir.write("policy.yaml", "rules:\n  - {name: run, verdict: drop, until: restart}\n");
  const auto long_ago =
      std::filesystem::file_time_type::clock::now() - std::chrono::hours(24 * 365);
  std::filesystem::last_write_time(dir.path / "policy.yaml", long_ago);
  const auto policy = load_policy(dir.path / "policy.yaml");
  CHECK(policy->rules().empty());
  CHECK(policy->expired().size() == 1);
}

TEST_CASE("the shipped per-application example loads as a drop-in would") {
  const fs::path example =
      fs::path(PKTBROKER_SOURCE_DIR) / "config" / "policy.d" / "50-curl.yaml.example";
  std::ifstream file(example);
  const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  const auto policy = parse_policy(text, example.string());
  REQUIRE(policy->rules().size() == 2);
  CHECK(policy->rules()[0].name == "curl-web");
  CHECK(policy->rules()[0].priority == -50);
  CHECK(policy->uses_app());
  CHECK(policy->first_app_rule() == 0);
}

TEST_CASE("the shipped default policy and its drop-in load") {
  const auto policy = load_policy(fs::path(PKTBROKER_SOURCE_DIR) / "config" / "policy.yaml");
  CHECK(rule_names(*policy) ==
        std::vector<std::string>{"no-telnet", "no-discard", "no-large-pings", "no-chargen"});
  REQUIRE(policy->broker().queues.size() == 1);
  CHECK(policy->broker().queues[0].num == 0);
  CHECK(policy->broker().queues[0].fail_open);
  CHECK(policy->broker().default_verdict.kind == VerdictKind::accept);
}

TEST_CASE("socket, clients and deliver sections") {
  const auto policy = parse_policy(R"(
socket: {path: /run/test.sock, mode: "0600", queue_limit: 16}
clients:
  - {user: root, roles: [observe, verdict, manage]}
  - {uid: 4242, roles: observe, allowed: {mark: 7}}
rules:
  - name: to-clients
    match: {proto: udp}
    verdict: {deliver: workers, fallback: drop, timeout_ms: 250}
)",
                                   "test.yaml");
  const auto& socket = policy->broker().socket;
  CHECK(socket.path == "/run/test.sock");
  CHECK(socket.mode == 0600);
  CHECK(socket.queue_limit == 16);
  const auto& clients = policy->broker().clients;
  REQUIRE(clients.size() == 2);
  CHECK(clients[0].kind == ClientGrant::Kind::uid);
  CHECK(clients[0].id == 0);
  CHECK(clients[0].roles == 7);
  CHECK(clients[1].id == 4242);
  CHECK(clients[1].roles == 1);
  CHECK(clients[1].allowed != nullptr);
  CHECK(clients[1].origin == "test.yaml:5");
  const Rule& rule = policy->rules()[0];
  REQUIRE(rule.deliver.has_value());
  CHECK(rule.deliver->subscription == "workers");
  CHECK(rule.deliver->timeout_ms == 250);
  CHECK(rule.verdict.kind == VerdictKind::drop);
}

// A grant's not: was silently ignored: a client granted "everything but port 22" saw port 22.
TEST_CASE("a grant's allowed: honours its not:") {
  const auto policy = parse_policy(R"(
socket: {max_sessions: 5, max_sessions_per_uid: 2, max_subscriptions: 3, hello_timeout_ms: 100,
         max_timeout_ms: 2000, max_outstanding: 10, max_outstanding_per_uid: 20}
clients:
  - {uid: 4242, roles: verdict, allowed: {proto: tcp, not: {dport: 22}}}
)",
                                   "test.yaml");
  const auto& socket = policy->broker().socket;
  CHECK(socket.max_sessions == 5);
  CHECK(socket.max_sessions_per_uid == 2);
  CHECK(socket.max_subscriptions == 3);
  CHECK(socket.hello_timeout_ms == 100);
  CHECK(socket.max_timeout_ms == 2000);
  CHECK(socket.max_outstanding == 10);
  CHECK(socket.max_outstanding_per_uid == 20);
  const auto& allowed = *policy->broker().clients.at(0).allowed;
  CHECK(allowed.required().has(MatchField::proto));
  CHECK(allowed.excluded().has(MatchField::dport));
  CHECK(only_error("socket: {max_outstanding: 0}\n") ==
        "test.yaml:1:27: error: max_outstanding must be at least 1");
}

TEST_CASE("errors in socket, clients and deliver") {
  CHECK(only_error("socket: {mode: 999}\n") ==
        "test.yaml:1:16: error: socket mode must be octal permissions such as 0660");
  CHECK(only_error("socket: {path: relative.sock}\n") ==
        "test.yaml:1:16: error: socket path must be an absolute path shorter than 108 bytes");
  CHECK(only_error("clients:\n  - {roles: [observe]}\n") ==
        "test.yaml:2:5: error: a grant names exactly one of user, group or uid");
  CHECK(only_error("clients:\n  - {uid: 5, roles: [steal]}\n") ==
        "test.yaml:2:22: error: unknown role 'steal'; expected observe, verdict, manage or prompt");
  CHECK(only_error("clients:\n  - {uid: 5}\n") ==
        "test.yaml:2:5: error: a grant needs roles: [observe, verdict, manage, prompt]");
  CHECK(only_error(rule("{}", "{deliver: w, timeout_ms: forever}")) ==
        "test.yaml:4:39: error: bad timeout_ms 'forever': expected a number from 0 to 3600000");
}

TEST_CASE("selectors compile like match expressions") {
  CHECK(compile_match("", "sel") != nullptr);
  CHECK(compile_match("{mark: {value: 1, mask: 0xff}, proto: tcp, not: {dport: 22}}", "sel") !=
        nullptr);
  try {
    (void)compile_match("{prot: tcp}", "subscription 'web'");
    FAIL("no error");
  } catch (const PolicyError& error) {
    CHECK(error.diagnostics()[0].to_string() ==
          "subscription 'web':1:2: error: unknown key 'prot' in match (did you mean 'proto'?)");
  }
}

TEST_CASE("ask verdicts: a timeout, a fallback that is drop unless given, and their errors") {
  const auto policy = parse_policy(
      "rules:\n"
      "  - {name: a, match: {dport: 80}, verdict: {ask: true}}\n"
      "  - {name: b, match: {dport: 81}, verdict: {ask: true, timeout_ms: 1500, fallback: "
      "accept}}\n",
      "t.yaml");
  REQUIRE(policy->rules()[0].ask);
  CHECK(policy->rules()[0].ask->timeout_ms == 30000);
  CHECK(policy->rules()[0].verdict.kind == VerdictKind::drop);
  CHECK(policy->rules()[1].ask->timeout_ms == 1500);
  CHECK(policy->rules()[1].verdict.kind == VerdictKind::accept);
  CHECK(policy->uses_ask());
  CHECK(policy->first_app_rule() == 0);  // a prompt names the process: it is looked up
  CHECK_THAT(only_error(rule("{}", "{ask: true, fallback: repeat}")),
             Catch::Contains("an ask's fallback is accept or drop"));
  CHECK_THAT(only_error(rule("{}", "{ask: true, timeout_ms: 50}")),
             Catch::Contains("an ask waits at least 100 ms"));
  CHECK_THAT(only_error(rule("{}", "{ask: false}")), Catch::Contains("ask: false is no verdict"));
  CHECK_THAT(only_error(rule("{}", "{ask: true, deliver: x}")), Catch::Contains("deliver"));
  CHECK_THAT(only_error("rules:\n  - {name: r, verdict: {ask: true}, mirror: lab}\n"),
             Catch::Contains("not deliver, inspect or ask"));
}

TEST_CASE("answer rules sit just before their ask rule, only in their user's answer file") {
  PolicyDir dir;
  dir.write("policy.yaml",
            "rules:\n"
            "  - {name: first, match: {dport: 22}, verdict: accept}\n"
            "  - {name: ask-web, match: {dport: 80}, verdict: {ask: true}}\n"
            "  - {name: last, verdict: accept}\n");
  dir.write("policy.d/answers-uid1000.yaml",
            "rules:\n"
            "  - {name: ans-u1000-1, answers: ask-web, match: {uid: 1000, dst: 10.0.0.1}, "
            "verdict: accept}\n"
            "  - {name: ans-u1000-2, answers: gone, match: {uid: 1000}, verdict: drop}\n");
  const auto policy = load_policy(dir.main());
  CHECK(rule_names(*policy) == std::vector<std::string>{"first", "ans-u1000-1", "ask-web", "last"});
  CHECK(policy->rules()[2].answer_rules == 1);
  REQUIRE(policy->expired().size() == 1);
  CHECK_THAT(policy->expired()[0], Catch::Contains("answering 'gone', no ask rule now"));
  // Not indexed: only tried by the dispatcher after its ask rule matched.
  PacketMeta meta;
  meta.uid = 1000;
  PacketView view;
  view.protocol = 6;
  view.has_ports = true;
  view.dst_port = 80;
  view.dst.family = 4;
  view.dst.bytes = {10, 0, 0, 1};
  CHECK(policy->match(meta, view) == 2);

  const std::string bad =
      "rules:\n  - {name: x, answers: ask-web, match: {uid: 0}, verdict: accept}\n"
      "  - {name: y, answers: ask-web, match: {uid: 1000}, verdict: accept, priority: -5}\n"
      "  - {name: z, match: {uid: 1000}, verdict: accept}\n";
  std::string all;
  for (const auto& d : check_answer_file(bad, dir.path / "policy.d" / "answers-uid1000.yaml")) {
    all += d.to_string() + "\n";
  }
  CHECK_THAT(all, Catch::Contains("an answer rule of uid 1000 must match uid: 1000"));
  CHECK_THAT(all, Catch::Contains("without mirror or priority"));
  CHECK_THAT(all, Catch::Contains("an answer file holds only rules with answers:"));
  // Such a file is left out whole; answers: anywhere else is an error of the policy.
  dir.write("policy.d/answers-uid1000.yaml", bad);
  CHECK(rule_names(*load_policy(dir.main())) ==
        std::vector<std::string>{"first", "ask-web", "last"});
  dir.write("policy.d/50-other.yaml",
            "rules:\n  - {name: w, answers: ask-web, match: {uid: 1000}, verdict: accept}\n");
  CHECK_THROWS_WITH(load_policy(dir.main()),
                    Catch::Contains("answers: is for a user's answer file"));
}

TEST_CASE("until: app-exit lasts while that process runs") {
  PolicyDir dir;
  const auto start = process_start_ticks(static_cast<std::uint32_t>(::getpid()));
  REQUIRE(start != 0);
  dir.write("policy.yaml", "rules:\n  - {name: ask-web, verdict: {ask: true}}\n");
  dir.write("policy.d/answers-uid0.yaml",
            "rules:\n"
            "  - {name: alive, answers: ask-web, match: {uid: 0}, verdict: accept, "
            "until: {app-exit: " +
                std::to_string(::getpid()) + ", start: " + std::to_string(start) +
                "}}\n"
                "  - {name: reused, answers: ask-web, match: {uid: 0}, verdict: accept, "
                "until: {app-exit: " +
                std::to_string(::getpid()) + ", start: " + std::to_string(start + 1) + "}}\n");
  const auto policy = load_policy(dir.main());
  CHECK(rule_names(*policy) == std::vector<std::string>{"alive", "ask-web"});
  REQUIRE(policy->app_exits().size() == 1);
  CHECK(policy->app_exits()[0] == ProcessRef{static_cast<std::uint32_t>(::getpid()), start});
  CHECK_THAT(only_error(rule("{}", "accept") + "    until: app-exit\n"),
             Catch::Contains("until: app-exit needs the process"));
}

TEST_CASE("an answer file is written whole, keeps a program's path one string, and restores") {
  PolicyDir dir;
  dir.write("policy.yaml", "rules:\n  - {name: ask-web, verdict: {ask: true}}\n");
  AnswerFile file(dir.main(), 1000);
  // A path built to break out of its string: quotes, a newline, YAML and glob syntax.
  const std::string path = "/tmp/x\", uid: 0, dport: 1-65535, y: \"\n- name: evil*[a]";
  YAML::Node match;
  match["app.path"] = glob_literal(path);
  match["dport"] = 80;
  YAML::Emitter out;
  out << YAML::Flow << match;
  const std::string first = file.add({"ask-web", out.c_str(), VerdictKind::accept, "", {}});
  CHECK(first == "ans-u1000-1");
  CHECK(file.add({"ask-web", "{dport: 81}", VerdictKind::drop, "5m", {}}) == "ans-u1000-2");
  const auto policy = load_policy(dir.main());
  REQUIRE(rule_names(*policy) == std::vector<std::string>{"ans-u1000-1", "ans-u1000-2", "ask-web"});
  AppInfo app;
  app.path = path;
  PacketMeta meta;
  meta.uid = 1000;
  meta.app = &app;
  PacketView view;
  view.protocol = 6;
  view.has_ports = true;
  view.dst_port = 80;
  CHECK(policy->rules()[0].matcher->matches(meta, view));
  app.path = "/tmp/x";
  CHECK_FALSE(policy->rules()[0].matcher->matches(meta, view));  // no glob, no injection
  meta.uid = 0;
  app.path = path;
  CHECK_FALSE(policy->rules()[0].matcher->matches(meta, view));
  REQUIRE(policy->rules()[1].until);
  CHECK(*policy->rules()[1].until > std::chrono::system_clock::now() + std::chrono::minutes(4));

  CHECK_THROWS_AS(file.add({"ask-web", "{uid: 0}", VerdictKind::accept, "", {}}), AnswerFileError);
  CHECK_THROWS_AS(file.add({"ask-web", "[1, 2]", VerdictKind::accept, "", {}}), AnswerFileError);
  CHECK_THROWS_AS(file.add({"ask-web", "{}", VerdictKind::accept, "soon", {}}), AnswerFileError);
  CHECK_THROWS_WITH(file.add({"ask-web",
                              "{dport: 80, app.cmdline: \"" + std::string(500, 'x') + "\"}",
                              VerdictKind::accept,
                              "",
                              {}}),
                    Catch::Contains("longer than 512 bytes"));
  // A restart would revive it at the next rewrite of the file.
  CHECK_THROWS_AS(file.add({"ask-web", "{}", VerdictKind::accept, "restart", {}}), AnswerFileError);
  CHECK(file.remove("ans-u1000-1"));
  CHECK_FALSE(file.remove("ans-u1000-1"));
  file.restore();  // the policy refused the removal: the rule is back
  CHECK(rule_names(*load_policy(dir.main())).size() == 3);
}

TEST_CASE("a user's answer file never stops the policy from loading") {
  PolicyDir dir;
  dir.write("policy.yaml",
            "rules:\n  - {name: ask-web, verdict: {ask: true}}\n"
            "  - {name: ans-u7-1, verdict: accept}\n");
  // Named like the admin's rule: that one rule is left out.
  dir.write("policy.d/answers-uid7.yaml",
            "rules:\n  - {name: ans-u7-1, answers: ask-web, match: {uid: 7}, verdict: drop}\n"
            "  - {name: ans-u7-2, answers: ask-web, match: {uid: 7}, verdict: drop}\n");
  // A key an answer may not use (a group may be renamed later): the whole file is left out.
  dir.write("policy.d/answers-uid8.yaml",
            "rules:\n  - {name: ans-u8-1, answers: ask-web, match: {uid: 8, gid: 0}, "
            "verdict: accept}\n");
  const auto policy = load_policy(dir.main());
  CHECK(rule_names(*policy) == std::vector<std::string>{"ans-u7-2", "ask-web", "ans-u7-1"});
  std::string left_out;
  for (const auto& line : policy->expired()) left_out += line + "\n";
  CHECK_THAT(left_out, Catch::Contains("named like another rule"));
  CHECK_THAT(left_out, Catch::Contains("answers-uid8.yaml, whole"));
  CHECK_THAT(left_out, Catch::Contains("not gid"));
  CHECK(check_answer_file("rules:\n  - {name: a, answers: x, match: {uid: 8, iif: lo}, "
                          "verdict: accept}\n",
                          dir.path / "policy.d" / "answers-uid8.yaml")
            .size() == 1);
}

TEST_CASE("a process that exited, reaped or not, has no start time") {
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) ::_exit(0);
  // Not reaped yet: a zombie, whose /proc/PID/stat still shows its start time.
  for (int i = 0; i < 500; ++i) {
    std::ifstream stat("/proc/" + std::to_string(child) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), {});
    if (text.find(") Z ") != std::string::npos) break;
    ::usleep(2000);
  }
  CHECK(process_start_ticks(static_cast<std::uint32_t>(child)) == 0);
  ::waitpid(child, nullptr, 0);
  CHECK(process_start_ticks(static_cast<std::uint32_t>(child)) == 0);
  CHECK(process_start_ticks(static_cast<std::uint32_t>(::getpid())) != 0);
}
