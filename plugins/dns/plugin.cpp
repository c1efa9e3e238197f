// The dns plugin: publishes dns.qname and dns.qtype of each query (UDP and TCP port 53) for
// policy rules, remembers which names answers gave out addresses for (dst_name) -- only answers
// the server sent back on the flow of a query seen on it (same id, name and type) -- and with
// `inspect: [dns]` drops malformed queries when configured to. In replay it gives each query a
// fresh id, ends the server's turn with one complete response, and masks ids to compare.
#include "pktbroker/plugin.h"
#include "plugins/common/siphash.hpp"
#include "plugins/common/stream_buffer.hpp"
#include "plugins/dns/dns_message.hpp"

#include <sys/random.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <ctime>
#include <new>
#include <string>

namespace {

using pktbroker::plugins::HeldBytes;
using pktbroker::plugins::SipKey;
using pktbroker::plugins::TcpStream;
using namespace pktbroker::plugins::dns;

constexpr std::size_t max_tcp_query = 512;  // longer TCP queries are not read (counted)
constexpr std::size_t max_pending = 4;      // queries awaiting their answer, per flow

struct Global {
  const pktb_host* host;
  bool drop_malformed;
  SipKey key;  // hashes query names: no sender can pick a name with another's digest
  std::uint32_t queries;
  std::uint32_t responses;
  std::uint32_t addresses;
  std::uint32_t too_long;
  std::uint32_t unsolicited;
  std::array<std::uint32_t, static_cast<std::size_t>(DnsError::count_)> malformed;
};

/// A query the client sent on this flow, awaiting the server's answer.
struct PendingQuery {
  std::uint64_t name_digest;
  std::uint16_t id;
  std::uint16_t qtype;
  bool waiting;
};

// Plain memory, zeroed by the host; a TCP query is kept on the heap only while it spans
// segments.
struct FlowState {
  bool too_long;         // TCP: a query over 512 bytes; the rest is not read
  bool server_answered;  // replay: the server spoke since the client's last query
  std::uint8_t next_pending;
  std::array<PendingQuery, max_pending> pending;  // oldest replaced when full
  TcpStream from_client;                          // TCP: length-prefixed queries
  HeldBytes query;                                // TCP: a query spanning segments
};

void* init(const pktb_host* host, const char** error) {
  auto* g = new (std::nothrow) Global{};
  if (g == nullptr) {
    *error = "out of memory";
    return nullptr;
  }
  if (getrandom(g->key.data(), sizeof g->key, 0) != static_cast<ssize_t>(sizeof g->key)) {
    delete g;
    *error = "no random key for query names (getrandom failed)";
    return nullptr;
  }
  g->host = host;
  const char* drop = host->config(host, "drop_malformed");
  g->drop_malformed = drop != nullptr && std::strcmp(drop, "true") == 0;
  g->queries = host->counter(host, "queries");
  g->responses = host->counter(host, "responses");
  g->addresses = host->counter(host, "addresses");
  g->too_long = host->counter(host, "tcp_query_too_long");
  g->unsolicited = host->counter(host, "unsolicited_answer");
  for (std::size_t i = 1; i < g->malformed.size(); ++i) {
    const std::string name = "malformed_" + std::string(to_string(static_cast<DnsError>(i)));
    g->malformed[i] = host->counter(host, name.c_str());
  }
  return g;
}

void shutdown(void* global) {
  delete static_cast<Global*>(global);
}

void flow_close(void*, pktb_flow* flow) {
  auto& state = *static_cast<FlowState*>(flow->state);
  state.query.clear(nullptr);
  state.from_client.clear(nullptr);
}

std::uint64_t digest(const Global& g, const std::string& name) {
  return pktbroker::plugins::siphash24(
      g.key, {reinterpret_cast<const std::uint8_t*>(name.data()), name.size()});
}

// Whether `message` answers a query of this flow still waiting; that query then stops waiting.
bool answers_pending(const Global& g, FlowState& state, const DnsMessage& message) {
  const std::uint64_t name = digest(g, message.qname);
  for (PendingQuery& query : state.pending) {
    if (query.waiting && query.id == message.id && query.qtype == message.qtype &&
        query.name_digest == name) {
      query.waiting = false;
      return true;
    }
  }
  return false;
}

// Publishes a client's query's fields (and remembers it), remembers the names an answer to one
// gave out addresses for; returns false for a bad message.
bool decode(Global& g, pktb_call* call, FlowState& state, std::span<const std::uint8_t> bytes,
            bool from_server) {
  DnsMessage message;
  if (const DnsError error = parse_message(bytes, message); error != DnsError::none) {
    g.host->count(g.host, g.malformed[static_cast<std::size_t>(error)], 1);
    return false;
  }
  if (message.response) {
    g.host->count(g.host, g.responses, 1);
    // Only the server's answer to a query seen on this flow: anyone can send a message with the
    // response bit set towards port 53, or from it, naming any address.
    if (!from_server || !answers_pending(g, state, message)) {
      g.host->count(g.host, g.unsolicited, 1);
      return true;
    }
    g.host->count(g.host, g.addresses, message.answers.size());
    // The name the client asked for (not a CNAME target) is what dst_name rules are about.
    for (const AddressAnswer& answer : message.answers) {
      g.host->remember_name(call, answer.family, answer.address.data(), message.qname.data(),
                            message.qname.size(), answer.ttl);
    }
    return true;
  }
  if (from_server) return true;  // a query towards the client: not this flow's question
  g.host->count(g.host, g.queries, 1);
  state.pending[state.next_pending] = {digest(g, message.qname), message.id, message.qtype, true};
  state.next_pending = static_cast<std::uint8_t>((state.next_pending + 1) % max_pending);
  const std::string qtype = qtype_name(message.qtype);
  g.host->set_field(call, "qname", message.qname.data(), message.qname.size());
  g.host->set_field(call, "qtype", qtype.data(), qtype.size());
  return true;
}

// TCP: every complete query the stream holds, read in place; a query still arriving is kept
// and holds its segment.
bool decode_stream(Global& g, pktb_call* call, FlowState& state, const pktb_packet& packet,
                   pktb_decision& decision) {
  if (state.too_long) return true;
  std::span<const std::uint8_t> fresh;
  switch (state.from_client.take(packet, fresh, 2 + max_tcp_query, nullptr)) {
    case TcpStream::Added::data: break;
    case TcpStream::Added::nothing_new: return true;
    case TcpStream::Added::kept_ahead: decision.action = PKTB_HOLD; return true;
    case TcpStream::Added::lost:  // a second gap: read when sent again
      decision.action = PKTB_DROP;
      return true;
  }
  bool ok = true;
  const auto read = [&](std::span<const std::uint8_t> more) {
    const bool buffered = !state.query.empty();
    if (buffered && !state.query.append(more, state.query.size + more.size(), nullptr)) {
      return false;
    }
    const auto bytes = buffered ? state.query.view() : more;
    std::size_t used = 0;
    while (bytes.size() - used >= 2) {
      const std::size_t length = (std::size_t{bytes[used]} << 8) | bytes[used + 1];
      if (length > max_tcp_query) {  // cannot be held whole: stop reading
        g.host->count(g.host, g.too_long, 1);
        state.too_long = true;
        state.query.clear(nullptr);
        state.from_client.clear(nullptr);
        return true;
      }
      if (bytes.size() - used < 2 + length) break;
      ok = decode(g, call, state, bytes.subspan(used + 2, length), false) && ok;
      used += 2 + length;
    }
    if (buffered) {
      state.query.consume(used, nullptr);
      return true;
    }
    return state.query.append(bytes.subspan(used), 2 + max_tcp_query, nullptr);
  };
  if (!read(fresh)) return ok;
  if (const auto more = state.from_client.resume(nullptr); !more.empty()) {
    if (!state.too_long) read(more);
    state.from_client.done_ahead(nullptr);
  }
  if (!state.too_long && !state.query.empty()) {
    decision.action = PKTB_HOLD;  // the rest of the query is on its way
  }
  return ok;
}

void on_packet(void* global, pktb_call* call, pktb_flow* flow, const pktb_packet* packet,
               pktb_decision* decision) {
  auto& g = *static_cast<Global*>(global);
  auto& state = *static_cast<FlowState*>(flow->state);
  if (packet->l4_len == 0) return;
  bool ok = true;
  try {
    if (flow->tuple.protocol == 17) {
      ok = decode(g, call, state, {packet->l4_data, packet->l4_len},
                  packet->direction == PKTB_FROM_SERVER);
    } else if (packet->direction == PKTB_FROM_CLIENT) {
      ok = decode_stream(g, call, state, *packet, *decision);
    }
  } catch (...) {  // allocation failure: no opinion
    return;
  }
  if (!ok && g.drop_malformed) decision->action = PKTB_DROP;
}

// A replayed turn's messages: one per UDP datagram; TCP's each carry a 2-byte length first.
// Calls `each(offset)` for each whole message, at its header.
template <typename Each>
void for_each_message(const pktb_flow* flow, std::size_t len, const std::uint8_t* data, Each each) {
  if (flow->tuple.protocol != 6) {
    if (len >= 2) each(std::size_t{0});
    return;
  }
  for (std::size_t at = 0; at + 2 <= len;) {
    const std::size_t length = (std::size_t{data[at]} << 8) | data[at + 1];
    if (at + 2 + length > len) return;
    if (length >= 2) each(at + 2);
    at += 2 + length;
  }
}

// In replay the pending slots hold the ids this run sent, until their answers come.
void await_answer(FlowState& state, std::uint16_t id) {
  state.pending[state.next_pending] = PendingQuery{0, id, 0, true};
  state.next_pending = static_cast<std::uint8_t>((state.next_pending + 1) % max_pending);
}

int replay_client_data(void*, pktb_call*, pktb_flow* flow, std::uint8_t* data, std::size_t* len,
                       std::size_t) {
  static std::atomic<std::uint32_t> next_id{static_cast<std::uint32_t>(std::time(nullptr))};
  auto& state = *static_cast<FlowState*>(flow->state);
  if (state.server_answered) {  // a server turn has ended: what it did not answer is over
    for (PendingQuery& query : state.pending) query.waiting = false;
    state.server_answered = false;
  }
  for_each_message(flow, *len, data, [&](std::size_t at) {
    const auto id =
        static_cast<std::uint16_t>(next_id.fetch_add(0x9e37, std::memory_order_relaxed));
    data[at] = static_cast<std::uint8_t>(id >> 8);
    data[at + 1] = static_cast<std::uint8_t>(id);
    await_answer(state, id);
  });
  return 0;
}

// The turn is over once every query sent has its answer, matched by id (A and AAAA from one
// socket are answered separately, in either order).
pktb_turn replay_server_data(void*, pktb_call*, pktb_flow* flow, const std::uint8_t* data,
                             std::size_t len, const std::uint8_t*, std::size_t) {
  auto& state = *static_cast<FlowState*>(flow->state);
  state.server_answered = true;
  bool answered = false;
  for_each_message(flow, len, data, [&](std::size_t at) {
    const auto id = static_cast<std::uint16_t>((data[at] << 8) | data[at + 1]);
    for (PendingQuery& query : state.pending) {
      if (query.waiting && query.id == id) {
        query.waiting = false;
        answered = true;
      }
    }
  });
  const bool waiting = std::any_of(state.pending.begin(), state.pending.end(),
                                   [](const PendingQuery& q) { return q.waiting; });
  return answered && !waiting ? PKTB_TURN_OVER : PKTB_EXPECT_MORE;
}

std::size_t replay_mask(void*, pktb_flow* flow, std::uint8_t* data, std::size_t len) {
  for_each_message(flow, len, data, [&](std::size_t at) { data[at] = data[at + 1] = 0; });
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
    .flow_close = flow_close,
    .on_packet = on_packet,
    .replay_client_data = replay_client_data,
    .replay_server_data = replay_server_data,
    .replay_mask = replay_mask,
};

}  // namespace

extern "C" PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  return &descriptor;
}
