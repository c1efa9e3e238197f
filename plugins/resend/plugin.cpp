// The resend plugin: a demand-dial link is brought up by a packet that still carries the
// link's old (or placeholder) source address, so its answer never comes back and the program
// waits for its own retry. resend holds the first packets of each flow leaving through the
// link while it is down; when the link's new address is known (`pktbrokerctl plugin resend
// wakeup`, or an address added to the link when `watch_addresses` is on) it releases them
// with that source address and fresh checksums. For `response_wait_ms` afterwards the flow's
// later packets get the new source too, and its replies get the old destination back, so the
// socket bound to the old address receives them. Locally sent TCP and UDP only (OUTPUT and
// INPUT; forwarded packets are not rewritten).
#include "pktbroker/plugin.h"
#include "plugins/resend/address_rewrite.hpp"
#include "plugins/resend/link_watch.hpp"
#include "plugins/resend/reply_table.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

namespace {

using namespace pktbroker::plugins::resend;
using Address = ReplyTable::Address;

constexpr std::uint32_t max_hold_packets = 16;  // the broker holds at most 16 packets a flow
// Below the 30 s a UDP flow (or a TCP one still opening) stays idle before the broker closes it.
constexpr std::uint32_t max_wakeup_wait_ms = 25'000;
constexpr std::uint32_t host_margin_ms = 1'000;  // the broker's own deadline, after the plugin's
constexpr std::uint32_t max_response_wait_ms = 3'600'000;
constexpr std::size_t held_bytes_budget = std::size_t{4} << 20;  // copies of held packets
constexpr std::size_t reply_table_capacity = 4096;

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

struct Config {
  std::string interface;
  std::uint32_t wakeup_wait_ms = 10'000;
  std::uint32_t response_wait_ms = 10'000;
  // A resolver sends A and AAAA from one socket, and a TCP connect sends its SYN again after 1,
  // 3 and 7 s: 4 keeps both whole within the default wait.
  std::uint32_t hold_packets = 4;
  bool drop_at_timeout = false;
  bool watch_addresses = false;
  bool start_up = false;  ///< addresses the link has at start-up count as up
};

/// A counter the broker shows (pktbrokerctl stats) and the plugin reads back (status).
struct Tally {
  std::uint32_t handle = UINT32_MAX;
  std::atomic<std::uint64_t> value{0};
};

struct Tallies {
  Tally held, rewritten, released, timeouts, dropped_while_held, not_held, translated_out,
      translated_in, table_full, wakeups, downs, bad_commands;
};

/// Every tally by the name the broker and `status` show it under.
std::array<std::pair<const char*, Tally*>, 12> named(Tallies& t) {
  return {{{"held", &t.held},
           {"rewritten", &t.rewritten},
           {"released", &t.released},
           {"timeouts", &t.timeouts},
           {"dropped_while_held", &t.dropped_while_held},
           {"not_held", &t.not_held},
           {"translated_out", &t.translated_out},
           {"translated_in", &t.translated_in},
           {"table_full", &t.table_full},
           {"wakeups", &t.wakeups},
           {"downs", &t.downs},
           {"bad_commands", &t.bad_commands}}};
}

/// One address family of the link: down until a wakeup brings an address.
struct LinkFamily {
  bool up = false;
  Address address{};
};

struct Global {
  const pktb_host* host = nullptr;
  Config config;
  Tallies tallies;
  std::atomic<unsigned> ifindex{0};
  std::atomic<std::size_t> held_now{0};
  std::mutex mutex;  // guards what follows; hooks run on every queue's thread, commands on others
  std::array<LinkFamily, 2> families;  // IPv4, IPv6
  ReplyTable replies{reply_table_capacity};
  std::size_t held_bytes = 0;
  std::unique_ptr<LinkWatch> watch;  // last: its thread uses the rest
};

struct HeldPacket {
  std::uint64_t id;
  std::uint8_t* bytes;
  std::uint32_t len;
};

// Plain memory, zeroed by the host; what a hold needs is allocated when the flow first holds.
struct FlowState {
  HeldPacket* held;  // hold_packets entries
  std::uint32_t held_count;
  std::uint8_t family;                 // of the held packets: 4 or 6
  std::uint64_t deadline_ns;           // when held packets stop waiting for a wakeup
  bool moved;                          // released with the new source address
  Address old_address;                 // the one it had
  ReplyKey reply;                      // its far end and its new local end
  std::vector<std::uint8_t>* scratch;  // a rewritten packet, until the host has copied it
};

void add(const Global& g, Tally& tally, std::uint64_t n = 1) {
  tally.value.fetch_add(n, std::memory_order_relaxed);
  g.host->count(g.host, tally.handle, n);
}

std::size_t family_index(int family) {
  return family == 4 ? 0 : 1;
}
std::size_t address_size(int family) {
  return family == 4 ? 4 : 16;
}

/// The transport ends of a packet resend can rewrite.
struct Ends {
  int family = 0;
  std::uint8_t protocol = 0;
  std::span<const std::uint8_t> source, destination;
};

std::optional<Ends> ends_of(const pktb_packet& packet) {
  const std::span<const std::uint8_t> bytes(packet.data, packet.len);
  if (bytes.empty()) return std::nullopt;
  Ends ends;
  ends.family = bytes[0] >> 4;
  // Whole packets only: one the queue's copy_range cut cannot get its checksums right.
  const auto length_at = [&](std::size_t at) {
    return static_cast<std::size_t>(bytes[at] << 8 | bytes[at + 1]);
  };
  if (ends.family == 4 && bytes.size() >= 20 && length_at(2) <= bytes.size()) {
    ends.protocol = bytes[9];
  } else if (ends.family == 6 && bytes.size() >= 40 && 40 + length_at(4) <= bytes.size()) {
    ends.protocol = bytes[6];
  } else {
    return std::nullopt;
  }
  if (ends.protocol != IPPROTO_TCP && ends.protocol != IPPROTO_UDP) return std::nullopt;
  ends.source = address_of(bytes, Endpoint::source);
  ends.destination = address_of(bytes, Endpoint::destination);
  return ends;
}

Address to_address(std::span<const std::uint8_t> bytes) {
  Address address{};
  std::copy_n(bytes.begin(), std::min(bytes.size(), address.size()), address.begin());
  return address;
}

LinkFamily family_state(Global& g, int family) {
  const std::lock_guard lock(g.mutex);
  return g.families[family_index(family)];
}

std::vector<std::uint8_t>& scratch(FlowState& st) {
  if (st.scratch == nullptr) st.scratch = new std::vector<std::uint8_t>();
  return *st.scratch;
}

void free_held(Global& g, FlowState& st) {
  std::size_t bytes = 0;
  for (std::uint32_t i = 0; i < st.held_count; ++i) {
    bytes += st.held[i].len;
    delete[] st.held[i].bytes;
    st.held[i] = {};
  }
  delete[] st.held;
  st.held = nullptr;
  g.held_now.fetch_sub(st.held_count, std::memory_order_relaxed);
  st.held_count = 0;
  const std::lock_guard lock(g.mutex);
  g.held_bytes -= bytes;
}

/// Keeps a copy of the packet (to release it rewritten later) and holds it.
bool hold(Global& g, pktb_call* call, FlowState& st, const pktb_packet& packet, int family,
          pktb_decision* decision) {
  {
    const std::lock_guard lock(g.mutex);
    if (g.held_bytes + packet.len > held_bytes_budget) return false;
    g.held_bytes += packet.len;
  }
  if (st.held == nullptr) st.held = new (std::nothrow) HeldPacket[g.config.hold_packets]{};
  auto* copy = st.held != nullptr ? new (std::nothrow) std::uint8_t[packet.len] : nullptr;
  if (copy == nullptr) {
    const std::lock_guard lock(g.mutex);
    g.held_bytes -= packet.len;
    return false;
  }
  std::memcpy(copy, packet.data, packet.len);
  if (st.held_count == 0) {
    st.family = static_cast<std::uint8_t>(family);
    st.deadline_ns = now_ns() + std::uint64_t{g.config.wakeup_wait_ms} * 1'000'000;
    g.host->set_timer(call, g.config.wakeup_wait_ms);
  }
  st.held[st.held_count++] = {packet.id, copy, static_cast<std::uint32_t>(packet.len)};
  g.held_now.fetch_add(1, std::memory_order_relaxed);
  add(g, g.tallies.held);
  decision->action = PKTB_HOLD;
  decision->hold_ms = g.config.wakeup_wait_ms + host_margin_ms;
  return true;
}

/// The reply-table key of a flow sent from here: its far end and its end at `local`.
ReplyKey reply_key(std::span<const std::uint8_t> packet, int family, const Address& local) {
  const std::size_t l4 = family == 4 ? std::size_t{packet[0] & 0x0fu} * 4 : 40;
  const auto port = [&](std::size_t at) {
    return at + 2 <= packet.size() ? static_cast<std::uint16_t>(packet[at] << 8 | packet[at + 1])
                                   : std::uint16_t{0};
  };
  return {family == 4 ? packet[9] : packet[6],
          static_cast<std::uint8_t>(family),
          port(l4 + 2),
          port(l4),
          to_address(address_of(packet, Endpoint::destination)),
          local};
}

std::uint64_t translate_until(const Global& g, std::uint64_t now) {
  return now + std::uint64_t{g.config.response_wait_ms} * 1'000'000;
}

/// Releases the flow's held packets if their family woke (rewritten) or their wait is over
/// (unchanged or dropped); false when they keep waiting.
bool release_held(Global& g, pktb_call* call, FlowState& st, std::uint64_t now) {
  const LinkFamily link = family_state(g, st.family);
  if (!link.up && now < st.deadline_ns) return false;
  for (std::uint32_t i = 0; i < st.held_count; ++i) {
    const HeldPacket& held = st.held[i];
    pktb_decision decision{};
    std::vector<std::uint8_t>& bytes = scratch(st);
    bytes.assign(held.bytes, held.bytes + held.len);
    const Address old_address = to_address(address_of(bytes, Endpoint::source));
    bool moved = false;
    if (!link.up) {
      decision.action = g.config.drop_at_timeout ? PKTB_DROP : PKTB_ACCEPT;
    } else if (old_address != link.address &&
               rewrite_address(bytes, Endpoint::source,
                               std::span(link.address).first(address_size(st.family)))) {
      decision.action = PKTB_ACCEPT_MODIFIED;
      decision.payload = bytes.data();
      decision.payload_len = bytes.size();
      moved = true;
    } else {
      decision.action = PKTB_ACCEPT;  // already from the new address, or not rewritable
    }
    // -1: the broker decided the packet already (its own deadline, a full queue).
    if (g.host->release(call, held.id, &decision) != 0) continue;
    add(g, !link.up ? g.tallies.timeouts : moved ? g.tallies.rewritten : g.tallies.released);
    if (moved && !st.moved) {
      st.moved = true;
      st.old_address = old_address;
      st.reply = reply_key(bytes, st.family, link.address);
    }
  }
  free_held(g, st);
  if (st.moved && g.config.response_wait_ms > 0) {
    bool kept = false;
    {
      const std::lock_guard lock(g.mutex);
      kept = g.replies.add(st.reply, st.old_address, translate_until(g, now), now);
    }
    if (!kept) add(g, g.tallies.table_full);
  }
  return true;
}

/// A later packet of a moved flow: the new source, while its translation lives (each packet,
/// either way, keeps it alive for response_wait_ms more).
void translate_out(Global& g, FlowState& st, const pktb_packet& packet, const Ends& ends,
                   std::uint64_t now, pktb_decision* decision) {
  if (to_address(ends.source) != st.old_address) return;
  std::optional<Address> live;
  {
    const std::lock_guard lock(g.mutex);
    live = g.replies.use(st.reply, now, translate_until(g, now));
  }
  if (!live) return;
  std::vector<std::uint8_t>& bytes = scratch(st);
  bytes.assign(packet.data, packet.data + packet.len);
  if (!rewrite_address(bytes, Endpoint::source,
                       std::span(st.reply.local).first(address_size(ends.family)))) {
    return;
  }
  decision->action = PKTB_ACCEPT_MODIFIED;
  decision->payload = bytes.data();
  decision->payload_len = bytes.size();
  add(g, g.tallies.translated_out);
}

/// A reply arriving at the new address for a moved flow: back to the old one.
void translate_in(Global& g, FlowState& st, const pktb_packet& packet, const Ends& ends,
                  std::uint64_t now, pktb_decision* decision) {
  const std::span<const std::uint8_t> bytes_in(packet.data, packet.len);
  // The reply's far end is its source; its local end the destination.
  ReplyKey key = reply_key(bytes_in, ends.family, to_address(ends.destination));
  std::swap(key.remote_port, key.local_port);
  key.remote = to_address(ends.source);
  std::optional<Address> old_address;
  {
    const std::lock_guard lock(g.mutex);
    old_address = g.replies.use(key, now, translate_until(g, now));
  }
  if (!old_address) return;
  std::vector<std::uint8_t>& bytes = scratch(st);
  bytes.assign(packet.data, packet.data + packet.len);
  if (!rewrite_address(bytes, Endpoint::destination,
                       std::span(*old_address).first(address_size(ends.family)))) {
    return;
  }
  decision->action = PKTB_ACCEPT_MODIFIED;
  decision->payload = bytes.data();
  decision->payload_len = bytes.size();
  add(g, g.tallies.translated_in);
}

void on_packet(void* global, pktb_call* call, pktb_flow* flow, const pktb_packet* packet,
               pktb_decision* decision) {
  auto& g = *static_cast<Global*>(global);
  auto& st = *static_cast<FlowState*>(flow->state);
  // Whatever this packet's fate, packets the flow holds keep waiting for the link.
  if (st.held_count > 0) decision->flags |= PKTB_DECISION_LEAVE_HELD;
  const unsigned link = g.ifindex.load(std::memory_order_relaxed);
  const auto ends = ends_of(*packet);
  if (link == 0 || !ends) return;
  const std::uint64_t now = now_ns();
  if (packet->in_ifindex == link && packet->out_ifindex == 0) {
    if (g.config.response_wait_ms > 0) translate_in(g, st, *packet, *ends, now, decision);
    return;
  }
  // Only flows started here (not forwarded, not answers to a peer's connection).
  if (packet->out_ifindex != link || packet->in_ifindex != 0 ||
      packet->direction != PKTB_FROM_CLIENT) {
    return;
  }
  if (st.held_count > 0 && release_held(g, call, st, now)) {  // the earlier ones go first
    decision->flags &= ~PKTB_DECISION_LEAVE_HELD;
  }
  if (st.moved) {
    if (g.config.response_wait_ms > 0) translate_out(g, st, *packet, *ends, now, decision);
    return;
  }
  if (st.held_count == 0 && family_state(g, ends->family).up) return;
  // The link is down, or this flow still waits for it.
  if (st.held_count < g.config.hold_packets && hold(g, call, st, *packet, ends->family, decision)) {
    return;
  }
  if (st.held_count == 0) {
    add(g, g.tallies.not_held);  // over the budget: the policy decides
    return;
  }
  // Beyond hold_packets: a retry of what is held (a SYN sent again) would leave from the old
  // address, and could even complete unmoved while the old address lasts. Dropped; the held
  // packets still wait.
  decision->action = PKTB_DROP;
  add(g, g.tallies.dropped_while_held);
}

void on_timer(void* global, pktb_call* call, pktb_flow* flow) {
  auto& g = *static_cast<Global*>(global);
  auto& st = *static_cast<FlowState*>(flow->state);
  if (st.held_count == 0) return;
  const std::uint64_t now = now_ns();
  if (!release_held(g, call, st, now)) {  // woken for another family: wait on
    const std::uint64_t left_ms = (st.deadline_ns - now + 999'999) / 1'000'000;
    g.host->set_timer(call, static_cast<std::uint32_t>(std::max<std::uint64_t>(left_ms, 1)));
  }
}

void flow_close(void* global, pktb_flow* flow) {
  auto& g = *static_cast<Global*>(global);
  auto& st = *static_cast<FlowState*>(flow->state);
  free_held(g, st);
  if (st.moved) {
    const std::lock_guard lock(g.mutex);
    g.replies.remove(st.reply);
  }
  delete st.scratch;
  st.scratch = nullptr;
}

// ---- the link's state, from commands and the address watch ----

const char* family_name(int family) {
  return family == 4 ? "ipv4" : "ipv6";
}

std::string to_text(int family, const Address& address) {
  std::array<char, INET6_ADDRSTRLEN> text{};
  inet_ntop(family == 4 ? AF_INET : AF_INET6, address.data(), text.data(), text.size());
  return text.data();
}

/// The link's global addresses now, the first of each family (none: not there or no address).
std::array<std::optional<Address>, 2> addresses_of(const std::string& interface) {
  std::array<std::optional<Address>, 2> found;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return found;
  for (const ifaddrs* it = list; it != nullptr; it = it->ifa_next) {
    if (it->ifa_addr == nullptr || interface != it->ifa_name) continue;
    Address address{};
    if (it->ifa_addr->sa_family == AF_INET) {
      std::memcpy(address.data(), &reinterpret_cast<const sockaddr_in*>(it->ifa_addr)->sin_addr, 4);
      if (!found[0]) found[0] = address;
    } else if (it->ifa_addr->sa_family == AF_INET6) {
      const auto* v6 = reinterpret_cast<const sockaddr_in6*>(it->ifa_addr);
      if (IN6_IS_ADDR_LINKLOCAL(&v6->sin6_addr)) continue;
      std::memcpy(address.data(), &v6->sin6_addr, 16);
      if (!found[1]) found[1] = address;
    }
  }
  freeifaddrs(list);
  return found;
}

/// Whether `address` is one of the link's own now.
bool link_has(const std::string& interface, int family, const Address& address) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return false;
  bool has = false;
  for (const ifaddrs* it = list; it != nullptr && !has; it = it->ifa_next) {
    if (it->ifa_addr == nullptr || interface != it->ifa_name) continue;
    if (family == 4 && it->ifa_addr->sa_family == AF_INET) {
      has = std::memcmp(&reinterpret_cast<const sockaddr_in*>(it->ifa_addr)->sin_addr,
                        address.data(), 4) == 0;
    } else if (family == 6 && it->ifa_addr->sa_family == AF_INET6) {
      has = std::memcmp(&reinterpret_cast<const sockaddr_in6*>(it->ifa_addr)->sin6_addr,
                        address.data(), 16) == 0;
    }
  }
  freeifaddrs(list);
  return has;
}

void take_down(Global& g) {
  const std::lock_guard lock(g.mutex);
  for (LinkFamily& family : g.families) family.up = false;
}

/// The link was made anew or removed: its index changes; gone, it is down.
void refresh_ifindex(Global& g) {
  const unsigned index = if_nametoindex(g.config.interface.c_str());
  if (g.ifindex.exchange(index, std::memory_order_relaxed) != 0 && index == 0) take_down(g);
}

/// The family is up at `address`: flows holding packets of it release them now.
void wake_family(Global& g, int family, const Address& address) {
  {
    const std::lock_guard lock(g.mutex);
    g.families[family_index(family)] = {true, address};
  }
  refresh_ifindex(g);
  add(g, g.tallies.wakeups);
  if (g.host->struct_size >= offsetof(pktb_host, wake) + sizeof(g.host->wake) &&
      g.host->wake != nullptr) {
    g.host->wake(g.host);
  }
}

/// The address went away: if it was the family's, the family is down.
void address_removed(Global& g, int family, const Address& address) {
  {
    const std::lock_guard lock(g.mutex);
    LinkFamily& state = g.families[family_index(family)];
    if (!state.up || state.address != address) return;
    state.up = false;
  }
  add(g, g.tallies.downs);
}

std::string status(Global& g, bool json) {
  std::array<LinkFamily, 2> families;
  std::size_t translations = 0;
  {
    const std::lock_guard lock(g.mutex);
    families = g.families;
    translations = g.replies.live(now_ns());
  }
  const std::size_t held = g.held_now.load(std::memory_order_relaxed);
  const auto counters = named(g.tallies);
  std::string out;
  if (json) {
    out = R"({"interface":")" + g.config.interface + "\"";
    for (int family : {4, 6}) {
      const LinkFamily& f = families[family_index(family)];
      out += std::string(R"(,")") + family_name(family) + R"(":{"up":)" +
             (f.up ? "true" : "false") + R"(,"address":)" +
             (f.up ? "\"" + to_text(family, f.address) + "\"" : "null") + "}";
    }
    out += ",\"held\":" + std::to_string(held) +
           ",\"translations\":" + std::to_string(translations) + ",\"counters\":{";
    for (const auto& [name, tally] : counters) {
      out += std::string(out.back() == '{' ? "" : ",") + "\"" + name +
             "\":" + std::to_string(tally->value.load());
    }
    return out + "}}";
  }
  out = "interface " + g.config.interface + " (index " +
        std::to_string(g.ifindex.load(std::memory_order_relaxed)) + ")\n";
  for (int family : {4, 6}) {
    const LinkFamily& f = families[family_index(family)];
    out += std::string(family_name(family)) +
           (f.up ? " up at " + to_text(family, f.address) : std::string(" down")) + "\n";
  }
  out += "held " + std::to_string(held) + " packet(s) now\ntranslations " +
         std::to_string(translations) + " flow(s) now\ncounters";
  for (const auto& [name, tally] : counters) {
    out += std::string(" ") + name + "=" + std::to_string(tally->value.load());
  }
  return out;
}

constexpr std::string_view usage =
    "commands:\n"
    "  wakeup --iface IFACE --addr ADDRESS  the link is up at ADDRESS (IPv4 or IPv6): packets\n"
    "                                       held for that family leave from it\n"
    "  down --iface IFACE                   the link went down: new flows through it are held\n"
    "  status [--json]                      the link's state, held packets and counters";

/// The value after `--name` in args, if given.
std::optional<std::string_view> option(std::span<const char* const> args, std::string_view name) {
  for (std::size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == name) return args[i + 1];
  }
  return std::nullopt;
}

/// Runs a command: true and the answer, or false and why it was refused.
std::pair<bool, std::string> run_command(Global& g, std::span<const char* const> args) {
  const std::string_view verb = args.empty() ? "" : args[0];
  if (verb == "status") {
    const bool json = args.size() > 1 && std::string_view(args[1]) == "--json";
    return {true, status(g, json)};
  }
  if (verb == "help" || verb.empty()) return {verb == "help", std::string(usage)};
  if (verb != "wakeup" && verb != "down") {
    return {false, "unknown command '" + std::string(verb) + "'\n" + std::string(usage)};
  }
  const auto iface = option(args, "--iface");
  if (!iface) return {false, std::string(verb) + " needs --iface IFACE"};
  if (*iface != g.config.interface) {
    return {false, "resend serves interface '" + g.config.interface + "', not '" +
                       std::string(*iface) + "'"};
  }
  if (verb == "down") {
    take_down(g);
    add(g, g.tallies.downs);
    return {true, g.config.interface + " is down: new flows through it are held"};
  }
  const auto text = option(args, "--addr");
  if (!text) return {false, "wakeup needs --addr ADDRESS (the link's new local address)"};
  Address address{};
  const std::string value(*text);
  int family = 0;
  if (inet_pton(AF_INET, value.c_str(), address.data()) == 1) {
    family = 4;
  } else if (inet_pton(AF_INET6, value.c_str(), address.data()) == 1) {
    family = 6;
  } else {
    return {false, "'" + value + "' is not an IPv4 or IPv6 address"};
  }
  if (!link_has(g.config.interface, family, address)) {
    return {false, value + " is not an address of " + g.config.interface};
  }
  const std::size_t waiting = g.held_now.load(std::memory_order_relaxed);
  wake_family(g, family, address);
  return {true, g.config.interface + " " + family_name(family) + " is up at " +
                    to_text(family, address) + "; " + std::to_string(waiting) +
                    " held packet(s) are released"};
}

int on_command(void* global, std::size_t argc, const char* const* argv, char* reply,
               std::size_t capacity) {
  auto& g = *static_cast<Global*>(global);
  std::pair<bool, std::string> result;
  try {
    result = run_command(g, std::span(argv, argc));
  } catch (...) {
    result = {false, "out of memory"};
  }
  if (!result.first) add(g, g.tallies.bad_commands);
  if (capacity > 0) {
    const std::size_t n = std::min(result.second.size(), capacity - 1);
    std::memcpy(reply, result.second.data(), n);
    reply[n] = '\0';
  }
  return result.first ? 0 : 1;
}

// ---- configuration ----

bool parse_number(const char* text, std::uint32_t min, std::uint32_t max, std::uint32_t& out) {
  if (text == nullptr) return true;  // the default stays
  const std::string_view value(text);
  std::uint32_t n = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (error != std::errc() || end != value.data() + value.size() || n < min || n > max) {
    return false;
  }
  out = n;
  return true;
}

bool parse_bool(const char* text, bool& out) {
  if (text == nullptr) return true;
  const std::string_view value(text);
  if (value == "true" || value == "yes")
    out = true;
  else if (value == "false" || value == "no")
    out = false;
  else
    return false;
  return true;
}

bool valid_interface(std::string_view name) {
  return !name.empty() && name.size() < IFNAMSIZ &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '_' ||
                  c == '.' || c == ':' || c == '@';
         });
}

/// Reads the config; a static message naming the key on error.
const char* configure(const pktb_host* host, Config& config) {
  const char* interface = host->config(host, "interface");
  if (interface == nullptr) return "config 'interface' is required: the demand-dial link";
  if (!valid_interface(interface)) return "config 'interface' is not an interface name";
  config.interface = interface;
  if (!parse_number(host->config(host, "wakeup_wait_ms"), 1, max_wakeup_wait_ms,
                    config.wakeup_wait_ms)) {
    return "config 'wakeup_wait_ms' must be a number of milliseconds from 1 to 25000";
  }
  if (!parse_number(host->config(host, "response_wait_ms"), 0, max_response_wait_ms,
                    config.response_wait_ms)) {
    return "config 'response_wait_ms' must be a number of milliseconds from 0 to 3600000";
  }
  if (!parse_number(host->config(host, "hold_packets"), 1, max_hold_packets, config.hold_packets)) {
    return "config 'hold_packets' must be a number from 1 to 16";
  }
  if (const char* at_timeout = host->config(host, "on_timeout"); at_timeout != nullptr) {
    const std::string_view value(at_timeout);
    if (value != "release" && value != "drop") {
      return "config 'on_timeout' must be 'release' (send unchanged) or 'drop'";
    }
    config.drop_at_timeout = value == "drop";
  }
  if (!parse_bool(host->config(host, "watch_addresses"), config.watch_addresses)) {
    return "config 'watch_addresses' must be true or false";
  }
  if (const char* start = host->config(host, "initial_state"); start != nullptr) {
    const std::string_view value(start);
    if (value != "down" && value != "up") {
      return "config 'initial_state' must be 'down' (held until a wakeup) or 'up' (the link's "
             "addresses now)";
    }
    config.start_up = value == "up";
  }
  return nullptr;
}

void* init(const pktb_host* host, const char** error) {
  if (host->struct_size < offsetof(pktb_host, wake) + sizeof(host->wake)) {
    *error = "this host is too old: resend needs pktb_host::wake (ABI 2)";
    return nullptr;
  }
  auto g = std::make_unique<Global>();
  g->host = host;
  if (const char* problem = configure(host, g->config); problem != nullptr) {
    *error = problem;
    return nullptr;
  }
  for (const auto& [name, tally] : named(g->tallies)) tally->handle = host->counter(host, name);
  refresh_ifindex(*g);
  if (g->config.start_up) {  // a restart, or a reload that made a new instance
    const auto now = addresses_of(g->config.interface);
    for (int family : {4, 6}) {
      if (const auto& address = now[family_index(family)]) {
        g->families[family_index(family)] = {true, *address};
      }
    }
  }
  Global* raw = g.get();
  try {
    g->watch = std::make_unique<LinkWatch>(
        g->config.interface, [raw] { refresh_ifindex(*raw); },
        [raw](bool added, int family, std::span<const std::uint8_t> bytes) {
          if (!raw->config.watch_addresses) return;
          if (added) {
            wake_family(*raw, family, to_address(bytes));
          } else {
            address_removed(*raw, family, to_address(bytes));
          }
        });
  } catch (const std::exception&) {
    *error = "cannot watch the interface (rtnetlink)";
    return nullptr;
  }
  return g.release();
}

void shutdown(void* global) {
  delete static_cast<Global*>(global);
}

const pktb_registration registrations[] = {
    {IPPROTO_TCP, 1, 0, 0},
    {IPPROTO_UDP, 1, 0, 0},
};

const pktb_plugin descriptor = {
    .abi_version = PKTB_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(pktb_plugin),
    .name = "resend",
    .version = "1.0",
    .registrations = registrations,
    .registration_count = 2,
    .fields = nullptr,
    .init = init,
    .shutdown = shutdown,
    .flow_state_size = sizeof(FlowState),
    .flow_close = flow_close,
    .on_packet = on_packet,
    .on_timer = on_timer,
    .on_command = on_command,
};

}  // namespace

extern "C" PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  return &descriptor;
}
