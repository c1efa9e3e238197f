// The event log (`events:` in the policy): one JSON object a line in Suricata's EVE conventions
// (timestamp, event_type, src_ip, src_port, dest_ip, dest_port, proto, flow_id, then
// pktbroker's own fields and the plugins' as dns/http/tls objects), for Filebeat, Vector or
// any log shipper. Queues hand events over through a bounded queue; a writer thread formats
// and writes them, so the packet path never waits for the disk. Events past the rate limit or
// the queue's bound are counted, not written.
#pragma once

#include "broker/packet_meta.hpp"
#include "broker/policy/policy.hpp"
#include "pktbroker/packet_view.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace pktbroker {

/// Who a packet is, captured when it arrives (kept while it waits for a client or plugin).
struct PacketSummary {
  std::uint16_t queue = 0;
  std::uint32_t packet_id = 0;
  bool parsed = false;  ///< the addresses below are known
  IpAddress src;
  IpAddress dst;
  std::uint8_t protocol = 0;
  bool has_ports = false;
  std::uint16_t src_port = 0;
  std::uint16_t dst_port = 0;
  bool has_icmp = false;
  std::uint8_t icmp_type = 0;
  std::uint8_t icmp_code = 0;
  std::uint32_t in_ifindex = 0;
  std::uint32_t out_ifindex = 0;
  std::uint32_t mark = 0;
  std::uint32_t length = 0;

  static PacketSummary of(const PacketMeta& meta, const PacketView* view) noexcept;
};

/// A packet's event: its verdict (event_type drop, accept or repeat) or a plugin's hold.
struct PacketEvent {
  std::string_view type{};  ///< a static string: "drop", "accept", "repeat", "hold"
  PacketSummary packet{};
  std::string_view decided_by{};  ///< a static string: rule, default, plugin, client, fallback...
  std::string rule{};
  std::string plugin{};
  std::string subscription{};  ///< the client subscription that decided it
  std::optional<std::uint32_t> set_mark{};
  std::uint32_t hold_ms = 0;
  std::vector<std::pair<std::string, std::string>> fields{};  ///< "dns.qname" -> value
};

class EventLog {
 public:
  struct Counters {
    std::uint64_t written = 0;
    std::uint64_t suppressed = 0;    ///< past the rate limit
    std::uint64_t lost = 0;          ///< the writer's queue was full
    std::uint64_t write_errors = 0;  ///< the file could not be written (or reopened)
  };

  /// Opens config.file for appending (throws std::system_error). Events are queued from now on
  /// and written once start() has started the writer thread.
  explicit EventLog(const EventsConfig& config);
  void start();
  ~EventLog();  ///< writes what is queued, then stops
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  /// Whether events of this type are logged (a cheap check before building one).
  [[nodiscard]] bool wants(EventType type) const noexcept {
    return (types_ & event_type_bit(type)) != 0;
  }
  /// Queues a packet's event; never blocks on the writer, never throws.
  void packet(PacketEvent event) noexcept;
  /// Queues an event other than a packet's: `body` holds its JSON members after event_type
  /// (e.g. `"pktbroker":{"reload":"ok"}`), already escaped (see json_string).
  void other(EventType type, std::string_view event_type, std::string body) noexcept;
  /// Closes and reopens the file at the writer's next turn (SIGHUP, after logrotate moved it).
  void reopen() noexcept { reopen_.store(true); }
  [[nodiscard]] Counters counters() const noexcept;

 private:
  struct Queued {
    std::chrono::system_clock::time_point when;
    std::optional<PacketEvent> packet;
    std::string_view event_type;
    std::string body;
  };
  /// Under mutex_: the type's rate limit and the queue's bound.
  bool admit(EventType type) noexcept;
  void run();  ///< the writer thread
  void write(const std::vector<Queued>& batch);
  void open_file();

  std::string path_;
  std::uint32_t types_;
  double rate_;  ///< events a second
  // A token bucket per type: a flood of one kind (refused connections) cannot crowd out
  // another (drops).
  struct Bucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point refilled;
  };
  std::array<Bucket, 6> buckets_;  // one per EventType
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<Queued> queue_;
  bool stopping_ = false;
  std::atomic<bool> reopen_{false};
  std::FILE* file_ = nullptr;  // the writer's alone after construction
  std::string text_;           // the writer's: one batch's lines, its capacity kept
  std::atomic<std::uint64_t> written_{0}, suppressed_{0}, lost_{0}, write_errors_{0};
  std::jthread writer_;
};

/// `text` as a JSON string with its quotes. Bytes outside printable ASCII (packet data need
/// not be UTF-8) are written as \u00XX, so every line is valid JSON whatever the packet held.
std::string json_string(std::string_view text);

/// One packet event as its JSON line (without the newline).
std::string format_packet_event(std::chrono::system_clock::time_point when,
                                const PacketEvent& event);
/// The same, appended to `line`.
void append_packet_event(std::string& line, std::chrono::system_clock::time_point when,
                         const PacketEvent& event);

}  // namespace pktbroker
