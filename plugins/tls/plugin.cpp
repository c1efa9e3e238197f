// The tls plugin: publishes tls.sni from the ClientHello (TCP ports 443 and 8443), gathered
// across records and segments (up to a 16 KiB ClientHello), in order even when segments arrive
// out of order; segments before the ClientHello is complete are held.
#include "pktbroker/plugin.h"
#include "plugins/common/stream_buffer.hpp"
#include "plugins/tls/client_hello.hpp"

#include <new>
#include <string>

namespace {

using pktbroker::plugins::ByteBudget;
using pktbroker::plugins::TcpStream;
using namespace pktbroker::plugins::tls;

// Data kept ahead of a gap: a ClientHello's worth, with record headers.
constexpr std::size_t max_ahead = 2 * max_hello;
constexpr std::size_t budget_bytes = std::size_t{64} * 1024 * 1024;

struct Global {
  const pktb_host* host = nullptr;
  ByteBudget budget{budget_bytes};  // bytes held across every flow
  std::uint32_t hellos = 0;
  std::uint32_t no_sni = 0;
  std::uint32_t not_tls = 0;
  std::uint32_t malformed = 0;
  std::uint32_t no_buffer = 0;
  std::uint32_t out_of_order = 0;
  std::uint32_t reorder_overflow = 0;
};

// Plain memory, zeroed by the host; buffers only while a ClientHello spans segments.
struct FlowState {
  bool done;
  TcpStream from_client;
  HelloReader hello;
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
  g->no_buffer = host->counter(host, "no_buffer");
  g->out_of_order = host->counter(host, "out_of_order");
  g->reorder_overflow = host->counter(host, "reorder_overflow");
  return g;
}

void shutdown(void* global) {
  delete static_cast<Global*>(global);
}

void finish(Global& g, FlowState& state) {
  state.done = true;
  state.hello.clear(&g.budget);
  state.from_client.clear(&g.budget);
}

void flow_close(void* global, pktb_flow* flow) {
  finish(*static_cast<Global*>(global), *static_cast<FlowState*>(flow->state));
}

void on_packet(void* global, pktb_call* call, pktb_flow* flow, const pktb_packet* packet,
               pktb_decision* decision) {
  auto& g = *static_cast<Global*>(global);
  auto& state = *static_cast<FlowState*>(flow->state);
  if (state.done || packet->direction != PKTB_FROM_CLIENT) return;
  try {
    std::span<const std::uint8_t> fresh;
    switch (state.from_client.take(*packet, fresh, max_ahead, &g.budget)) {
      case TcpStream::Added::nothing_new: return;
      case TcpStream::Added::kept_ahead:  // read when the gap fills; held until then
        g.host->count(g.host, g.out_of_order, 1);
        decision->action = PKTB_HOLD;
        return;
      case TcpStream::Added::lost:  // a second gap: dropped (with inspect), read when sent again
        g.host->count(g.host, g.reorder_overflow, 1);
        decision->action = PKTB_DROP;
        return;
      case TcpStream::Added::data: break;
    }
    std::string server_name;
    HelloStatus status = state.hello.add(fresh, server_name, &g.budget);
    if (status == HelloStatus::incomplete) {
      if (const auto more = state.from_client.resume(&g.budget); !more.empty()) {
        status = state.hello.add(more, server_name, &g.budget);
        state.from_client.done_ahead(&g.budget);
      }
    }
    if (status == HelloStatus::incomplete) {
      decision->action = PKTB_HOLD;  // the rest of the ClientHello is on its way
      return;
    }
    finish(g, state);
    switch (status) {
      case HelloStatus::server_name:
        g.host->count(g.host, g.hellos, 1);
        g.host->set_field(call, "sni", server_name.data(), server_name.size());
        break;
      case HelloStatus::no_sni:
        g.host->count(g.host, g.hellos, 1);
        g.host->count(g.host, g.no_sni, 1);
        break;
      case HelloStatus::incomplete: break;
      case HelloStatus::not_tls: g.host->count(g.host, g.not_tls, 1); break;
      case HelloStatus::malformed: g.host->count(g.host, g.malformed, 1); break;
      case HelloStatus::no_buffer: g.host->count(g.host, g.no_buffer, 1); break;
    }
  } catch (...) {  // allocation failure: no opinion
    finish(g, state);
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
    .flow_close = flow_close,
    .on_packet = on_packet,
};

}  // namespace

extern "C" PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  return &descriptor;
}
