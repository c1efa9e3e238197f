// The http plugin: publishes http.method, http.host and http.path of a connection's first
// request (TCP ports 80 and 8080), gathered across segments. Segments before the head is
// complete are held, so a rule on the Host decides them too. In replay it ends the server's
// turn when the response is complete (Content-Length, chunked, or no body) and masks the
// headers that change between answers.
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

struct Global {
  const pktb_host* host;
  std::uint32_t requests;
  std::uint32_t not_http;
  std::uint32_t bad_header;
  std::uint32_t oversized_head;
};

struct FlowState {
  bool done;
  bool head_request;  // replay: the last request sent was HEAD
  StreamBuffer<4096> from_client;
};

void* init(const pktb_host* host, const char** error) {
  auto* g = new (std::nothrow) Global{};
  if (g == nullptr) {
    *error = "out of memory";
    return nullptr;
  }
  g->host = host;
  g->requests = host->counter(host, "requests");
  g->not_http = host->counter(host, "not_http");
  g->bad_header = host->counter(host, "bad_header");
  g->oversized_head = host->counter(host, "oversized_head");
  return g;
}

void shutdown(void* global) {
  delete static_cast<Global*>(global);
}

void publish(const pktb_host* host, pktb_call* call, const char* field, const std::string& value) {
  host->set_field(call, field, value.data(), value.size());
}

void on_packet(void* global, pktb_call* call, pktb_flow* flow, const pktb_packet* packet,
               pktb_decision* decision) {
  auto& g = *static_cast<Global*>(global);
  auto& state = *static_cast<FlowState*>(flow->state);
  if (state.done || packet->direction != PKTB_FROM_CLIENT) return;
  const auto added = state.from_client.add(*packet);
  if (added == StreamBuffer<4096>::Added::nothing_new) return;
  try {
    RequestHead head;
    switch (parse_request_head(state.from_client.view(), head)) {
      case HeadStatus::complete:
        state.done = true;
        g.host->count(g.host, g.requests, 1);
        publish(g.host, call, "method", head.method);
        publish(g.host, call, "path", head.path);
        if (!head.host.empty()) publish(g.host, call, "host", head.host);
        return;
      case HeadStatus::incomplete:
        if (added == StreamBuffer<4096>::Added::full) {
          state.done = true;
          g.host->count(g.host, g.oversized_head, 1);
          return;
        }
        decision->action = PKTB_HOLD;  // the rest of the head is on its way
        return;
      case HeadStatus::not_http:
        state.done = true;
        g.host->count(g.host, g.not_http, 1);
        return;
      case HeadStatus::bad_header:
        state.done = true;
        g.host->count(g.host, g.bad_header, 1);
        return;
    }
  } catch (...) {  // allocation failure: no opinion
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
