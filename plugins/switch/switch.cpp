// The `switch` channel delivery policy: an Ethernet learning switch. A frame's source MAC is
// learnt for its sender; a frame to a learnt unicast MAC goes to that member alone; broadcast,
// multicast and unknown destinations are flooded to every member but the sender. Only members
// that may receive are learnt. Entries age
// out after `ageing_ms` (config, default 300000) and leave with their member; a table holds at
// most `max_macs` (config, default 4096) entries, and a full table learns nothing new (counted).
#include <pktbroker/plugin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <unordered_map>

namespace {

constexpr std::size_t mac_size = 6;
constexpr std::size_t ethernet_header = 14;

struct Global {
  const pktb_host* host = nullptr;
  std::uint64_t ageing_ns = 300'000ULL * 1'000'000;
  std::size_t max_macs = 4096;
  std::uint32_t learnt = 0, flooded = 0, unicast = 0, aged = 0, table_full = 0, filtered = 0;
};

struct Station {
  std::uint32_t member;
  std::uint64_t seen_ns;
};

struct Channel {
  std::unordered_map<std::uint64_t, Station> table;  // MAC -> where it was last seen
};

std::uint64_t mac_at(const std::uint8_t* at) {
  std::uint64_t mac = 0;
  for (std::size_t i = 0; i < mac_size; ++i) mac = (mac << 8) | at[i];
  return mac;
}

bool config_number(const pktb_host* host, const char* key, std::uint64_t& value) {
  const char* text = host->config(host, key);
  if (text == nullptr) return true;
  char* end = nullptr;
  const unsigned long long parsed = std::strtoull(text, &end, 10);
  if (end == text || *end != '\0' || parsed == 0) return false;
  value = parsed;
  return true;
}

void* switch_init(const pktb_host* host, const char** error) {
  auto* self = new (std::nothrow) Global;
  if (self == nullptr) {
    *error = "out of memory";
    return nullptr;
  }
  self->host = host;
  std::uint64_t ageing_ms = self->ageing_ns / 1'000'000;
  std::uint64_t max_macs = self->max_macs;
  if (!config_number(host, "ageing_ms", ageing_ms) || !config_number(host, "max_macs", max_macs)) {
    delete self;
    *error = "config ageing_ms and max_macs must be positive whole numbers";
    return nullptr;
  }
  self->ageing_ns = ageing_ms * 1'000'000;
  self->max_macs = max_macs;
  self->learnt = host->counter(host, "learnt");
  self->flooded = host->counter(host, "flooded");
  self->unicast = host->counter(host, "unicast");
  self->aged = host->counter(host, "aged");
  self->table_full = host->counter(host, "table_full");
  self->filtered = host->counter(host, "filtered");
  return self;
}

void switch_shutdown(void* global) {
  delete static_cast<Global*>(global);
}

void* switch_open(void*, const char*, std::uint8_t link, const char** error) {
  if (link != PKTB_LINK_ETHERNET) {
    *error = "the switch policy needs an ethernet channel";
    return nullptr;
  }
  auto* channel = new (std::nothrow) Channel;
  if (channel == nullptr) *error = "out of memory";
  return channel;
}

void switch_close(void*, void* channel) {
  delete static_cast<Channel*>(channel);
}

void switch_leave(void*, void* state, std::uint32_t member) {
  auto& table = static_cast<Channel*>(state)->table;
  std::erase_if(table, [member](const auto& entry) { return entry.second.member == member; });
}

std::size_t flood(const pktb_channel_frame* frame, std::uint32_t* out, std::size_t capacity) {
  std::size_t count = 0;
  for (std::size_t i = 0; i < frame->member_count && count < capacity; ++i) {
    if (frame->members[i] != frame->from) out[count++] = frame->members[i];
  }
  return count;
}

std::size_t switch_frame(void* global, void* state, const pktb_channel_frame* frame,
                         std::uint32_t* out, std::size_t capacity) noexcept {
  auto& self = *static_cast<Global*>(global);
  auto& table = static_cast<Channel*>(state)->table;
  const pktb_host* host = self.host;
  if (frame->len < ethernet_header) return 0;  // the host refuses these before; be safe
  const std::uint64_t now = frame->timestamp_ns;
  const std::uint64_t destination = mac_at(frame->data);
  const std::uint64_t source = mac_at(frame->data + mac_size);
  const bool source_unicast = (frame->data[mac_size] & 1) == 0;
  // Only a member that may receive is learnt: a send-only member claiming another's MAC would
  // otherwise draw that station's frames to where they cannot be delivered.
  const bool may_receive = std::find(frame->members, frame->members + frame->member_count,
                                     frame->from) != frame->members + frame->member_count;
  try {
    if (source_unicast && may_receive) {
      const auto found = table.find(source);
      if (found != table.end()) {
        found->second = {frame->from, now};
      } else {
        if (table.size() >= self.max_macs) {
          std::erase_if(table,
                        [&](const auto& e) { return now - e.second.seen_ns > self.ageing_ns; });
        }
        if (table.size() < self.max_macs) {
          table.emplace(source, Station{frame->from, now});
          host->count(host, self.learnt, 1);
        } else {
          host->count(host, self.table_full, 1);
        }
      }
    }
  } catch (...) {  // out of memory: nothing learnt, the frame is still delivered
  }
  if ((frame->data[0] & 1) == 0) {  // unicast destination
    const auto found = table.find(destination);
    if (found != table.end()) {
      if (now - found->second.seen_ns > self.ageing_ns) {
        table.erase(found);
        host->count(host, self.aged, 1);
      } else if (found->second.member == frame->from) {
        host->count(host, self.filtered, 1);  // it lives where it came from
        return 0;
      } else if (capacity > 0) {
        host->count(host, self.unicast, 1);
        out[0] = found->second.member;
        return 1;
      }
    }
  }
  host->count(host, self.flooded, 1);
  return flood(frame, out, capacity);
}

const pktb_plugin descriptor = [] {
  pktb_plugin d{};
  d.abi_version = PKTB_PLUGIN_ABI_VERSION;
  d.struct_size = sizeof(pktb_plugin);
  d.name = "switch";
  d.version = "1.0";
  d.init = switch_init;
  d.shutdown = switch_shutdown;
  d.channel_open = switch_open;
  d.channel_close = switch_close;
  d.channel_leave = switch_leave;
  d.channel_frame = switch_frame;
  return d;
}();

}  // namespace

extern "C" PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  return &descriptor;
}
