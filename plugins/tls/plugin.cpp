// The tls plugin: publishes tls.sni from the ClientHello (TCP ports 443 and 8443), gathered
// across records and segments; segments before the ClientHello is complete are held.
#include "pktbroker/plugin.h"
#include "plugins/common/stream_buffer.hpp"
#include "plugins/tls/client_hello.hpp"

#include <new>
#include <string>

namespace {

using pktbroker::plugins::StreamBuffer;
using namespace pktbroker::plugins::tls;
using Buffer = StreamBuffer<8192>;

struct Global {
  const pktb_host* host;
  std::uint32_t hellos;
  std::uint32_t no_sni;
  std::uint32_t not_tls;
  std::uint32_t malformed;
  std::uint32_t oversized_hello;
};

struct FlowState {
  bool done;
  Buffer from_client;
};

void* init(const pktb_host* host, const char** error) {
  auto* g = new (std::nothrow) Global{};
  if (g == nullptr) {
    *error = "out of memory";
    return nullptr;
  }
  g->host = host;
  g->hellos = host->counter(host, "client_hellos");
  g->no_sni = host->counter(host, "no_sni");
  g->not_tls = host->counter(host, "not_tls");
  g->malformed = host->counter(host, "malformed");
  g->oversized_hello = host->counter(host, "oversized_hello");
  return g;
}

void shutdown(void* global) {
  delete static_cast<Global*>(global);
}

void on_packet(void* global, pktb_call* call, pktb_flow* flow, const pktb_packet* packet,
               pktb_decision* decision) {
  auto& g = *static_cast<Global*>(global);
  auto& state = *static_cast<FlowState*>(flow->state);
  if (state.done || packet->direction != PKTB_FROM_CLIENT) return;
  const auto added = state.from_client.add(*packet);
  if (added == Buffer::Added::nothing_new) return;
  try {
    std::string server_name;
    const HelloStatus status = parse_client_hello(state.from_client.view(), server_name);
    if (status == HelloStatus::incomplete && added != Buffer::Added::full) {
      decision->action = PKTB_HOLD;  // the rest of the ClientHello is on its way
      return;
    }
    state.done = true;
    switch (status) {
      case HelloStatus::server_name:
        g.host->count(g.host, g.hellos, 1);
        g.host->set_field(call, "sni", server_name.data(), server_name.size());
        break;
      case HelloStatus::no_sni:
        g.host->count(g.host, g.hellos, 1);
        g.host->count(g.host, g.no_sni, 1);
        break;
      case HelloStatus::incomplete: g.host->count(g.host, g.oversized_hello, 1); break;
      case HelloStatus::not_tls: g.host->count(g.host, g.not_tls, 1); break;
      case HelloStatus::malformed: g.host->count(g.host, g.malformed, 1); break;
    }
  } catch (...) {  // allocation failure: no opinion
    state.done = true;
  }
}

const pktb_registration registrations[] = {{6, 0, 443, 443}, {6, 0, 8443, 8443}};
const char* const fields[] = {"sni", nullptr};

const pktb_plugin descriptor = {
    .abi_version = PKTB_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(pktb_plugin),
    .name = "tls",
    .version = "1.0",
    .registrations = registrations,
    .registration_count = 2,
    .fields = fields,
    .init = init,
    .shutdown = shutdown,
    .flow_state_size = sizeof(FlowState),
    .on_packet = on_packet,
};

}  // namespace

extern "C" PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  return &descriptor;
}
