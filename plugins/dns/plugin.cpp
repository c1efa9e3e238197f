// The dns plugin: publishes dns.qname and dns.qtype of each query (UDP and TCP port 53) for
// policy rules, remembers which names answers gave out addresses for (dst_name), and with
// `inspect: [dns]` drops malformed queries when configured to. In replay it gives each query
// a fresh id, ends the server's turn with one complete response, and masks ids to compare.
#include "pktbroker/plugin.h"
#include "plugins/common/stream_buffer.hpp"
#include "plugins/dns/dns_message.hpp"

#include <array>
#include <atomic>
#include <cstring>
#include <ctime>
#include <new>
#include <string>

namespace {

using pktbroker::plugins::StreamBuffer;
using namespace pktbroker::plugins::dns;

struct Global {
  const pktb_host* host;
  bool drop_malformed;
  std::uint32_t queries;
  std::uint32_t responses;
  std::uint32_t addresses;
  std::uint32_t too_long;
  std::array<std::uint32_t, static_cast<std::size_t>(DnsError::count_)> malformed;
};

struct FlowState {
  bool too_long;                      // TCP: a query over 512 bytes; the rest is not read
  StreamBuffer<2 + 512> from_client;  // TCP: length-prefixed queries
};

void* init(const pktb_host* host, const char** error) {
  auto* g = new (std::nothrow) Global{};
  if (g == nullptr) {
    *error = "out of memory";
    return nullptr;
  }
  g->host = host;
  const char* drop = host->config(host, "drop_malformed");
  g->drop_malformed = drop != nullptr && std::strcmp(drop, "true") == 0;
  g->queries = host->counter(host, "queries");
  g->responses = host->counter(host, "responses");
  g->addresses = host->counter(host, "addresses");
  g->too_long = host->counter(host, "tcp_query_too_long");
  for (std::size_t i = 1; i < g->malformed.size(); ++i) {
    const std::string name = "malformed_" + std::string(to_string(static_cast<DnsError>(i)));
    g->malformed[i] = host->counter(host, name.c_str());
  }
  return g;
}

void shutdown(void* global) {
  delete static_cast<Global*>(global);
}

// Publishes a query's fields, counts a response's answers; returns false for a bad message.
bool decode(Global& g, pktb_call* call, std::span<const std::uint8_t> bytes) {
  DnsMessage message;
  if (const DnsError error = parse_message(bytes, message); error != DnsError::none) {
    g.host->count(g.host, g.malformed[static_cast<std::size_t>(error)], 1);
    return false;
  }
  if (message.response) {
    g.host->count(g.host, g.responses, 1);
    g.host->count(g.host, g.addresses, message.answers.size());
    // The name the client asked for (not a CNAME target) is what dst_name rules are about.
    for (const AddressAnswer& answer : message.answers) {
      g.host->remember_name(call, answer.family, answer.address.data(), message.qname.data(),
                            message.qname.size(), answer.ttl);
    }
    return true;
  }
  g.host->count(g.host, g.queries, 1);
  const std::string qtype = qtype_name(message.qtype);
  g.host->set_field(call, "qname", message.qname.data(), message.qname.size());
  g.host->set_field(call, "qtype", qtype.data(), qtype.size());
  return true;
}

// TCP: every complete query the stream holds; a query still arriving holds its segment.
bool decode_stream(Global& g, pktb_call* call, FlowState& state, const pktb_packet& packet,
                   pktb_decision& decision) {
  if (state.too_long) return true;
  state.from_client.add(packet);
  bool ok = true;
  while (true) {
    const auto bytes = state.from_client.view();
    if (bytes.size() < 2) return ok;
    const std::size_t length = (std::size_t{bytes[0]} << 8) | bytes[1];
    if (2 + length > sizeof(state.from_client.bytes)) {  // cannot be held whole: stop reading
      g.host->count(g.host, g.too_long, 1);
      state.too_long = true;
      return ok;
    }
    if (bytes.size() < 2 + length) {
      decision.action = PKTB_HOLD;  // the rest of the query is on its way
      return ok;
    }
    ok = decode(g, call, bytes.subspan(2, length)) && ok;
    state.from_client.consume(2 + length);
  }
}

void on_packet(void* global, pktb_call* call, pktb_flow* flow, const pktb_packet* packet,
               pktb_decision* decision) {
  auto& g = *static_cast<Global*>(global);
  if (packet->l4_len == 0) return;
  bool ok = true;
  try {
    if (flow->tuple.protocol == 17) {
      ok = decode(g, call, {packet->l4_data, packet->l4_len});
    } else if (packet->direction == PKTB_FROM_CLIENT) {
      ok = decode_stream(g, call, *static_cast<FlowState*>(flow->state), *packet, *decision);
    }
  } catch (...) {  // allocation failure: no opinion
    return;
  }
  if (!ok && g.drop_malformed) decision->action = PKTB_DROP;
}

// The message's offset in a turn: TCP messages carry a 2-byte length first.
std::size_t message_offset(const pktb_flow* flow) {
  return flow->tuple.protocol == 6 ? 2 : 0;
}

int replay_client_data(void*, pktb_call*, pktb_flow* flow, std::uint8_t* data, std::size_t* len,
                       std::size_t) {
  static std::atomic<std::uint32_t> next_id{static_cast<std::uint32_t>(std::time(nullptr))};
  const std::size_t at = message_offset(flow);
  if (*len >= at + 2) {
    const std::uint32_t id = next_id.fetch_add(0x9e37, std::memory_order_relaxed);
    data[at] = static_cast<std::uint8_t>(id >> 8);
    data[at + 1] = static_cast<std::uint8_t>(id);
  }
  return 0;
}

pktb_turn replay_server_data(void*, pktb_call*, pktb_flow* flow, const std::uint8_t* data,
                             std::size_t len, const std::uint8_t*, std::size_t) {
  if (flow->tuple.protocol != 6) return len >= 12 ? PKTB_TURN_OVER : PKTB_EXPECT_MORE;
  if (len < 2) return PKTB_EXPECT_MORE;
  const std::size_t length = (std::size_t{data[0]} << 8) | data[1];
  return len >= 2 + length ? PKTB_TURN_OVER : PKTB_EXPECT_MORE;
}

std::size_t replay_mask(void*, pktb_flow* flow, std::uint8_t* data, std::size_t len) {
  const std::size_t at = message_offset(flow);
  if (len >= at + 2) data[at] = data[at + 1] = 0;  // the id
  return len;
}

const pktb_registration registrations[] = {{17, 0, 53, 53}, {6, 0, 53, 53}};
const char* const fields[] = {"qname", "qtype", nullptr};

const pktb_plugin descriptor = {
    .abi_version = PKTB_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(pktb_plugin),
    .name = "dns",
    .version = "1.0",
    .registrations = registrations,
    .registration_count = 2,
    .fields = fields,
    .init = init,
    .shutdown = shutdown,
    .flow_state_size = sizeof(FlowState),
    .on_packet = on_packet,
    .replay_client_data = replay_client_data,
    .replay_server_data = replay_server_data,
    .replay_mask = replay_mask,
};

}  // namespace

extern "C" PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  return &descriptor;
}
