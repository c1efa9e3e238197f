// The ftp plugin: reads the control connection (TCP port 21) and announces each data
// connection a PASV/EPSV reply or a PORT/EPRT command sets up, so it inherits the control
// connection's verdict while every other high port can stay closed. Like the kernel's
// nf_conntrack_ftp helper it refuses announcements naming another host than the control
// connection's own ends (FTP bounce), and it keeps at most a few announcements per control
// connection outstanding. In replay it announces the recorded data connections, then, as the
// live server announces its own ports, has each replayed to the live port; a PORT/EPRT command
// is rewritten to name where pktreplay listens for the live server's data connection; a server
// turn ends with as many complete replies as recorded.
#include "pktbroker/plugin.h"
#include "plugins/common/stream_buffer.hpp"
#include "plugins/ftp/ftp_line.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <unordered_map>

namespace {

using pktbroker::plugins::HeldBytes;
using pktbroker::plugins::StreamCursor;
using namespace pktbroker::plugins::ftp;

constexpr std::size_t max_line = 1024;  // longer lines are skipped (counted)
constexpr std::uint32_t expectation_ms = 30'000;
/// Announcements a control connection may have outstanding (not yet connected, not expired):
/// beyond it a new one is refused (the ABI cannot withdraw an older one to replace it).
constexpr std::size_t max_outstanding = 4;

struct FlowState;

struct Global {
  const pktb_host* host = nullptr;
  std::uint32_t data_connections = 0;
  std::uint32_t malformed = 0;
  std::uint32_t long_lines = 0;
  std::uint32_t refused = 0;
  std::uint32_t foreign_address = 0;
  std::uint32_t over_limit = 0;
  // Control connections with outstanding announcements, by flow id: a data connection's
  // flow_open (on any queue's thread) frees its parent's slot.
  std::mutex mutex;
  std::unordered_map<std::uint64_t, FlowState*> announcing;
};

/// A data connection announced and not yet seen.
struct Outstanding {
  std::uint64_t expires_ns;  ///< 0: a free slot
  std::uint16_t port;        ///< the data connection's server port
};

// Plain memory, zeroed by the host; a line is kept on the heap only while it spans segments.
struct Direction {
  StreamCursor cursor;
  HeldBytes line;
};

struct FlowState {
  bool registered;  // in Global::announcing
  Direction from_client;
  Direction from_server;
  Outstanding outstanding[max_outstanding];  // guarded by Global::mutex once registered
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
  g->foreign_address = host->counter(host, "foreign_address");
  g->over_limit = host->counter(host, "expectations_over_limit");
  return g;
}

void shutdown(void* global) {
  delete static_cast<Global*>(global);
}

// A data connection of a control connection opens: its announcement is used.
int flow_open(void* global, pktb_call*, pktb_flow* flow) {
  if (flow->parent_id == 0) return 0;
  auto& g = *static_cast<Global*>(global);
  std::lock_guard lock(g.mutex);
  const auto found = g.announcing.find(flow->parent_id);
  if (found == g.announcing.end()) return 0;
  for (Outstanding& slot : found->second->outstanding) {
    if (slot.expires_ns != 0 && slot.port == flow->tuple.server_port) {
      slot.expires_ns = 0;
      break;
    }
  }
  return 0;
}

void flow_close(void* global, pktb_flow* flow) {
  auto& g = *static_cast<Global*>(global);
  auto& state = *static_cast<FlowState*>(flow->state);
  state.from_client.line.clear(nullptr);
  state.from_server.line.clear(nullptr);
  if (state.registered) {
    std::lock_guard lock(g.mutex);
    g.announcing.erase(flow->id);
    state.registered = false;
  }
}

bool same_address(std::uint8_t family, const std::uint8_t* a, const std::uint8_t* b) {
  return std::memcmp(a, b, family == 4 ? 4 : 16) == 0;
}

// Takes a slot for a new announcement (live traffic only); false when all are outstanding.
bool take_slot(Global& g, pktb_flow& control, std::uint16_t port, std::uint64_t now_ns) {
  std::lock_guard lock(g.mutex);
  auto& state = *static_cast<FlowState*>(control.state);
  if (!state.registered) {
    try {
      g.announcing.emplace(control.id, &state);
    } catch (...) {
      return false;
    }
    state.registered = true;
  }
  for (Outstanding& slot : state.outstanding) {
    if (slot.expires_ns == 0 || slot.expires_ns <= now_ns) {
      slot = {now_ns + std::uint64_t{expectation_ms} * 1'000'000, port};
      return true;
    }
  }
  return false;
}

// `now_ns` is the packet's time on live traffic, 0 in replay (where announcements are neither
// checked against the recorded addresses nor bounded).
void announce(Global& g, pktb_call* call, pktb_flow& control, Announcement kind,
              const DataEndpoint& endpoint, std::uint64_t now_ns) {
  const pktb_tuple& tuple = control.tuple;
  if (now_ns != 0 && kind != Announcement::extended_passive) {
    // PORT/EPRT must name the client, 227 the server (as nf_conntrack_ftp requires): anything
    // else would open a hole to a third host (FTP bounce).
    const std::uint8_t* own = kind == Announcement::active ? tuple.client_addr : tuple.server_addr;
    if (endpoint.family != tuple.family ||
        !same_address(tuple.family, endpoint.address.data(), own)) {
      g.host->count(g.host, g.foreign_address, 1);
      return;
    }
  }
  if (now_ns != 0 && !take_slot(g, control, endpoint.port, now_ns)) {
    g.host->count(g.host, g.over_limit, 1);
    return;
  }
  pktb_tuple pattern{};
  pattern.protocol = 6;
  pattern.server_port = endpoint.port;
  if (kind == Announcement::active) {  // the server connects to the client
    pattern.family = endpoint.family;
    std::memcpy(pattern.client_addr, tuple.server_addr, 16);
    std::memcpy(pattern.server_addr, endpoint.address.data(), 16);
  } else {  // the client connects to the server
    pattern.family = kind == Announcement::passive ? endpoint.family : tuple.family;
    std::memcpy(pattern.client_addr, tuple.client_addr, 16);
    std::memcpy(pattern.server_addr,
                kind == Announcement::passive ? endpoint.address.data() : tuple.server_addr, 16);
  }
  // Replay: a v6 control connection may announce a v4 address: the other end's address is
  // then unknown, and only the announced endpoint binds the expectation.
  std::uint32_t wildcards = PKTB_ANY_CLIENT_PORT;
  if (pattern.family != tuple.family) wildcards |= PKTB_ANY_CLIENT_ADDR;
  if (g.host->expect(call, &pattern, wildcards, expectation_ms) == 0) {
    g.host->count(g.host, g.data_connections, 1);
  } else {
    g.host->count(g.host, g.refused, 1);
  }
}

void read_line(Global& g, pktb_call* call, pktb_flow& flow, std::string_view line, bool from_server,
               std::uint64_t now_ns) {
  if (line.ends_with('\r')) line.remove_suffix(1);
  DataEndpoint endpoint;
  const Announcement kind = parse_line(line, from_server, endpoint);
  if (kind == Announcement::malformed) {
    g.host->count(g.host, g.malformed, 1);
  } else if (kind != Announcement::none) {
    announce(g, call, flow, kind, endpoint, now_ns);
  }
}

// Every complete line of the new bytes, read in place; a line still arriving is kept.
void read_lines(Global& g, pktb_call* call, pktb_flow& flow, Direction& direction,
                std::span<const std::uint8_t> fresh, bool from_server, std::uint64_t now_ns) {
  const auto text_of = [](std::span<const std::uint8_t> bytes) {
    return std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  };
  if (!direction.line.empty()) {  // complete the line kept from earlier segments
    const auto end = text_of(fresh).find('\n');
    const std::size_t part = end == std::string_view::npos ? fresh.size() : end + 1;
    if (!direction.line.append(fresh.first(part), max_line, nullptr)) {
      g.host->count(g.host, g.long_lines, 1);  // no line ends within the limit: skipped
      direction.line.clear(nullptr);
      if (end == std::string_view::npos) return;
    } else if (end == std::string_view::npos) {
      return;
    } else {
      const auto kept = text_of(direction.line.view());
      read_line(g, call, flow, kept.substr(0, kept.size() - 1), from_server, now_ns);
      direction.line.clear(nullptr);
    }
    fresh = fresh.subspan(part);
  }
  const std::string_view text = text_of(fresh);
  std::size_t at = 0;
  while (true) {
    const auto end = text.find('\n', at);
    if (end == std::string_view::npos) break;
    read_line(g, call, flow, text.substr(at, end - at), from_server, now_ns);
    at = end + 1;
  }
  if (at == text.size()) return;
  if (!direction.line.append(fresh.subspan(at), max_line, nullptr)) {
    g.host->count(g.host, g.long_lines, 1);
  }
}

void on_packet(void* global, pktb_call* call, pktb_flow* flow, const pktb_packet* packet,
               pktb_decision* decision) {
  if (flow->parent_id != 0) return;  // a data connection: nothing to read
  auto& g = *static_cast<Global*>(global);
  auto& state = *static_cast<FlowState*>(flow->state);
  const bool from_server = packet->direction == PKTB_FROM_SERVER;
  Direction& direction = from_server ? state.from_server : state.from_client;
  std::span<const std::uint8_t> fresh;
  if (direction.cursor.take(*packet, fresh) != StreamCursor::Added::data) return;
  // Live traffic (replay_recorded passes no decision) is checked and bounded.
  const std::uint64_t now_ns =
      decision != nullptr ? std::max<std::uint64_t>(packet->timestamp_ns, 1) : 0;
  read_lines(g, call, *flow, direction, fresh, from_server, now_ns);
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

/// "PORT a,b,c,d,p1,p2" (IPv4) or "EPRT |2|addr|port|" naming where pktreplay listens.
std::string data_port_command(bool extended, std::uint8_t family, const std::uint8_t* address,
                              std::uint16_t port) {
  if (!extended && family == 4) {
    return "PORT " + std::to_string(address[0]) + "," + std::to_string(address[1]) + "," +
           std::to_string(address[2]) + "," + std::to_string(address[3]) + "," +
           std::to_string(port >> 8) + "," + std::to_string(port & 0xff);
  }
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(family == 4 ? AF_INET : AF_INET6, address, text, sizeof text);
  return std::string("EPRT |") + (family == 4 ? "1" : "2") + "|" + text + "|" +
         std::to_string(port) + "|";
}

// Replay: an active-mode data connection is made by the live server to pktreplay, which
// listens where the rewritten PORT/EPRT command says.
int replay_client_data(void* global, pktb_call* call, pktb_flow* flow, std::uint8_t* data,
                       std::size_t* len, std::size_t capacity) {
  auto& g = *static_cast<Global*>(global);
  if (flow->parent_id != 0 ||
      g.host->struct_size < offsetof(pktb_host, replay_listen) + sizeof g.host->replay_listen) {
    return 0;
  }
  try {
    const std::string_view turn(reinterpret_cast<const char*>(data), *len);
    std::string out;
    std::size_t at = 0;
    while (at < turn.size()) {
      const std::size_t end = std::min(turn.find('\n', at), turn.size() - 1) + 1;
      std::string_view line = turn.substr(at, end - at);
      at = end;
      const bool crlf = line.ends_with("\r\n");
      std::string_view command = line.substr(0, line.size() - (crlf ? 2 : line.ends_with('\n')));
      DataEndpoint endpoint;
      std::uint8_t address[16] = {};
      std::uint16_t port = 0;
      if (parse_line(command, false, endpoint) != Announcement::active ||
          g.host->replay_listen(call, address, &port) != 0) {
        out.append(line);
        continue;
      }
      const bool extended = command.size() >= 4 && (command[0] == 'E' || command[0] == 'e');
      out += data_port_command(extended, flow->tuple.family, address, port);
      out += crlf ? "\r\n" : "\n";
    }
    if (out.size() > capacity) return 0;
    std::copy(out.begin(), out.end(), data);  // a byte buffer, not a C string
    *len = out.size();
  } catch (...) {  // allocation failure: the turn goes as recorded
  }
  return 0;
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
      announce(g, call, *flow, kind, endpoint, 0);
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
    .flow_open = flow_open,
    .flow_close = flow_close,
    .on_packet = on_packet,
    .replay_recorded = replay_recorded,
    .replay_client_data = replay_client_data,
    .replay_server_data = replay_server_data,
    .replay_mask = replay_mask,
};

}  // namespace

extern "C" PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  return &descriptor;
}
