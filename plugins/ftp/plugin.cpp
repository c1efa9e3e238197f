// The ftp plugin: reads the control connection (TCP port 21) and announces each data
// connection a PASV/EPSV reply or a PORT/EPRT command sets up, so it inherits the control
// connection's verdict while every other high port can stay closed. In replay it announces the
// recorded data connections, then, as the live server announces its own ports, has each
// replayed to the live port; a server turn ends with as many complete replies as recorded.
#include "pktbroker/plugin.h"
#include "plugins/common/stream_buffer.hpp"
#include "plugins/ftp/ftp_line.hpp"

#include <algorithm>
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

/// Final reply lines ("226 Transfer complete."; not "230-" continuations) in complete lines.
std::size_t final_replies(std::string_view text) {
  std::size_t count = 0;
  std::size_t at = 0;
  while (true) {
    const auto end = text.find('\n', at);
    if (end == std::string_view::npos) return count;
    const std::string_view line = text.substr(at, end - at);
    if (line.size() >= 4 && line[3] == ' ' && line[0] >= '1' && line[0] <= '5') ++count;
    at = end + 1;
  }
}

void replay_recorded(void* global, pktb_call* call, pktb_flow* flow, const pktb_packet* packet) {
  on_packet(global, call, flow, packet, nullptr);
}

pktb_turn replay_server_data(void* global, pktb_call* call, pktb_flow* flow,
                             const std::uint8_t* data, std::size_t len,
                             const std::uint8_t* recorded, std::size_t recorded_len) {
  if (flow->parent_id != 0) return PKTB_EXPECT_MORE;  // a data connection: until it closes
  const std::string_view live(reinterpret_cast<const char*>(data), len);
  const std::string_view expected(reinterpret_cast<const char*>(recorded), recorded_len);
  if (final_replies(live) < std::max<std::size_t>(final_replies(expected), 1)) {
    return PKTB_EXPECT_MORE;
  }
  auto& g = *static_cast<Global*>(global);
  std::size_t at = 0;
  while (at < live.size()) {
    const auto end = std::min(live.find('\n', at), live.size());
    std::string_view line = live.substr(at, end - at);
    if (line.ends_with('\r')) line.remove_suffix(1);
    DataEndpoint endpoint;
    const Announcement kind = parse_line(line, true, endpoint);
    if (kind == Announcement::passive || kind == Announcement::extended_passive) {
      announce(g, call, *flow, kind, endpoint);
    }
    at = end + 1;
  }
  return PKTB_TURN_OVER;
}

/// Blanks the data port in 227 and 229 replies: the live server picks another one.
std::size_t replay_mask(void*, pktb_flow*, std::uint8_t* data, std::size_t len) {
  std::size_t out = 0;
  std::size_t at = 0;
  while (at < len) {
    std::size_t end = at;
    while (end < len && data[end] != '\n') ++end;
    end = std::min(end + 1, len);
    const std::string_view line(reinterpret_cast<const char*>(data + at), end - at);
    const auto open = line.find('(');
    const auto close = line.rfind(')');
    if ((line.starts_with("227") || line.starts_with("229")) && open != std::string_view::npos &&
        close != std::string_view::npos && open < close) {
      std::memmove(data + out, data + at, open + 1);
      out += open + 1;
      std::memmove(data + out, data + at + close, end - at - close);  // ")..." to the line end
      out += end - at - close;
    } else {
      std::memmove(data + out, data + at, end - at);
      out += end - at;
    }
    at = end;
  }
  return out;
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
    .replay_recorded = replay_recorded,
    .replay_server_data = replay_server_data,
    .replay_mask = replay_mask,
};

}  // namespace

extern "C" PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  return &descriptor;
}
