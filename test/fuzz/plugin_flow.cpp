// One shipped plugin (FUZZ_PLUGIN, loaded from FUZZ_PLUGIN_PATH through the C ABI) fed a flow
// built from the input (flow_input.hpp): every segment goes through the broker's dispatcher
// and flow inspector as an IPv4 packet, then the same turns through the plugin's replay hooks.
#include "broker/dispatcher.hpp"
#include "broker/flow/flow_inspector.hpp"
#include "broker/policy/policy.hpp"
#include "broker/policy_plugins.hpp"
#include "test/fuzz/flow_input.hpp"
#include "test/fuzz/fuzz_check.hpp"
#include "test/unit/packet_builder.hpp"

#include <spdlog/spdlog.h>

#include <netinet/in.h>

#include <string>

using namespace pktbroker;
using namespace pktbroker::fuzz;

namespace {

constexpr std::uint16_t client_port = 40000;
constexpr std::uint16_t ftp_data_port = 20;
constexpr std::uint8_t fin = 0x01, syn = 0x02, rst = 0x04, psh = 0x08, ack = 0x10;

struct Fixture {
  std::shared_ptr<const Policy> policy;
  std::shared_ptr<const PluginSet> plugins;
  const Plugin* plugin = nullptr;
};

// Drops on a plugin field and on a DNS-learned name (so those paths run), inspects the rest.
const Fixture& fixture() {
  static const Fixture loaded = [] {
    Fixture f;
    std::string yaml = "plugins: [{name: " FUZZ_PLUGIN ", path: \"" FUZZ_PLUGIN_PATH
                       "\", config: {drop_malformed: true}}]\nrules:\n";
    if (!std::string_view(FUZZ_FIELD).empty()) {
      yaml += "  - {name: by-field, match: {" FUZZ_PLUGIN "." FUZZ_FIELD
              ": [\"*.blocked.test\", \"evil*\"]}, verdict: drop}\n";
    }
    yaml += "  - {name: by-name, match: {dst_name: \"*.test\"}, verdict: {drop: true}}\n";
    yaml += "  - {name: inspect, verdict: {inspect: [" FUZZ_PLUGIN
            "], fallback: accept, timeout_ms: 300}}\n";
    f.policy = parse_policy(yaml, "fuzz.yaml");
    f.plugins = load_policy_plugins(*f.policy);
    f.plugin = f.plugins->find(FUZZ_PLUGIN).get();
    return f;
  }();
  return loaded;
}

test::Bytes tcp_packet(bool from_server, std::uint16_t server_port, std::uint32_t seq,
                       std::uint32_t ack_number, std::uint8_t flags,
                       std::span<const std::uint8_t> data) {
  auto put32 = [](test::Bytes& b, std::size_t at, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) b[at + i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
  };
  test::Bytes l4 = from_server ? test::tcp_header(server_port, client_port, flags)
                               : test::tcp_header(client_port, server_port, flags);
  put32(l4, 4, seq);
  put32(l4, 8, ack_number);
  l4.insert(l4.end(), data.begin(), data.end());
  return from_server ? test::ipv4(IPPROTO_TCP, l4, 0, {10, 0, 0, 2}, {10, 0, 0, 1})
                     : test::ipv4(IPPROTO_TCP, l4);
}

test::Bytes udp_packet(bool from_server, std::uint16_t server_port,
                       std::span<const std::uint8_t> data) {
  const auto length = static_cast<std::uint16_t>(data.size());
  test::Bytes l4 = from_server ? test::udp_header(server_port, client_port, length)
                               : test::udp_header(client_port, server_port, length);
  l4.insert(l4.end(), data.begin(), data.end());
  return from_server ? test::ipv4(IPPROTO_UDP, l4, 0, {10, 0, 0, 2}, {10, 0, 0, 1})
                     : test::ipv4(IPPROTO_UDP, l4);
}

/// Runs packets through the dispatcher the way a broker queue does.
class Broker {
 public:
  Broker()
      : inspector_(fixture().plugins, {}, [](std::uint64_t, const pktb_decision&) { return 0; }),
        dispatcher_(0, fixture().policy, &inspector_),
        now_(Clock::now()) {}

  void send(const test::Bytes& packet) {
    PacketMeta meta;
    meta.packet_id = ++packet_id_;
    meta.payload = packet;
    meta.wire_length = static_cast<std::uint32_t>(packet.size());
    const Decision decision = dispatcher_.decide(meta);
    FUZZ_REQUIRE(decision.parsed);
    FlowInspector::record(decision.flow, decision.verdict);
    dispatcher_.record(decision.verdict);
  }
  void wait(int ms) {
    if (ms == 0) return;
    now_ += std::chrono::milliseconds(ms);
    inspector_.maintain(now_);
  }

 private:
  FlowInspector inspector_;
  Dispatcher dispatcher_;
  Clock::time_point now_;
  std::uint32_t packet_id_ = 0;
};

void run_live(const FlowInput& flow, std::uint16_t server_port, bool udp) {
  Broker broker;
  std::uint32_t next[2] = {1000, 900000};  // client, server
  const auto tcp = [&](bool from_server, std::uint32_t seq, std::uint8_t flags,
                       std::span<const std::uint8_t> data) {
    broker.send(tcp_packet(from_server, server_port, seq, next[from_server ? 0 : 1], flags, data));
  };
  if (!udp && (flow.options & flow_handshake) != 0) {
    tcp(false, next[0]++, syn, {});
    tcp(true, next[1]++, syn | ack, {});
    tcp(false, next[0], ack, {});
  }
  for (const Segment& segment : flow.segments) {
    const bool from_server = segment.from_server();
    if ((segment.control & (seg_resend | seg_skip)) == (seg_resend | seg_skip) &&
        segment.data.size() >= 2) {
      // A related connection (an FTP data channel) to the port the first two bytes name.
      const auto port = static_cast<std::uint16_t>((segment.data[0] << 8) | segment.data[1]);
      const auto data = segment.data.subspan(2);
      broker.send(from_server ? tcp_packet(false, port, 1, 0, syn, {})
                              : tcp_packet(true, ftp_data_port, 1, 0, syn, {}));
      broker.send(from_server ? tcp_packet(false, port, 2, 0, psh | ack, data)
                              : tcp_packet(true, ftp_data_port, 2, 0, psh | ack, data));
      broker.wait(segment.wait_ms());
      continue;
    }
    if (udp) {
      broker.send(udp_packet(from_server, server_port, segment.data));
    } else {
      std::uint32_t& seq = next[from_server ? 1 : 0];
      const auto size = static_cast<std::uint32_t>(segment.data.size());
      if ((segment.control & seg_skip) != 0) seq += 1 + size % 7;
      const std::uint32_t start = (segment.control & seg_resend) != 0 ? seq - size / 2 - 1 : seq;
      std::uint8_t flags = ack | (size != 0 ? psh : 0);
      if ((segment.control & seg_fin) != 0) flags |= fin;
      if ((segment.control & seg_rst) != 0) flags = rst;
      tcp(from_server, start, flags, segment.data);
      seq = std::max(seq, start + size + ((flags & fin) != 0 ? 1 : 0));
    }
    broker.wait(segment.wait_ms());
  }
  if (!udp && (flow.options & flow_close) != 0) {
    tcp(false, next[0]++, fin | ack, {});
    tcp(true, next[1]++, fin | ack, {});
    tcp(false, next[0], ack, {});
  }
}

/// pktreplay's host services, reduced to answers.
class ReplaySink final : public CallSink {
 public:
  int set_field(const Plugin& plugin, std::string_view field, std::string_view) override {
    return plugin.has_field(field) ? 0 : -1;
  }
  int expect(const Plugin&, const pktb_tuple&, std::uint32_t, std::uint32_t) override { return 0; }
  int release(const Plugin&, std::uint64_t, const pktb_decision&) override { return -1; }
  int set_timer(const Plugin&, std::uint32_t) override { return 0; }
  int remember_name(const Plugin&, const IpAddress&, std::string_view, std::uint32_t) override {
    return 0;
  }
};

// The replay hooks see the segments as pktreplay's turns: recorded first, then each client
// turn to send and each server turn as both the live and the recorded answer.
void run_replay(const FlowInput& flow, std::uint16_t server_port, bool udp) {
  const Plugin& plugin = *fixture().plugin;
  std::vector<std::uint8_t> state(plugin.descriptor().flow_state_size);
  pktb_flow abi{};
  abi.tuple.family = 4;
  abi.tuple.protocol = udp ? IPPROTO_UDP : IPPROTO_TCP;
  abi.tuple.client_port = client_port;
  abi.tuple.server_port = server_port;
  abi.id = 1;
  abi.state = state.empty() ? nullptr : state.data();
  ReplaySink sink;
  if (plugin.descriptor().flow_open != nullptr && !plugin.call_flow_open(sink, abi)) return;
  std::uint32_t sequence[2] = {0, 0};
  for (const Segment& segment : flow.segments) {
    pktb_packet packet{};
    const int side = segment.from_server() ? PKTB_FROM_SERVER : PKTB_FROM_CLIENT;
    packet.l4_data = segment.data.data();
    packet.l4_len = segment.data.size();
    packet.tcp_seq = udp ? 0 : sequence[side];
    packet.tcp_flags = udp ? 0 : ack;
    packet.direction = static_cast<std::uint8_t>(side);
    sequence[side] += static_cast<std::uint32_t>(segment.data.size());
    plugin.call_replay_recorded(sink, abi, packet);
  }
  for (const Segment& segment : flow.segments) {
    std::vector<std::uint8_t> data(segment.data.begin(), segment.data.end());
    if (segment.from_server()) {
      (void)plugin.call_replay_server_data(sink, abi, data, segment.data);
      plugin.call_replay_mask(abi, data);
    } else {
      (void)plugin.call_replay_client_data(sink, abi, data, data.size() + 256);
    }
  }
  plugin.call_flow_close(abi);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  (void)fixture();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const FlowInput flow = parse_flow_input({data, size});
  const auto& registrations = fixture().plugin->descriptor();
  // The plugin's first registration for the chosen protocol names the server port.
  bool udp = false;
  std::uint16_t server_port = 0;
  for (std::size_t i = 0; i < registrations.registration_count; ++i) {
    const pktb_registration& r = registrations.registrations[i];
    const bool is_udp = r.protocol == IPPROTO_UDP;
    if (server_port == 0 || is_udp == ((flow.options & flow_udp) != 0)) {
      udp = is_udp;
      server_port = r.port_first;
      if (is_udp == ((flow.options & flow_udp) != 0)) break;
    }
  }
  run_live(flow, server_port, udp);
  run_replay(flow, server_port, udp);
  return 0;
}
