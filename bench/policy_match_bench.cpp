// Policy matching cost: ns per packet for policies of 10, 1,000 and 10,000 rules (ports,
// addresses, marks; the packets mostly match late or not at all), broker memory per tracked
// flow at 100k and 1M flows, and per flow with each shipped plugin once the flow has carried
// what that plugin reads (a handshake and a request head, a query, a ClientHello, a login).
// Prints one JSON object.
#include "broker/flow/flow_table.hpp"
#include "broker/policy/policy.hpp"
#include "test/unit/plugins/client_hello_builder.hpp"
#include "test/unit/plugins/plugin_driver.hpp"

#include <malloc.h>
#include <netinet/in.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

using namespace pktbroker;

namespace {

/// `count` rules of assorted shapes, none matching the benchmark's traffic but the last.
std::string policy_text(std::size_t count) {
  std::string text = "rules:\n";
  for (std::size_t i = 0; i + 1 < count; ++i) {
    const std::size_t port = 1000 + i % 50000;
    switch (i % 4) {
      case 0:
        text += "  - {name: r" + std::to_string(i) +
                ", match: {proto: tcp, dport: " + std::to_string(port) + "}, verdict: drop}\n";
        break;
      case 1:
        text += "  - {name: r" + std::to_string(i) + ", match: {proto: udp, dst: 10." +
                std::to_string(i / 65536 % 256) + "." + std::to_string(i / 256 % 256) + "." +
                std::to_string(i % 256) + "/32}, verdict: drop}\n";
        break;
      case 2:
        text += "  - {name: r" + std::to_string(i) + ", match: {mark: " + std::to_string(i + 100) +
                "}, verdict: drop}\n";
        break;
      default:
        text += "  - {name: r" + std::to_string(i) +
                ", match: {proto: udp, sport: " + std::to_string(port) +
                ", dport: " + std::to_string(port) + "}, verdict: drop}\n";
        break;
    }
  }
  return text + "  - {name: last, match: {proto: udp, dport: 9999}, verdict: accept}\n";
}

std::vector<std::vector<std::uint8_t>> packets(std::size_t count) {
  std::mt19937 random(42);
  std::vector<std::vector<std::uint8_t>> out;
  for (std::size_t i = 0; i < count; ++i) {
    std::vector<std::uint8_t> p(28 + 32, 0);
    p[0] = 0x45;
    p[3] = static_cast<std::uint8_t>(p.size());
    p[8] = 64;
    p[9] = IPPROTO_UDP;
    p[12] = 192, p[13] = 168, p[14] = static_cast<std::uint8_t>(random()), p[15] = 1;
    p[16] = 172, p[17] = 16, p[18] = static_cast<std::uint8_t>(random()), p[19] = 2;
    const auto sport = static_cast<std::uint16_t>(30000 + random() % 30000);
    const std::uint16_t dport = (random() % 4 == 0) ? 9999 : static_cast<std::uint16_t>(random());
    p[20] = sport >> 8, p[21] = sport & 0xff, p[22] = dport >> 8, p[23] = dport & 0xff;
    p[25] = 40;
    out.push_back(std::move(p));
  }
  return out;
}

double match_ns(std::size_t rules) {
  const auto policy = parse_policy(policy_text(rules), "bench.yaml");
  const auto traffic = packets(4096);
  std::vector<PacketView> views(traffic.size());
  std::vector<PacketMeta> metas(traffic.size());
  for (std::size_t i = 0; i < traffic.size(); ++i) {
    (void)parse_packet(traffic[i], views[i]);
    metas[i].payload = traffic[i];
    metas[i].mark = static_cast<std::uint32_t>(i % 7);
  }
  std::vector<double> runs;
  std::size_t sink = 0;
  for (int run = 0; run < 5; ++run) {
    const std::size_t rounds = 200;
    const auto start = std::chrono::steady_clock::now();
    for (std::size_t r = 0; r < rounds; ++r) {
      for (std::size_t i = 0; i < traffic.size(); ++i) sink += policy->match(metas[i], views[i]);
    }
    const std::chrono::duration<double, std::nano> took = std::chrono::steady_clock::now() - start;
    runs.push_back(took.count() / static_cast<double>(rounds * traffic.size()));
  }
  std::sort(runs.begin(), runs.end());
  if (sink == 42) std::puts("");  // keeps the loop from being optimized away
  return runs[runs.size() / 2];
}

double bytes_per_flow(std::size_t flows) {
  FlowLimits limits;
  limits.capacity = flows;
  const auto before = mallinfo2().uordblks;
  FlowTable table(limits);
  std::vector<std::uint8_t> p(28, 0);
  p[0] = 0x45, p[3] = 28, p[8] = 64, p[9] = IPPROTO_UDP, p[25] = 8;
  p[12] = 10, p[16] = 10, p[19] = 1;
  for (std::size_t i = 0; i < flows; ++i) {
    p[13] = static_cast<std::uint8_t>(i >> 16), p[14] = static_cast<std::uint8_t>(i >> 8);
    p[15] = static_cast<std::uint8_t>(i), p[20] = 0x80, p[22] = 0, p[23] = 53;
    PacketView view;
    (void)parse_packet(p, view);
    table.lookup(view, CtState::none, Clock::now());
  }
  return static_cast<double>(mallinfo2().uordblks - before) / static_cast<double>(table.size());
}

/// Broker memory per flow with one shipped plugin loaded, over 20,000 flows that each carried
/// what the plugin reads: the flow table entry, the plugin's record and state, its allocations.
double bytes_per_plugin_flow(const std::string& plugin) {
  constexpr std::uint32_t flows = 20'000;
  using test::segment;
  const auto hello_bytes = test::client_hello("bench.example");
  const std::string hello(hello_bytes.begin(), hello_bytes.end());
  const std::string tls_record = std::string{22, 3, 1, static_cast<char>(hello.size() >> 8),
                                             static_cast<char>(hello.size() & 0xff)} +
                                 hello;  // one handshake record, its length in two bytes
  const std::string dns_query =
      std::string("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", 12) +
      std::string(
          "\x05"
          "bench\x07"
          "example\x00\x00\x01\x00\x01",
          19);
  std::vector<test::Bytes> packets;
  for (std::uint32_t i = 0; i < flows; ++i) {
    const auto port = static_cast<std::uint16_t>(1024 + i);
    if (plugin == "dns") {
      packets.push_back(test::datagram(port, 53, dns_query));
      continue;
    }
    const std::uint16_t server = plugin == "http" ? 80 : plugin == "tls" ? 443 : 21;
    packets.push_back(segment(port, server, 1000, "", 0x02));
    if (plugin == "ftp") {
      packets.push_back(segment(port, server, 5000, "220 bench\r\n", 0x18, true));
      packets.push_back(segment(port, server, 1001, "USER anonymous\r\n"));
    } else {
      packets.push_back(segment(port, server, 1001,
                                plugin == "http" ? "GET /index.html HTTP/1.1\r\nHost: "
                                                   "bench.example\r\n\r\n"
                                                 : tls_record));
    }
  }
  const auto plugins = test::shipped_plugins({plugin});
  FlowLimits limits;
  limits.capacity = flows;
  const auto before = mallinfo2().uordblks;
  double per_flow = 0;
  {
    FlowInspector inspector(
        plugins, limits, [](std::uint64_t, const pktb_decision&) { return 0; },
        std::make_shared<NameCache>());
    const auto now = Clock::now();
    std::uint64_t token = 0;
    for (const auto& packet : packets) {
      PacketView view;
      (void)parse_packet(packet, view);
      PacketMeta meta;
      meta.payload = packet;
      meta.wire_length = static_cast<std::uint32_t>(packet.size());
      (void)inspector.inspect(meta, view, ++token, now);
    }
    if (inspector.counters().active_flows != flows) {
      std::fprintf(stderr, "policy_match_bench: %s tracked %zu flows, not %u\n", plugin.c_str(),
                   static_cast<std::size_t>(inspector.counters().active_flows), flows);
      std::exit(1);
    }
    per_flow = static_cast<double>(mallinfo2().uordblks - before) / flows;
  }
  return per_flow;
}

}  // namespace

int main() {
  std::printf(R"({"match_ns": {"10": %.1f, "1000": %.1f, "10000": %.1f}, )", match_ns(10),
              match_ns(1000), match_ns(10000));
  std::printf(R"("bytes_per_flow": {"100000": %.1f, "1000000": %.1f}, )", bytes_per_flow(100'000),
              bytes_per_flow(1'000'000));
  std::printf(R"("bytes_per_plugin_flow": {"dns": %.1f, "http": %.1f, "tls": %.1f, "ftp": %.1f}})"
              "\n",
              bytes_per_plugin_flow("dns"), bytes_per_plugin_flow("http"),
              bytes_per_plugin_flow("tls"), bytes_per_plugin_flow("ftp"));
  return 0;
}
