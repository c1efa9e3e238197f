// The http plugin: publishes http.method, http.host and http.path (normalized) of each request
// on a connection (TCP ports 80 and 8080), gathered across segments, in order even when they
// arrive out of order; request bodies (Content-Length or chunked) are skipped to find the next
// request of a keep-alive connection. Segments that carry a head not yet complete are held, so
// a rule on the Host or path decides them too; a head it cannot read publishes http.error and,
// unless `fail_open: true`, is dropped under `inspect: [http]`. In
// replay it ends the server's turn when the response is complete (Content-Length, chunked, or
// no body) and masks the headers that change between answers.
#include "pktbroker/plugin.h"
#include "plugins/common/stream_buffer.hpp"
#include "plugins/http/http_request.hpp"
#include "plugins/http/http_response.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>
#include <vector>

namespace {

using pktbroker::plugins::ByteBudget;
using pktbroker::plugins::HeldBytes;
using pktbroker::plugins::TcpStream;
using namespace pktbroker::plugins::http;

constexpr std::size_t default_max_head = 32 * 1024;
constexpr std::size_t default_budget = std::size_t{64} * 1024 * 1024;
// Body bytes skipped at once by moving the stream's cursor (sequence numbers are 32 bits).
constexpr std::uint64_t max_body_jump = std::uint64_t{1} << 30;

struct Global {
  explicit Global(std::size_t budget_bytes) : budget(budget_bytes) {}
  const pktb_host* host = nullptr;
  std::size_t max_head = default_max_head;  // bytes a head may have (and may be kept ahead)
  bool fail_open = false;                   // a head it cannot read passes (counted, published)
  ByteBudget budget;                        // bytes held across every flow
  std::uint32_t requests = 0;
  std::uint32_t pipelined = 0;
  std::uint32_t not_http = 0;
  std::uint32_t bad_header = 0;
  std::uint32_t bad_chunked_body = 0;
  std::uint32_t unknown_body_length = 0;
  std::uint32_t oversized_head = 0;
  std::uint32_t out_of_order = 0;
  std::uint32_t reorder_overflow = 0;
  std::uint32_t no_buffer = 0;
  std::uint32_t failed_closed = 0;
};

// Plain memory: the host zeroes it when the flow opens. Buffers are allocated only while a
// partial head (or data ahead of a gap) is held, and freed when it is read.
struct FlowState {
  bool done;                // stopped following the connection (not HTTP, or no longer parseable)
  bool failed_closed;       // a head it had to read could not be: its client data is dropped
  bool head_request;        // replay: the last request sent was HEAD
  std::uint32_t scanned;    // bytes of `head` already searched for the head's end
  std::uint64_t body_left;  // bytes of a Content-Length body still to come
  ChunkedBody chunked;      // a chunked body being skipped
  TcpStream stream;         // the client's stream, with data that came ahead of a gap
  HeldBytes head;           // the bytes of a head being read, when it spans segments
};

std::size_t config_size(const pktb_host* host, const char* key, std::size_t fallback,
                        std::size_t low, std::size_t high) {
  const char* text = host->config(host, key);
  if (text == nullptr) return fallback;
  char* end = nullptr;
  const unsigned long long value = std::strtoull(text, &end, 10);
  if (end == text || *end != '\0') return fallback;
  return std::clamp<std::size_t>(static_cast<std::size_t>(value), low, high);
}

void* init(const pktb_host* host, const char** error) {
  const std::size_t budget =
      config_size(host, "buffer_budget_bytes", default_budget, 1 << 20, std::size_t{1} << 34);
  auto* g = new (std::nothrow) Global(budget);
  if (g == nullptr) {
    *error = "out of memory";
    return nullptr;
  }
  g->host = host;
  g->max_head = config_size(host, "max_head_bytes", default_max_head, 1024, 1 << 20);
  const char* fail_open = host->config(host, "fail_open");
  g->fail_open = fail_open != nullptr && std::strcmp(fail_open, "true") == 0;
  g->requests = host->counter(host, "requests");
  g->pipelined = host->counter(host, "pipelined");
  g->not_http = host->counter(host, "not_http");
  g->bad_header = host->counter(host, "bad_header");
  g->bad_chunked_body = host->counter(host, "bad_chunked_body");
  g->unknown_body_length = host->counter(host, "unknown_body_length");
  g->oversized_head = host->counter(host, "oversized_head");
  g->out_of_order = host->counter(host, "out_of_order");
  g->reorder_overflow = host->counter(host, "reorder_overflow");
  g->no_buffer = host->counter(host, "no_buffer");
  g->failed_closed = host->counter(host, "failed_closed");
  return g;
}

void shutdown(void* global) {
  delete static_cast<Global*>(global);
}

void flow_close(void* global, pktb_flow* flow) {
  auto& g = *static_cast<Global*>(global);
  auto& state = *static_cast<FlowState*>(flow->state);
  state.head.clear(&g.budget);
  state.stream.clear(&g.budget);
}

void publish(const pktb_host* host, pktb_call* call, const char* field, std::string_view value) {
  host->set_field(call, field, value.data(), value.size());
}

// Stops following the connection: its fields stay those of its last request.
void give_up(Global& g, FlowState& state, std::uint32_t counter) {
  state.done = true;
  state.head.clear(&g.budget);
  state.stream.clear(&g.budget);
  state.scanned = 0;
  g.host->count(g.host, counter, 1);
}

// A head the plugin had to read and cannot (too long, malformed, out of order beyond what it
// keeps, no memory): it publishes what it could read (the request line, a Host header before
// the point it stopped; empty fields when unknown) and http.error, so rules can act on it, and
// unless fail_open, it says drop for this and every later client segment (under `inspect`).
void fail(Global& g, pktb_call* call, FlowState& state, std::uint32_t counter,
          std::string_view reason, std::span<const std::uint8_t> partial) {
  RequestHead head;
  parse_request_head(partial, head);
  publish(g.host, call, "method", head.method);
  publish(g.host, call, "path", head.path);
  publish(g.host, call, "host", head.host);
  publish(g.host, call, "error", reason);
  give_up(g, state, counter);
  if (!g.fail_open) {
    state.failed_closed = true;
    g.host->count(g.host, g.failed_closed, 1);
  }
}

// Whether the head's end (an empty line) may lie in bytes not searched yet.
bool head_may_end(std::span<const std::uint8_t> bytes, std::size_t scanned) {
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  for (auto at = text.find('\n', scanned < 2 ? 0 : scanned - 2); at != std::string_view::npos;
       at = text.find('\n', at + 1)) {
    if (at + 1 < text.size() && text[at + 1] == '\n') return true;
    if (at + 2 < text.size() && text[at + 1] == '\r' && text[at + 2] == '\n') return true;
  }
  return false;
}

// Reads head bytes from the front of `fresh` (consuming what it read): a head completed
// publishes its request (the first of a segment does; later ones count as pipelined), one
// still arriving is kept. Parsed in place when it fits in the segment: memory is only taken
// for a head that spans segments.
void read_head(Global& g, pktb_call* call, FlowState& state, std::span<const std::uint8_t>& fresh,
               bool& published) {
  const bool buffered = !state.head.empty();
  std::size_t taken = std::min(fresh.size(), g.max_head - state.head.size);
  if (buffered && !state.head.append(fresh.first(taken), g.max_head, &g.budget)) {
    fail(g, call, state, g.no_buffer, "no_buffer", state.head.view());
    return;
  }
  const auto bytes = buffered ? state.head.view() : fresh.first(taken);
  const std::size_t held_before = bytes.size() - taken;
  RequestHead head;
  HeadStatus status = HeadStatus::incomplete;
  if (state.scanned == 0 || head_may_end(bytes, state.scanned)) {
    status = parse_request_head(bytes, head);
  }
  switch (status) {
    case HeadStatus::complete: {
      fresh = fresh.subspan(head.length - held_before);  // the rest: a body, or the next head
      state.head.clear(&g.budget);
      state.scanned = 0;
      g.host->count(g.host, g.requests, 1);
      if (published) {
        g.host->count(g.host, g.pipelined, 1);
      } else {
        published = true;
        publish(g.host, call, "method", head.method);
        publish(g.host, call, "path", head.path);
        publish(g.host, call, "host", head.host);
      }
      if (head.body == BodyKind::chunked) state.chunked.start();
      if (head.body == BodyKind::unknown) give_up(g, state, g.unknown_body_length);
      state.body_left = head.content_length;
      return;
    }
    case HeadStatus::incomplete:
      if (bytes.size() >= g.max_head) {  // it ends later than any head may
        fail(g, call, state, g.oversized_head, "oversized_head", bytes);
        return;
      }
      if (!buffered && !state.head.append(bytes, g.max_head, &g.budget)) {
        fail(g, call, state, g.no_buffer, "no_buffer", bytes);
        return;
      }
      state.scanned = state.head.size;
      fresh = fresh.subspan(taken);
      return;
    case HeadStatus::not_http: give_up(g, state, g.not_http); return;
    case HeadStatus::bad_header: fail(g, call, state, g.bad_header, "bad_header", bytes); return;
  }
}

// A run of the client's bytes in stream order: body bytes are skipped, heads read. A body
// that goes on past these bytes is skipped by moving the stream's cursor past it, so its
// segments need not come in order.
void follow(Global& g, pktb_call* call, FlowState& state, std::span<const std::uint8_t> fresh,
            bool& published) {
  while (!fresh.empty() && !state.done) {
    if (state.body_left > 0) {
      const auto skipped = std::min<std::uint64_t>(state.body_left, fresh.size());
      state.body_left -= skipped;
      fresh = fresh.subspan(static_cast<std::size_t>(skipped));
      continue;
    }
    if (state.chunked.active()) {
      fresh = fresh.subspan(state.chunked.consume(fresh));
      if (state.chunked.state == ChunkedBody::State::failed) give_up(g, state, g.bad_chunked_body);
      continue;
    }
    read_head(g, call, state, fresh, published);
  }
  if (!state.done && state.body_left > 0) {
    const std::uint64_t jump = std::min(state.body_left, max_body_jump);
    state.stream.cursor.next_seq += static_cast<std::uint32_t>(jump);
    state.body_left -= jump;
  }
}

void on_packet(void* global, pktb_call* call, pktb_flow* flow, const pktb_packet* packet,
               pktb_decision* decision) {
  auto& g = *static_cast<Global*>(global);
  auto& state = *static_cast<FlowState*>(flow->state);
  if (packet->direction != PKTB_FROM_CLIENT) return;
  if (state.failed_closed) {
    if (packet->l4_len > 0) decision->action = PKTB_DROP;
    return;
  }
  if (state.done) return;
  std::span<const std::uint8_t> fresh;
  try {
    switch (state.stream.take(*packet, fresh, g.max_head, &g.budget)) {
      case TcpStream::Added::nothing_new: return;
      case TcpStream::Added::kept_ahead:  // read when the gap fills; held until then
        g.host->count(g.host, g.out_of_order, 1);
        decision->action = PKTB_HOLD;
        return;
      case TcpStream::Added::lost:
        if (state.chunked.active()) {
          give_up(g, state, g.reorder_overflow);
        } else {
          fail(g, call, state, g.reorder_overflow, "out_of_order", state.head.view());
        }
        break;
      case TcpStream::Added::data: {
        bool published = false;
        follow(g, call, state, fresh, published);
        if (const auto more = state.stream.resume(&g.budget); !more.empty()) {
          if (!state.done) follow(g, call, state, more, published);
          state.stream.done_ahead(&g.budget);
        }
        if (!state.done && !state.head.empty() && !published) {
          decision->action = PKTB_HOLD;  // the rest of the head is on its way
        }
        break;
      }
    }
  } catch (...) {  // allocation failure: no opinion, and no more following
    give_up(g, state, g.no_buffer);
  }
  if (state.failed_closed) decision->action = PKTB_DROP;
}

int replay_client_data(void*, pktb_call*, pktb_flow* flow, std::uint8_t* data, std::size_t* len,
                       std::size_t) {
  static_cast<FlowState*>(flow->state)->head_request =
      *len >= 5 && std::string_view(reinterpret_cast<const char*>(data), 5) == "HEAD ";
  return 0;
}

pktb_turn replay_server_data(void*, pktb_call*, pktb_flow* flow, const std::uint8_t* data,
                             std::size_t len, const std::uint8_t*, std::size_t) {
  try {
    switch (response_end({data, len}, static_cast<FlowState*>(flow->state)->head_request)) {
      case ResponseEnd::complete: return PKTB_TURN_OVER;
      case ResponseEnd::until_close:
      case ResponseEnd::incomplete: return PKTB_EXPECT_MORE;
      case ResponseEnd::malformed: return PKTB_TURN_OVER;  // nothing to wait for
    }
  } catch (...) {
  }
  return PKTB_EXPECT_MORE;
}

std::size_t replay_mask(void*, pktb_flow*, std::uint8_t* data, std::size_t len) {
  try {
    std::vector<std::uint8_t> bytes(data, data + len);
    mask_response(bytes);
    std::copy(bytes.begin(), bytes.end(), data);
    return bytes.size();
  } catch (...) {
    return len;
  }
}

const pktb_registration registrations[] = {{6, 0, 80, 80}, {6, 0, 8080, 8080}};
const char* const fields[] = {"method", "host", "path", "error", nullptr};

const pktb_plugin descriptor = {
    .abi_version = PKTB_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(pktb_plugin),
    .name = "http",
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
