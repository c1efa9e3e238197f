// The ftp plugin: reads the control connection (TCP port 21) and announces each data
// connection a PASV/EPSV reply or a PORT/EPRT command sets up, so it inherits the control
// connection's verdict while every other high port can stay closed.
#include "pktbroker/plugin.h"
#include "plugins/common/stream_buffer.hpp"
#include "plugins/ftp/ftp_line.hpp"

#include <cstring>
#include <new>
#include <string_view>

namespace {

using pktbroker::plugins::StreamBuffer;
using namespace pktbroker::plugins::ftp;
using Buffer = StreamBuffer<1024>;

struct Global {
  const pktb_host* host;
  std::uint32_t data_connections;
  std::uint32_t malformed;
  std::uint32_t long_lines;
  std::uint32_t refused;
};

struct FlowState {
  Buffer from_client;
  Buffer from_server;
};

void* init(const pktb_host* host, const char** error) {
  auto* g = new (std::nothrow) Global{};
  if (g == nullptr) {
    *error = "out of memory";
    return nullptr;
  }
  g->host = host;
  g->data_connections = host->counter(host, "data_connections");
  g->malformed = host->counter(host, "malformed");
  g->long_lines = host->counter(host, "long_lines");
  g->refused = host->counter(host, "expectations_refused");
  return g;
}

void shutdown(void* global) {
  delete static_cast<Global*>(global);
}

void announce(Global& g, pktb_call* call, const pktb_flow& control, Announcement kind,
              const DataEndpoint& endpoint) {
  pktb_tuple pattern{};
  pattern.protocol = 6;
  pattern.server_port = endpoint.port;
  if (kind == Announcement::active) {  // the server connects to the client
    pattern.family = endpoint.family;
    std::memcpy(pattern.client_addr, control.tuple.server_addr, 16);
    std::memcpy(pattern.server_addr, endpoint.address.data(), 16);
  } else {  // the client connects to the server
    pattern.family = kind == Announcement::passive ? endpoint.family : control.tuple.family;
    std::memcpy(pattern.client_addr, control.tuple.client_addr, 16);
    std::memcpy(pattern.server_addr,
                kind == Announcement::passive ? endpoint.address.data() : control.tuple.server_addr,
                16);
  }
  // A v6 control connection may announce a v4 address: the other end's address is then
  // unknown, and only the announced endpoint binds the expectation.
  std::uint32_t wildcards = PKTB_ANY_CLIENT_PORT;
  if (pattern.family != control.tuple.family) wildcards |= PKTB_ANY_CLIENT_ADDR;
  if (g.host->expect(call, &pattern, wildcards, 30'000) == 0) {
    g.host->count(g.host, g.data_connections, 1);
  } else {
    g.host->count(g.host, g.refused, 1);
  }
}

void read_lines(Global& g, pktb_call* call, const pktb_flow& flow, Buffer& buffer,
                bool from_server) {
  while (true) {
    const auto bytes = buffer.view();
    const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    const auto end = text.find('\n');
    if (end == std::string_view::npos) {
      if (buffer.size == sizeof(buffer.bytes)) {  // no line ends within the buffer
        g.host->count(g.host, g.long_lines, 1);
        buffer.consume(buffer.size);
      }
      return;
    }
    std::string_view line = text.substr(0, end);
    if (line.ends_with('\r')) line.remove_suffix(1);
    DataEndpoint endpoint;
    const Announcement kind = parse_line(line, from_server, endpoint);
    if (kind == Announcement::malformed) {
      g.host->count(g.host, g.malformed, 1);
    } else if (kind != Announcement::none) {
      announce(g, call, flow, kind, endpoint);
    }
    buffer.consume(end + 1);
  }
}

void on_packet(void* global, pktb_call* call, pktb_flow* flow, const pktb_packet* packet,
               pktb_decision* /*decision*/) {
  if (flow->parent_id != 0) return;  // a data connection: nothing to read
  auto& g = *static_cast<Global*>(global);
  auto& state = *static_cast<FlowState*>(flow->state);
  const bool from_server = packet->direction == PKTB_FROM_SERVER;
  Buffer& buffer = from_server ? state.from_server : state.from_client;
  if (buffer.add(*packet) == Buffer::Added::nothing_new) return;
  read_lines(g, call, *flow, buffer, from_server);
}

const pktb_registration registrations[] = {{6, 0, 21, 21}};

const pktb_plugin descriptor = {
    .abi_version = PKTB_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(pktb_plugin),
    .name = "ftp",
    .version = "1.0",
    .registrations = registrations,
    .registration_count = 1,
    .fields = nullptr,
    .init = init,
    .shutdown = shutdown,
    .flow_state_size = sizeof(FlowState),
    .on_packet = on_packet,
};

}  // namespace

extern "C" PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  return &descriptor;
}
