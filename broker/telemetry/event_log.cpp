#include "broker/telemetry/event_log.hpp"

#include "broker/flow_hash.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <iterator>
#include <map>
#include <set>
#include <system_error>
#include <unordered_map>

#include <fcntl.h>
#include <net/if.h>
#include <sys/stat.h>
#include <unistd.h>

namespace pktbroker {
namespace {

// Events waiting for the writer at most; more are lost (counted). A burst at the rate limit's
// ceiling is a second's worth.
constexpr std::size_t max_queued = 65536;

std::string_view protocol_name(std::uint8_t protocol) noexcept {
  switch (protocol) {
    case 1: return "ICMP";
    case 6: return "TCP";
    case 17: return "UDP";
    case 58: return "IPv6-ICMP";
    case 132: return "SCTP";
    default: return {};
  }
}

// Suricata's timestamp: 2026-12-01T06:40:00.123456+0000 (UTC). The date and time are
// formatted once a second (only the writer's thread formats).
void append_timestamp(std::string& out, std::chrono::system_clock::time_point when) {
  thread_local std::time_t cached_second = -1;
  thread_local std::string cached_text;
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(when.time_since_epoch()).count();
  const auto seconds = static_cast<std::time_t>(micros / 1'000'000);
  if (seconds != cached_second) {
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    cached_text = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", utc.tm_year + 1900,
                              utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec);
    cached_second = seconds;
  }
  fmt::format_to(std::back_inserter(out), "{}.{:06}+0000", cached_text, micros % 1'000'000);
}

// Interface names by index, looked up again every few seconds (a renamed link, a new one).
const std::string& interface_name(std::uint32_t ifindex) {
  thread_local std::unordered_map<std::uint32_t, std::string> names;
  thread_local auto looked_up = std::chrono::steady_clock::time_point{};
  const auto now = std::chrono::steady_clock::now();
  if (now - looked_up > std::chrono::seconds(5)) {
    names.clear();
    looked_up = now;
  }
  auto [it, fresh] = names.try_emplace(ifindex);
  if (fresh) {
    char name[IF_NAMESIZE] = {};
    it->second = if_indextoname(ifindex, name) != nullptr ? name : std::to_string(ifindex);
  }
  return it->second;
}

void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte >= 0x20 && byte < 0x7f) {
      out += c;
    } else {
      fmt::format_to(std::back_inserter(out), "\\u{:04x}", byte);
    }
  }
  out += '"';
}

// Suricata's flow_id: the same both ways, and a JSON integer every reader takes.
std::uint64_t flow_id(const PacketSummary& p) noexcept {
  return symmetric_flow_hash(p.src, p.src_port, p.dst, p.dst_port, p.protocol) &
         0x7fffffffffffffffULL;
}

// Plugin fields under EVE's names where Suricata has one (dns.rrname, http.hostname, ...).
std::pair<std::string_view, std::string_view> eve_name(std::string_view field) {
  static const std::map<std::string_view, std::pair<std::string_view, std::string_view>> known = {
      {"dns.qname", {"dns", "rrname"}},         {"dns.qtype", {"dns", "rrtype"}},
      {"http.host", {"http", "hostname"}},      {"http.path", {"http", "url"}},
      {"http.method", {"http", "http_method"}}, {"tls.sni", {"tls", "sni"}}};
  if (const auto found = known.find(field); found != known.end()) return found->second;
  const auto dot = field.find('.');
  if (dot == std::string_view::npos) return {"pktbroker_fields", field};
  const std::string_view plugin = field.substr(0, dot);
  // A plugin named like a member of the event itself cannot add a second one of that name.
  static const std::set<std::string_view> members = {
      "timestamp", "event_type", "flow_id",   "src_ip",   "src_port",  "dest_ip",  "dest_port",
      "proto",     "icmp_type",  "icmp_code", "in_iface", "out_iface", "pktbroker"};
  if (members.contains(plugin)) return {"pktbroker_fields", field};
  return {plugin, field.substr(dot + 1)};
}

}  // namespace

PacketSummary PacketSummary::of(const PacketMeta& meta, const PacketView* view) noexcept {
  PacketSummary s;
  s.queue = meta.queue;
  s.packet_id = meta.packet_id;
  s.in_ifindex = meta.in_ifindex;
  s.out_ifindex = meta.out_ifindex;
  s.mark = meta.mark;
  s.length = meta.wire_length;
  if (view != nullptr) {
    s.parsed = true;
    s.src = view->src;
    s.dst = view->dst;
    s.protocol = view->protocol;
    s.has_ports = view->has_ports;
    s.src_port = view->src_port;
    s.dst_port = view->dst_port;
    s.has_icmp = view->has_icmp;
    s.icmp_type = view->icmp_type;
    s.icmp_code = view->icmp_code;
  }
  return s;
}

std::string json_string(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  append_json_string(out, text);
  return out;
}

std::string format_packet_event(std::chrono::system_clock::time_point when,
                                const PacketEvent& event) {
  std::string line;
  append_packet_event(line, when, event);
  return line;
}

void append_packet_event(std::string& line, std::chrono::system_clock::time_point when,
                         const PacketEvent& e) {
  const PacketSummary& p = e.packet;
  const auto out = std::back_inserter(line);
  line += R"({"timestamp":")";
  append_timestamp(line, when);
  line += R"(","event_type":)";
  append_json_string(line, e.type);
  if (p.parsed) {
    fmt::format_to(out, R"(,"flow_id":{},"src_ip":"{}")", flow_id(p), p.src.to_string());
    if (p.has_ports) fmt::format_to(out, R"(,"src_port":{})", p.src_port);
    fmt::format_to(out, R"(,"dest_ip":"{}")", p.dst.to_string());
    if (p.has_ports) fmt::format_to(out, R"(,"dest_port":{})", p.dst_port);
    const std::string_view proto = protocol_name(p.protocol);
    if (proto.empty()) {
      fmt::format_to(out, R"(,"proto":"{}")", p.protocol);
    } else {
      fmt::format_to(out, R"(,"proto":"{}")", proto);
    }
    if (p.has_icmp) {
      fmt::format_to(out, R"(,"icmp_type":{},"icmp_code":{})", p.icmp_type, p.icmp_code);
    }
  }
  const auto member = [&line](std::string_view name, std::string_view value) {
    if (value.empty()) return;
    line += ",\"";
    line += name;
    line += "\":";
    append_json_string(line, value);
  };
  if (p.in_ifindex != 0) member("in_iface", interface_name(p.in_ifindex));
  if (p.out_ifindex != 0) member("out_iface", interface_name(p.out_ifindex));
  fmt::format_to(out, R"(,"pktbroker":{{"queue":{},"packet_id":{},"length":{},"mark":{})", p.queue,
                 p.packet_id, p.length, p.mark);
  member("decided_by", e.decided_by);
  member("rule", e.rule);
  member("plugin", e.plugin);
  member("subscription", e.subscription);
  if (e.set_mark) fmt::format_to(out, R"(,"set_mark":{})", *e.set_mark);
  if (e.hold_ms != 0) fmt::format_to(out, R"(,"hold_ms":{})", e.hold_ms);
  line += '}';
  // The plugins' fields, one object per plugin, in the order they came.
  std::vector<std::pair<std::string_view, std::string>> objects;
  for (const auto& [field, value] : e.fields) {
    const auto name = eve_name(field);  // {object, key}
    auto it = std::find_if(objects.begin(), objects.end(),
                           [&](const auto& o) { return o.first == name.first; });
    if (it == objects.end()) it = objects.insert(objects.end(), {name.first, {}});
    if (!it->second.empty()) it->second += ',';
    append_json_string(it->second, name.second);
    it->second += ':';
    append_json_string(it->second, value);
  }
  for (const auto& [object, members] : objects) {
    line += ',';
    append_json_string(line, object);
    line += ":{" + members + "}";
  }
  line += '}';
}

EventLog::EventLog(const EventsConfig& config)
    : path_(config.file), types_(config.types), rate_(config.rate_limit), buckets_() {
  for (Bucket& bucket : buckets_) bucket = {rate_, std::chrono::steady_clock::now()};
  open_file();
  if (file_ == nullptr) {
    throw std::system_error(errno, std::generic_category(), "events: cannot open " + path_);
  }
}

void EventLog::start() {
  if (!writer_.joinable()) writer_ = std::jthread([this] { run(); });
}

EventLog::~EventLog() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (writer_.joinable()) {
    writer_ = {};  // joins after the last batch is written
  } else {
    write(queue_);  // never started: what was queued is written here
  }
  if (file_ != nullptr) std::fclose(file_);
}

void EventLog::open_file() {
  if (file_ != nullptr) std::fclose(file_);
  file_ = nullptr;
  // 0640 whatever the umask: a log shipper in the owner's group reads it.
  const int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return;
  struct stat status {};
  if (::fstat(fd, &status) == 0 && (status.st_mode & 0777) == 0600) ::fchmod(fd, 0640);
  file_ = ::fdopen(fd, "a");
  if (file_ == nullptr) ::close(fd);
}

bool EventLog::admit(EventType type) noexcept {
  Bucket& bucket = buckets_[static_cast<std::size_t>(type)];
  const auto now = std::chrono::steady_clock::now();
  bucket.tokens = std::min(
      rate_, bucket.tokens + rate_ * std::chrono::duration<double>(now - bucket.refilled).count());
  bucket.refilled = now;
  if (bucket.tokens < 1) {
    suppressed_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if (queue_.size() >= max_queued) {
    lost_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  bucket.tokens -= 1;
  return true;
}

void EventLog::packet(PacketEvent event) noexcept {
  try {
    const auto when = std::chrono::system_clock::now();
    const EventType type = event.type == "drop"   ? EventType::drop
                           : event.type == "hold" ? EventType::hold
                                                  : EventType::accept;
    std::lock_guard lock(mutex_);
    if (!admit(type)) return;
    queue_.push_back({when, std::move(event), {}, {}});
  } catch (...) {  // allocation failure: the event is lost, the packet is not
    lost_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  wake_.notify_one();
}

void EventLog::other(EventType type, std::string_view event_type, std::string body) noexcept {
  if (!wants(type)) return;
  try {
    const auto when = std::chrono::system_clock::now();
    std::lock_guard lock(mutex_);
    if (!admit(type)) return;
    queue_.push_back({when, std::nullopt, event_type, std::move(body)});
  } catch (...) {
    lost_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  wake_.notify_one();
}

EventLog::Counters EventLog::counters() const noexcept {
  return {written_.load(), suppressed_.load(), lost_.load(), write_errors_.load()};
}

void EventLog::run() {
  std::vector<Queued> batch;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait_for(lock, std::chrono::milliseconds(200),
                     [this] { return stopping_ || !queue_.empty() || reopen_.load(); });
      batch.swap(queue_);
      if (batch.empty() && stopping_) return;
    }
    if (reopen_.exchange(false)) {
      open_file();
      if (file_ == nullptr) {
        write_errors_.fetch_add(1, std::memory_order_relaxed);
        spdlog::error("events: cannot reopen {}: {}", path_, std::strerror(errno));
      } else {
        spdlog::info("events: reopened {}", path_);
      }
    }
    write(batch);
    batch.clear();
  }
}

void EventLog::write(const std::vector<Queued>& batch) {
  if (batch.empty()) return;
  if (file_ == nullptr) {
    write_errors_.fetch_add(batch.size(), std::memory_order_relaxed);
    return;
  }
  std::string& text = text_;
  text.clear();
  for (const Queued& q : batch) {
    if (q.packet) {
      append_packet_event(text, q.when, *q.packet);
    } else {
      text += R"({"timestamp":")";
      append_timestamp(text, q.when);
      text += R"(","event_type":)";
      append_json_string(text, q.event_type);
      text += ',' + q.body + '}';
    }
    text += '\n';
  }
  if (std::fwrite(text.data(), 1, text.size(), file_) != text.size() || std::fflush(file_) != 0) {
    write_errors_.fetch_add(batch.size(), std::memory_order_relaxed);
    return;
  }
  written_.fetch_add(batch.size(), std::memory_order_relaxed);
}

}  // namespace pktbroker
