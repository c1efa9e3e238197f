// The http plugin: publishes http.method, http.host and http.path of each request on a
// connection (TCP ports 80 and 8080), gathered across segments; request bodies (Content-Length
// or chunked) are skipped to find the next request of a keep-alive connection. Segments that
// carry a head not yet complete are held, so a rule on the Host or path decides them too. In
// replay it ends the server's turn when the response is complete (Content-Length, chunked, or
// no body) and masks the headers that change between answers.
#include "pktbroker/plugin.h"
#include "plugins/common/stream_buffer.hpp"
#include "plugins/http/http_request.hpp"
#include "plugins/http/http_response.hpp"

#include <algorithm>
#include <new>
#include <string_view>
#include <vector>

namespace {

using pktbroker::plugins::StreamBuffer;
using namespace pktbroker::plugins::http;

using HeadBuffer = StreamBuffer<4096>;

struct Global {
  const pktb_host* host;
  std::uint32_t requests;
  std::uint32_t pipelined;
  std::uint32_t not_http;
  std::uint32_t bad_header;
  std::uint32_t bad_chunked_body;
  std::uint32_t unknown_body_length;
  std::uint32_t oversized_head;
};

// Plain memory: the host zeroes it when the flow opens.
struct FlowState {
  bool done;                // stopped following the connection (not HTTP, or no longer parseable)
  bool head_request;        // replay: the last request sent was HEAD
  std::uint64_t body_left;  // bytes of a Content-Length body still to come
  ChunkedBody chunked;      // a chunked body being skipped
  HeadBuffer head;          // the bytes of the head being read
};

void* init(const pktb_host* host, const char** error) {
  auto* g = new (std::nothrow) Global{};
  if (g == nullptr) {
    *error = "out of memory";
    return nullptr;
  }
  g->host = host;
  g->requests = host->counter(host, "requests");
  g->pipelined = host->counter(host, "pipelined");
  g->not_http = host->counter(host, "not_http");
  g->bad_header = host->counter(host, "bad_header");
  g->bad_chunked_body = host->counter(host, "bad_chunked_body");
  g->unknown_body_length = host->counter(host, "unknown_body_length");
  g->oversized_head = host->counter(host, "oversized_head");
  return g;
}

void shutdown(void* global) {
  delete static_cast<Global*>(global);
}

void publish(const pktb_host* host, pktb_call* call, const char* field, const std::string& value) {
  host->set_field(call, field, value.data(), value.size());
}

// Stops following the connection: its fields stay those of its last request.
void give_up(Global& g, FlowState& state, std::uint32_t counter) {
  state.done = true;
  g.host->count(g.host, counter, 1);
}

// A segment's new bytes in stream order: body bytes are skipped, head bytes collected; each
// complete head publishes its request (a segment completing several publishes the first and
// counts the others as pipelined). Returns whether to hold the segment: it carries the start of
// a head and completes none (one that does is decided by that head now; held, it would take
// the verdict of the head it starts).
bool follow(Global& g, pktb_call* call, FlowState& state, std::span<const std::uint8_t> fresh) {
  bool published = false;
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
    const std::size_t copied = state.head.append(fresh);
    RequestHead head;
    switch (parse_request_head(state.head.view(), head)) {
      case HeadStatus::complete: {
        // The head ends inside the bytes just copied; those after it are the body or the next
        // request, so they are read again from `fresh`.
        const std::size_t after_head = state.head.size - head.length;
        fresh = fresh.subspan(copied - after_head);
        state.head.size = 0;
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
        break;
      }
      case HeadStatus::incomplete:
        fresh = fresh.subspan(copied);
        if (!fresh.empty()) give_up(g, state, g.oversized_head);  // the head outgrew the buffer
        break;
      case HeadStatus::not_http: give_up(g, state, g.not_http); break;
      case HeadStatus::bad_header: give_up(g, state, g.bad_header); break;
    }
  }
  return !state.done && state.head.size > 0 && !published;
}

void on_packet(void* global, pktb_call* call, pktb_flow* flow, const pktb_packet* packet,
               pktb_decision* decision) {
  auto& g = *static_cast<Global*>(global);
  auto& state = *static_cast<FlowState*>(flow->state);
  if (state.done || packet->direction != PKTB_FROM_CLIENT) return;
  std::span<const std::uint8_t> fresh;
  if (state.head.take(*packet, fresh) != HeadBuffer::Added::data) return;
  try {
    if (follow(g, call, state, fresh)) decision->action = PKTB_HOLD;  // the rest is on its way
  } catch (...) {  // allocation failure: no opinion, and no more following
    state.done = true;
  }
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
const char* const fields[] = {"method", "host", "path", nullptr};

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
    .on_packet = on_packet,
    .replay_client_data = replay_client_data,
    .replay_server_data = replay_server_data,
    .replay_mask = replay_mask,
};

}  // namespace

extern "C" PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  return &descriptor;
}
