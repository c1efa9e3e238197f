#include "pktbroker/codec.hpp"

#include <boost/endian/conversion.hpp>

#include <limits>
#include <string_view>
#include <type_traits>

namespace pktbroker::proto {
namespace {

constexpr std::size_t max_string = 4096;   // names, selectors, error texts
constexpr std::size_t max_entries = 4096;  // list lengths (stats, sessions, verdict batches)
static_assert(max_plugin_name <= max_string && max_plugin_arg <= max_string);
static_assert(max_plugin_reply_text <= 0xffff, "a string's length is a u16");

class ProtocolCategory : public std::error_category {
 public:
  [[nodiscard]] const char* name() const noexcept override { return "pktbroker.protocol"; }
  [[nodiscard]] std::string message(int value) const override {
    switch (static_cast<ProtocolError>(value)) {
      case ProtocolError::short_header: return "datagram shorter than the protocol header";
      case ProtocolError::bad_magic: return "not a pktbroker protocol datagram (bad magic)";
      case ProtocolError::bad_version: return "unsupported protocol version";
      case ProtocolError::unknown_type: return "unknown message type";
      case ProtocolError::length_mismatch: return "body length does not match the datagram";
      case ProtocolError::oversized: return "message exceeds a size limit";
      case ProtocolError::truncated_field: return "a field runs past the end of the message";
      case ProtocolError::bad_value: return "a field holds an undefined value";
      case ProtocolError::trailing_bytes: return "unexpected bytes after the last field";
    }
    return "unknown protocol error";
  }
};

/// Appends big-endian fields.
class Writer {
 public:
  explicit Writer(std::vector<std::uint8_t>& out) : out_(out) {}

  template <typename T>
  void integer(T value) {  // big-endian, appended in one insert (a push_back a byte was hot)
    const auto big = boost::endian::native_to_big(static_cast<std::make_unsigned_t<T>>(value));
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(&big);
    out_.insert(out_.end(), bytes, bytes + sizeof big);
  }
  template <typename E>
  void enumeration(E value) {
    integer(static_cast<std::underlying_type_t<E>>(value));
  }
  void string(std::string_view text, std::size_t limit = max_string) {
    if (text.size() > limit) fail(ProtocolError::oversized);
    const std::size_t size = std::min(text.size(), limit);
    integer(static_cast<std::uint16_t>(size));
    out_.insert(out_.end(), text.begin(), text.begin() + static_cast<std::ptrdiff_t>(size));
  }
  void bytes(std::span<const std::uint8_t> data) {
    if (data.size() > max_payload) fail(ProtocolError::oversized);
    const std::size_t size = std::min(data.size(), max_payload);
    integer(static_cast<std::uint32_t>(size));
    out_.insert(out_.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(size));
  }
  void count(std::size_t n, std::size_t limit = max_entries) {
    if (n > limit) fail(ProtocolError::oversized);
    integer(static_cast<std::uint32_t>(n));
  }
  void optional_u32(const std::optional<std::uint32_t>& value) {
    integer(static_cast<std::uint8_t>(value.has_value()));
    integer(value.value_or(0));
  }
  /// Marks the message as one the decoder would refuse; the first failure sticks.
  void fail(ProtocolError error) {
    if (error_ == ProtocolError{}) error_ = error;
  }
  [[nodiscard]] ProtocolError error() const { return error_; }
  [[nodiscard]] std::vector<std::uint8_t>& out() const { return out_; }

 private:
  std::vector<std::uint8_t>& out_;
  ProtocolError error_{};
};

/// Reads big-endian fields; the first failure sticks and later reads return zeros.
class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> body) : body_(body) {}

  template <typename T>
  T integer() {
    using U = std::make_unsigned_t<T>;
    if (!take(sizeof(T))) return T{};
    U value = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) {
      value = static_cast<U>((value << 8) | body_[offset_ - sizeof(T) + i]);
    }
    return static_cast<T>(value);
  }
  /// An enumeration whose valid values are first..last.
  template <typename E>
  E enumeration(E first, E last) {
    using U = std::underlying_type_t<E>;
    const U raw = integer<U>();
    if (raw < static_cast<U>(first) || raw > static_cast<U>(last)) fail(ProtocolError::bad_value);
    return static_cast<E>(raw);
  }
  bool boolean() {
    const auto raw = integer<std::uint8_t>();
    if (raw > 1) fail(ProtocolError::bad_value);
    return raw == 1;
  }
  std::string string(std::size_t limit = max_string) {
    const auto size = integer<std::uint16_t>();
    if (size > limit) fail(ProtocolError::oversized);
    if (!take(size)) return {};
    return {reinterpret_cast<const char*>(body_.data() + offset_ - size), size};
  }
  std::span<const std::uint8_t> bytes() {
    const auto size = integer<std::uint32_t>();
    if (size > max_payload) fail(ProtocolError::oversized);
    if (!take(size)) return {};
    return body_.subspan(offset_ - size, size);
  }
  /// A u32-length-prefixed run of bytes holding a nested body (a batch's packet).
  std::span<const std::uint8_t> block() {
    const auto size = integer<std::uint32_t>();
    if (!take(size)) return {};
    return body_.subspan(offset_ - size, size);
  }
  std::size_t count(std::size_t min_entry_size, std::size_t limit = max_entries) {
    const auto n = integer<std::uint32_t>();
    // A count that cannot fit in what is left is a lie: reject before allocating for it.
    if (n > limit) fail(ProtocolError::oversized);
    if (error_ == ProtocolError{} && n * min_entry_size > body_.size() - offset_) {
      fail(ProtocolError::truncated_field);
    }
    return error_ == ProtocolError{} ? n : 0;
  }
  std::optional<std::uint32_t> optional_u32() {
    const bool present = boolean();
    const auto value = integer<std::uint32_t>();
    return present ? std::optional(value) : std::nullopt;
  }
  void fail(ProtocolError error) {
    if (error_ == ProtocolError{}) error_ = error;
  }
  [[nodiscard]] bool at_end() const noexcept { return offset_ == body_.size(); }
  [[nodiscard]] std::error_code finish() const {
    if (error_ != ProtocolError{}) return error_;
    if (offset_ != body_.size()) return ProtocolError::trailing_bytes;
    return {};
  }

 private:
  bool take(std::size_t size) {
    if (error_ != ProtocolError{}) return false;
    if (size > body_.size() - offset_) {
      fail(ProtocolError::truncated_field);
      return false;
    }
    offset_ += size;
    return true;
  }

  std::span<const std::uint8_t> body_;
  std::size_t offset_ = 0;
  ProtocolError error_{};
};

// ---- bodies: one write/read pair per message type ----

// The optional trailing features word: absent means none (older peers), and a present one is
// never 0, so every message has one encoding.
std::uint32_t read_features(Reader& r) {
  if (r.at_end()) return 0;
  const auto features = r.integer<std::uint32_t>();
  if (features == 0) r.fail(ProtocolError::bad_value);
  return features;
}

void write(Writer& w, const Hello& m) {
  w.string(m.client_name);
  w.integer(m.roles);
  w.integer(m.min_version);
  w.integer(m.max_version);
  if (m.features != 0) w.integer(m.features);
}
void read(Reader& r, Hello& m) {
  m.client_name = r.string();
  m.roles = r.integer<std::uint8_t>();
  m.min_version = r.integer<std::uint8_t>();
  m.max_version = r.integer<std::uint8_t>();
  m.features = read_features(r);
}
void write(Writer& w, const Welcome& m) {
  w.integer(m.version);
  w.integer(m.session_id);
  w.integer(m.roles);
  w.string(m.broker_version);
  if (m.features != 0) w.integer(m.features);
}
void read(Reader& r, Welcome& m) {
  m.version = r.integer<std::uint8_t>();
  m.session_id = r.integer<std::uint32_t>();
  m.roles = r.integer<std::uint8_t>();
  m.broker_version = r.string();
  m.features = read_features(r);
}
void write(Writer& w, const Subscribe& m) {
  w.string(m.name);
  w.string(m.selector);
  w.enumeration(m.mode);
  w.enumeration(m.clash);
  w.integer(m.priority);
  w.integer(m.snaplen);
  w.integer(m.timeout_ms);
  w.enumeration(m.fallback);
}
void read(Reader& r, Subscribe& m) {
  m.name = r.string();
  m.selector = r.string();
  m.mode = r.enumeration(SubscriptionMode::verdict, SubscriptionMode::observe);
  m.clash = r.enumeration(Clash::exclusive, Clash::balance);
  m.priority = r.integer<std::int32_t>();
  m.snaplen = r.integer<std::uint32_t>();
  m.timeout_ms = r.integer<std::uint32_t>();
  m.fallback = r.enumeration(VerdictCode::accept, VerdictCode::repeat);
}
void write(Writer& w, const Subscribed& m) {
  w.integer(m.subscription_id);
}
void read(Reader& r, Subscribed& m) {
  m.subscription_id = r.integer<std::uint32_t>();
}
void write(Writer& w, const Unsubscribe& m) {
  w.integer(m.subscription_id);
}
void read(Reader& r, Unsubscribe& m) {
  m.subscription_id = r.integer<std::uint32_t>();
}

void write(Writer& w, const Packet& m) {
  w.integer(m.token);
  w.integer(m.subscription_id);
  w.integer(static_cast<std::uint8_t>(m.needs_verdict));
  w.integer(m.queue);
  w.integer(m.hook);
  w.enumeration(m.ct_state);
  w.integer(m.mark);
  w.integer(m.in_ifindex);
  w.integer(m.out_ifindex);
  w.optional_u32(m.uid);
  w.optional_u32(m.gid);
  w.integer(m.timestamp_ns);
  w.integer(m.wire_length);
  w.bytes(m.payload);
}
void read(Reader& r, Packet& m) {
  m.token = r.integer<std::uint64_t>();
  m.subscription_id = r.integer<std::uint32_t>();
  m.needs_verdict = r.boolean();
  m.queue = r.integer<std::uint16_t>();
  m.hook = r.integer<std::uint8_t>();
  m.ct_state = r.enumeration(CtStateCode::none, CtStateCode::related);
  m.mark = r.integer<std::uint32_t>();
  m.in_ifindex = r.integer<std::uint32_t>();
  m.out_ifindex = r.integer<std::uint32_t>();
  m.uid = r.optional_u32();
  m.gid = r.optional_u32();
  m.timestamp_ns = r.integer<std::uint64_t>();
  m.wire_length = r.integer<std::uint32_t>();
  m.payload = r.bytes();
}

constexpr std::size_t packet_body_min_size = 8 + 4 + 1 + 2 + 1 + 1 + 4 * 3 + 5 * 2 + 8 + 4 + 4;

void put_u32(std::uint8_t* at, std::size_t value) {
  for (int i = 0; i < 4; ++i) at[i] = static_cast<std::uint8_t>(value >> (24 - 8 * i));
}
std::uint32_t get_u32(const std::uint8_t* at) {
  return (std::uint32_t{at[0]} << 24) | (std::uint32_t{at[1]} << 16) | (std::uint32_t{at[2]} << 8) |
         std::uint32_t{at[3]};
}

// Each packet is a u32 length and a PACKET body, so a batch is read without trusting counts.
void write_batch_entry(Writer& w, const Packet& packet) {
  std::vector<std::uint8_t>& out = w.out();
  const std::size_t length_at = out.size();
  w.integer(std::uint32_t{0});
  write(w, packet);
  put_u32(out.data() + length_at, out.size() - length_at - 4);
}
void read(Reader& r, PacketBatch& m) {
  m.packets.resize(r.count(4 + packet_body_min_size));
  for (auto& packet : m.packets) {
    Reader entry(r.block());
    read(entry, packet);
    if (const std::error_code error = entry.finish()) {
      r.fail(static_cast<ProtocolError>(error.value()));
    }
  }
}

void write_verdict_fields(Writer& w, const Verdict& m) {
  w.integer(m.token);
  w.enumeration(m.verdict);
  w.optional_u32(m.mark);
}
void read_verdict_fields(Reader& r, Verdict& m) {
  m.token = r.integer<std::uint64_t>();
  m.verdict = r.enumeration(VerdictCode::accept, VerdictCode::pass);
  m.mark = r.optional_u32();
}
void write(Writer& w, const Verdict& m) {
  write_verdict_fields(w, m);
  w.bytes(m.payload);
}
void read(Reader& r, Verdict& m) {
  read_verdict_fields(r, m);
  m.payload = r.bytes();
}
constexpr std::size_t verdict_fields_size = 8 + 1 + 1 + 4;
void write(Writer& w, const VerdictBatch& m) {
  w.count(m.verdicts.size());
  for (const auto& v : m.verdicts) write_verdict_fields(w, v);
}
void read(Reader& r, VerdictBatch& m) {
  m.verdicts.resize(r.count(verdict_fields_size));
  for (auto& v : m.verdicts) read_verdict_fields(r, v);
}

void write(Writer&, const StatsRequest&) {}
void read(Reader&, StatsRequest&) {}
void write(Writer& w, const StatsReply& m) {
  w.count(m.entries.size());
  for (const auto& e : m.entries) {
    w.string(e.scope);
    w.string(e.name);
    w.integer(e.value);
  }
}
void read(Reader& r, StatsReply& m) {
  m.entries.resize(r.count(2 + 2 + 8));
  for (auto& e : m.entries) {
    e.scope = r.string();
    e.name = r.string();
    e.value = r.integer<std::uint64_t>();
  }
}
void write(Writer&, const SessionsRequest&) {}
void read(Reader&, SessionsRequest&) {}
void write(Writer& w, const SessionsReply& m) {
  w.count(m.sessions.size());
  for (const auto& s : m.sessions) {
    w.integer(s.id);
    w.string(s.name);
    w.integer(s.pid);
    w.integer(s.uid);
    w.integer(s.gid);
    w.integer(s.roles);
    w.integer(s.subscriptions);
    w.integer(s.outstanding);
    w.integer(s.delivered);
    w.integer(s.verdicts);
    w.integer(s.fallbacks);
  }
}
void read(Reader& r, SessionsReply& m) {
  m.sessions.resize(r.count(4 + 2 + 4 * 3 + 1 + 4 * 2 + 8 * 3));
  for (auto& s : m.sessions) {
    s.id = r.integer<std::uint32_t>();
    s.name = r.string();
    s.pid = r.integer<std::uint32_t>();
    s.uid = r.integer<std::uint32_t>();
    s.gid = r.integer<std::uint32_t>();
    s.roles = r.integer<std::uint8_t>();
    s.subscriptions = r.integer<std::uint32_t>();
    s.outstanding = r.integer<std::uint32_t>();
    s.delivered = r.integer<std::uint64_t>();
    s.verdicts = r.integer<std::uint64_t>();
    s.fallbacks = r.integer<std::uint64_t>();
  }
}
void write(Writer&, const ReloadRequest&) {}
void read(Reader&, ReloadRequest&) {}
void write(Writer& w, const ReloadReply& m) {
  w.integer(static_cast<std::uint8_t>(m.ok));
  w.string(m.text);
}
void read(Reader& r, ReloadReply& m) {
  m.ok = r.boolean();
  m.text = r.string();
}
void write(Writer& w, const PluginCommand& m) {
  if (m.plugin.empty()) w.fail(ProtocolError::bad_value);
  w.string(m.plugin, max_plugin_name);
  w.count(m.args.size(), max_plugin_args);
  for (const auto& arg : m.args) w.string(arg, max_plugin_arg);
}
void read(Reader& r, PluginCommand& m) {
  m.plugin = r.string(max_plugin_name);
  if (m.plugin.empty()) r.fail(ProtocolError::bad_value);
  m.args.resize(r.count(2, max_plugin_args));
  for (auto& arg : m.args) arg = r.string(max_plugin_arg);
}
void write(Writer& w, const PluginCommandReply& m) {
  w.integer(static_cast<std::uint8_t>(m.ok));
  w.string(m.text, max_plugin_reply_text);
}
void read(Reader& r, PluginCommandReply& m) {
  m.ok = r.boolean();
  m.text = r.string(max_plugin_reply_text);
}
void write(Writer& w, const Error& m) {
  w.enumeration(m.code);
  w.string(m.text);
}
void read(Reader& r, Error& m) {
  m.code = r.enumeration(ErrorCode::malformed, ErrorCode::unknown_rule);
  m.text = r.string();
}
void write(Writer& w, const PacketBatch& m) {
  w.count(m.packets.size());
  for (const auto& packet : m.packets) write_batch_entry(w, packet);
}
// A channel name: 1..max_channel_name bytes (its characters are the broker's business).
void write_channel_name(Writer& w, const std::string& name) {
  if (name.empty()) w.fail(ProtocolError::bad_value);
  w.string(name, max_channel_name);
}
std::string read_channel_name(Reader& r) {
  std::string name = r.string(max_channel_name);
  if (name.empty()) r.fail(ProtocolError::bad_value);
  return name;
}
void write(Writer& w, const ChannelCreate& m) {
  write_channel_name(w, m.name);
  w.string(m.delivery, max_plugin_name);
  w.enumeration(m.link);
  w.integer(m.max_members);
  w.integer(m.max_frame);
  w.integer(m.queue_length);
  w.enumeration(m.overflow);
  w.count(m.access.size());
  for (const auto& a : m.access) {
    w.enumeration(a.kind);
    w.integer(a.id);
    w.integer(a.rights);
  }
}
void read(Reader& r, ChannelCreate& m) {
  m.name = read_channel_name(r);
  m.delivery = r.string(max_plugin_name);
  m.link = r.enumeration(LinkType::ethernet, LinkType::ip);
  m.max_members = r.integer<std::uint32_t>();
  m.max_frame = r.integer<std::uint32_t>();
  m.queue_length = r.integer<std::uint32_t>();
  m.overflow = r.enumeration(Overflow::drop, Overflow::backpressure);
  m.access.resize(r.count(1 + 4 + 1));
  for (auto& a : m.access) {
    a.kind = r.enumeration(ChannelAccess::Kind::uid, ChannelAccess::Kind::gid);
    a.id = r.integer<std::uint32_t>();
    a.rights = r.integer<std::uint8_t>();
    if ((a.rights & ~all_channel_rights) != 0) r.fail(ProtocolError::bad_value);
  }
}
void write(Writer& w, const ChannelJoin& m) {
  write_channel_name(w, m.channel);
  w.integer(m.rights);
}
void read(Reader& r, ChannelJoin& m) {
  m.channel = read_channel_name(r);
  m.rights = r.integer<std::uint8_t>();
  if ((m.rights & ~all_channel_rights) != 0) r.fail(ProtocolError::bad_value);
}
void write(Writer& w, const ChannelJoined& m) {
  w.integer(m.channel_id);
  w.integer(m.member_id);
  w.integer(m.rights);
  w.enumeration(m.link);
  w.integer(m.max_frame);
}
void read(Reader& r, ChannelJoined& m) {
  m.channel_id = r.integer<std::uint32_t>();
  m.member_id = r.integer<std::uint32_t>();
  m.rights = r.integer<std::uint8_t>();
  m.link = r.enumeration(LinkType::ethernet, LinkType::ip);
  m.max_frame = r.integer<std::uint32_t>();
}
void write(Writer& w, const ChannelSend& m) {
  w.integer(m.channel_id);
  w.bytes(m.frame);
}
void read(Reader& r, ChannelSend& m) {
  m.channel_id = r.integer<std::uint32_t>();
  m.frame = r.bytes();
}
void write(Writer& w, const ChannelFrames& m) {
  w.integer(m.channel_id);
  w.count(m.frames.size());
  for (const auto& f : m.frames) {
    w.integer(f.from_member);
    w.bytes(f.frame);
  }
}
void read(Reader& r, ChannelFrames& m) {
  m.channel_id = r.integer<std::uint32_t>();
  m.frames.resize(r.count(4 + 4));
  for (auto& f : m.frames) {
    f.from_member = r.integer<std::uint32_t>();
    f.frame = r.bytes();
  }
}
void write(Writer& w, const ChannelLeave& m) {
  w.integer(m.channel_id);
}
void read(Reader& r, ChannelLeave& m) {
  m.channel_id = r.integer<std::uint32_t>();
}
void write(Writer& w, const ChannelLeft& m) {
  w.integer(m.channel_id);
  w.string(m.reason);
}
void read(Reader& r, ChannelLeft& m) {
  m.channel_id = r.integer<std::uint32_t>();
  m.reason = r.string();
}
void write(Writer& w, const ChannelFlow& m) {
  w.integer(m.channel_id);
  w.integer(static_cast<std::uint8_t>(m.paused));
}
void read(Reader& r, ChannelFlow& m) {
  m.channel_id = r.integer<std::uint32_t>();
  m.paused = r.boolean();
}
void write(Writer&, const ChannelsRequest&) {}
void read(Reader&, ChannelsRequest&) {}
constexpr std::size_t member_info_size = 4 + 4 + 2 + 4 + 4 + 1 + 8 * 3 + 4;
constexpr std::size_t channel_info_size = 2 + 2 + 1 + 1 + 4 * 3 + 8 * 4 + 4;
void write(Writer& w, const ChannelsReply& m) {
  w.count(m.channels.size());
  for (const auto& c : m.channels) {
    w.string(c.name);
    w.string(c.delivery);
    w.enumeration(c.link);
    w.enumeration(c.overflow);
    w.integer(c.max_members);
    w.integer(c.max_frame);
    w.integer(c.queue_length);
    w.integer(c.frames);
    w.integer(c.delivered);
    w.integer(c.dropped);
    w.integer(c.refused);
    w.count(c.members.size());
    for (const auto& member : c.members) {
      w.integer(member.member_id);
      w.integer(member.session_id);
      w.string(member.name);
      w.integer(member.pid);
      w.integer(member.uid);
      w.integer(member.rights);
      w.integer(member.received);
      w.integer(member.sent);
      w.integer(member.dropped);
      w.integer(member.queued);
    }
  }
}
void read(Reader& r, ChannelsReply& m) {
  m.channels.resize(r.count(channel_info_size));
  for (auto& c : m.channels) {
    c.name = r.string();
    c.delivery = r.string();
    c.link = r.enumeration(LinkType::ethernet, LinkType::ip);
    c.overflow = r.enumeration(Overflow::drop, Overflow::backpressure);
    c.max_members = r.integer<std::uint32_t>();
    c.max_frame = r.integer<std::uint32_t>();
    c.queue_length = r.integer<std::uint32_t>();
    c.frames = r.integer<std::uint64_t>();
    c.delivered = r.integer<std::uint64_t>();
    c.dropped = r.integer<std::uint64_t>();
    c.refused = r.integer<std::uint64_t>();
    c.members.resize(r.count(member_info_size));
    for (auto& member : c.members) {
      member.member_id = r.integer<std::uint32_t>();
      member.session_id = r.integer<std::uint32_t>();
      member.name = r.string();
      member.pid = r.integer<std::uint32_t>();
      member.uid = r.integer<std::uint32_t>();
      member.rights = r.integer<std::uint8_t>();
      member.received = r.integer<std::uint64_t>();
      member.sent = r.integer<std::uint64_t>();
      member.dropped = r.integer<std::uint64_t>();
      member.queued = r.integer<std::uint32_t>();
    }
  }
}
void write(Writer& w, const ChannelKick& m) {
  write_channel_name(w, m.channel);
  w.integer(m.member_id);
}
void read(Reader& r, ChannelKick& m) {
  m.channel = read_channel_name(r);
  m.member_id = r.integer<std::uint32_t>();
}
void write(Writer& w, const Ok& m) {
  w.string(m.text);
}
void read(Reader& r, Ok& m) {
  m.text = r.string();
}
void write(Writer&, const RulesRequest&) {}
void read(Reader&, RulesRequest&) {}
void write(Writer& w, const RulesReply& m) {
  w.count(m.rules.size());
  for (const auto& rule : m.rules) {
    w.string(rule.name);
    w.string(rule.origin);
    w.integer(static_cast<std::uint32_t>(rule.priority));
    w.string(rule.match);
    w.string(rule.verdict);
    w.integer(rule.packets);
    w.integer(rule.bytes);
  }
}
void read(Reader& r, RulesReply& m) {
  m.rules.resize(r.count(4 * 2 + 4 + 8 + 8));
  for (auto& rule : m.rules) {
    rule.name = r.string();
    rule.origin = r.string();
    rule.priority = static_cast<std::int32_t>(r.integer<std::uint32_t>());
    rule.match = r.string();
    rule.verdict = r.string();
    rule.packets = r.integer<std::uint64_t>();
    rule.bytes = r.integer<std::uint64_t>();
  }
}
void write(Writer& w, const PromptWatch& m) {
  w.enumeration(m.scope);
}
void read(Reader& r, PromptWatch& m) {
  m.scope = r.enumeration(PromptScope::own, PromptScope::all);
}
constexpr std::size_t prompt_size = 8 + 4 + 4 + 2 * 3 + 1 + 2 + 2 + 2 + 4 + 4 + 1;
void write(Writer& w, const Prompt& m) {
  w.integer(m.id);
  w.integer(m.uid);
  w.integer(m.pid);
  w.string(m.path);
  w.string(m.name);
  w.string(m.cmdline, max_prompt_cmdline);
  w.integer(m.protocol);
  w.string(m.destination);
  w.integer(m.port);
  w.string(m.rule);
  w.integer(m.waiting);
  w.integer(m.left_ms);
  w.enumeration(m.fallback);
}
void read(Reader& r, Prompt& m) {
  m.id = r.integer<std::uint64_t>();
  m.uid = r.integer<std::uint32_t>();
  m.pid = r.integer<std::uint32_t>();
  m.path = r.string();
  m.name = r.string();
  m.cmdline = r.string(max_prompt_cmdline);
  m.protocol = r.integer<std::uint8_t>();
  m.destination = r.string();
  m.port = r.integer<std::uint16_t>();
  m.rule = r.string();
  m.waiting = r.integer<std::uint32_t>();
  m.left_ms = r.integer<std::uint32_t>();
  m.fallback = r.enumeration(VerdictCode::accept, VerdictCode::drop);
}
void write(Writer& w, const PromptAnswer& m) {
  w.integer(m.id);
  w.enumeration(m.decision);
  w.enumeration(m.span);
  w.integer(m.minutes);
}
void read(Reader& r, PromptAnswer& m) {
  m.id = r.integer<std::uint64_t>();
  m.decision = r.enumeration(AnswerDecision::allow, AnswerDecision::deny);
  m.span = r.enumeration(AnswerSpan::once, AnswerSpan::always);
  m.minutes = r.integer<std::uint32_t>();
  const bool timed = m.span == AnswerSpan::minutes;
  if (timed ? m.minutes == 0 || m.minutes > max_answer_minutes : m.minutes != 0) {
    r.fail(ProtocolError::bad_value);
  }
}
void write(Writer& w, const PromptClosed& m) {
  w.integer(m.id);
  w.enumeration(m.how);
  w.enumeration(m.verdict);
  w.string(m.text);
}
void read(Reader& r, PromptClosed& m) {
  m.id = r.integer<std::uint64_t>();
  m.how = r.enumeration(PromptEnd::answered, PromptEnd::timed_out);
  m.verdict = r.enumeration(VerdictCode::accept, VerdictCode::drop);
  m.text = r.string();
}
void write(Writer&, const PendingRequest&) {}
void read(Reader&, PendingRequest&) {}
void write(Writer& w, const PendingReply& m) {
  w.count(m.prompts.size());
  for (const auto& prompt : m.prompts) write(w, prompt);
}
void read(Reader& r, PendingReply& m) {
  m.prompts.resize(r.count(prompt_size));
  for (auto& prompt : m.prompts) read(r, prompt);
}
void write(Writer&, const AppsRequest&) {}
void read(Reader&, AppsRequest&) {}
void write(Writer& w, const AppsReply& m) {
  w.count(m.apps.size());
  for (const auto& app : m.apps) {
    w.integer(app.uid);
    w.integer(app.pid);
    w.string(app.path);
    w.string(app.name);
    w.integer(app.connections);
    w.integer(app.idle_ms);
    w.count(app.destinations.size());
    for (const auto& destination : app.destinations) w.string(destination);
  }
}
void read(Reader& r, AppsReply& m) {
  m.apps.resize(r.count(4 + 4 + 2 + 2 + 8 + 4 + 4));
  for (auto& app : m.apps) {
    app.uid = r.integer<std::uint32_t>();
    app.pid = r.integer<std::uint32_t>();
    app.path = r.string();
    app.name = r.string();
    app.connections = r.integer<std::uint64_t>();
    app.idle_ms = r.integer<std::uint32_t>();
    app.destinations.resize(r.count(2));
    for (auto& destination : app.destinations) destination = r.string();
  }
}
void write(Writer& w, const RuleAdd& m) {
  w.integer(m.uid);
  w.string(m.answers);
  w.string(m.match);
  w.enumeration(m.verdict);
  w.string(m.until);
}
void read(Reader& r, RuleAdd& m) {
  m.uid = r.integer<std::uint32_t>();
  m.answers = r.string();
  m.match = r.string();
  m.verdict = r.enumeration(VerdictCode::accept, VerdictCode::drop);
  m.until = r.string();
}
void write(Writer& w, const RuleDelete& m) {
  w.string(m.name);
}
void read(Reader& r, RuleDelete& m) {
  m.name = r.string();
}
void write(Writer&, const Ping&) {}
void read(Reader&, Ping&) {}
void write(Writer&, const Pong&) {}
void read(Reader&, Pong&) {}

/// The variant alternative for a type code (the codes are the alternatives' order + 1).
bool message_for(std::uint8_t code, Message& message) {
  if (code < 1 || code > std::variant_size_v<Message>) return false;
  // VERDICT_BATCH is the message read per packet: one already there keeps its vector (read()
  // sets every entry), so a Decoded reused for it allocates nothing.
  if (code == static_cast<std::uint8_t>(MessageType::verdict_batch) &&
      std::holds_alternative<VerdictBatch>(message)) {
    return true;
  }
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (void)((code == I + 1 ? (message.emplace<I>(), true) : false) || ...);
  }
  (std::make_index_sequence<std::variant_size_v<Message>>());
  return true;
}

}  // namespace

const std::error_category& protocol_category() noexcept {
  static const ProtocolCategory category;
  return category;
}

std::error_code make_error_code(ProtocolError error) noexcept {
  return {static_cast<int>(error), protocol_category()};
}

MessageType type_of(const Message& message) noexcept {
  return static_cast<MessageType>(message.index() + 1);
}

std::error_code encode(const Message& message, std::uint32_t request_id,
                       std::vector<std::uint8_t>& out) {
  out.clear();
  Writer w(out);
  w.integer(magic);
  w.integer(protocol_version);
  w.enumeration(type_of(message));
  w.integer(std::uint32_t{0});  // body length, patched below
  w.integer(request_id);
  w.integer(std::uint32_t{0});  // reserved
  std::visit([&](const auto& body) { write(w, body); }, message);
  const std::size_t body = out.size() - header_size;
  if (w.error() != ProtocolError{}) return w.error();
  if (out.size() > max_datagram) return ProtocolError::oversized;
  put_u32(out.data() + 4, body);
  return {};
}

std::error_code append_to_batch(std::vector<std::uint8_t>& datagram, const Packet& packet) {
  constexpr std::size_t count_at = header_size;
  if (datagram.size() < header_size) return encode(packet, 0, datagram);
  if (datagram[3] == static_cast<std::uint8_t>(MessageType::packet)) {
    // A lone PACKET becomes a batch of one: the body moves behind the count and its length.
    const std::size_t body = datagram.size() - header_size;
    datagram.insert(datagram.begin() + header_size, 8, 0);
    datagram[3] = static_cast<std::uint8_t>(MessageType::packet_batch);
    put_u32(datagram.data() + count_at, 1);
    put_u32(datagram.data() + count_at + 4, body);
  }
  const std::uint32_t count = get_u32(datagram.data() + count_at);
  if (count >= max_entries) return ProtocolError::oversized;
  const std::size_t before = datagram.size();
  Writer w(datagram);
  write_batch_entry(w, packet);
  if (w.error() != ProtocolError{} || datagram.size() > max_datagram) {
    datagram.resize(before);
    return ProtocolError::oversized;
  }
  put_u32(datagram.data() + count_at, count + 1);
  put_u32(datagram.data() + 4, datagram.size() - header_size);
  return {};
}

std::error_code append_frame(std::vector<std::uint8_t>& datagram, std::uint32_t channel_id,
                             std::uint32_t from_member, std::span<const std::uint8_t> frame) {
  constexpr std::size_t count_at = header_size + 4;
  if (frame.size() > max_frame) return ProtocolError::oversized;
  if (datagram.size() < count_at + 4) {
    if (const auto error = encode(ChannelFrames{channel_id, {}}, 0, datagram)) return error;
  }
  const std::uint32_t count = get_u32(datagram.data() + count_at);
  if (count >= max_entries || datagram.size() + 8 + frame.size() > max_datagram) {
    return ProtocolError::oversized;
  }
  Writer w(datagram);
  w.integer(from_member);
  w.bytes(frame);
  put_u32(datagram.data() + count_at, count + 1);
  put_u32(datagram.data() + 4, datagram.size() - header_size);
  return {};
}

std::error_code decode(std::span<const std::uint8_t> datagram, Decoded& out) {
  if (datagram.size() > max_datagram) return ProtocolError::oversized;
  if (datagram.size() < header_size) return ProtocolError::short_header;
  Reader header(datagram.first(header_size));
  if (header.integer<std::uint16_t>() != magic) return ProtocolError::bad_magic;
  out.header.version = header.integer<std::uint8_t>();
  if (out.header.version != protocol_version) return ProtocolError::bad_version;
  const auto type = header.integer<std::uint8_t>();
  out.header.body_length = header.integer<std::uint32_t>();
  out.header.request_id = header.integer<std::uint32_t>();
  if (!message_for(type, out.message)) return ProtocolError::unknown_type;
  out.header.type = static_cast<MessageType>(type);
  if (out.header.body_length != datagram.size() - header_size) {
    return ProtocolError::length_mismatch;
  }
  Reader body(datagram.subspan(header_size));
  std::visit([&](auto& message) { read(body, message); }, out.message);
  return body.finish();
}

}  // namespace pktbroker::proto
