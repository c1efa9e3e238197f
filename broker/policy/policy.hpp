// The compiled policy: broker settings plus rules evaluated first-match-wins.
#pragma once

#include "broker/packet_meta.hpp"
#include "broker/policy/rule_index.hpp"
#include "broker/verdict.hpp"
#include "pktbroker/packet_view.hpp"
#include "pktbroker/protocol.hpp"
#include "plugins/host/plugin_spec.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pktbroker {

/// Settings of one kernel queue (policy `broker.queues[]`).
struct QueueConfig {
  std::uint16_t num = 0;
  bool fail_open = true;              ///< kernel accepts instead of dropping when the queue is full
  std::uint32_t max_len = 4096;       ///< kernel queue length
  std::uint32_t copy_range = 0xffff;  ///< bytes of each packet copied to us
  bool gso = true;                    ///< receive GSO super-packets unsegmented
  bool uid_gid = true;                ///< ask for socket owner uid/gid
  bool conntrack = true;              ///< ask for conntrack state

  friend bool operator==(const QueueConfig&, const QueueConfig&) = default;
};

class Matcher;  // compiled match expression, internal to the policy component

/// The client socket (policy `socket:` section).
/// What the event log records (`events: {types: [...]}`).
enum class EventType : std::uint8_t {
  drop,     ///< a packet dropped
  accept,   ///< a packet accepted or repeated
  hold,     ///< a plugin holds a packet
  session,  ///< a client session opened or closed
  reload,   ///< the policy reloaded (or a reload was rejected)
  channel,  ///< a member joined or left a channel, or was kicked
};
constexpr std::uint32_t event_type_bit(EventType type) noexcept {
  return 1U << static_cast<unsigned>(type);
}

/// `events:`: the EVE JSON event log.
struct EventsConfig {
  std::string file;  ///< empty: no event log
  std::uint32_t types = event_type_bit(EventType::drop) | event_type_bit(EventType::hold) |
                        event_type_bit(EventType::session) | event_type_bit(EventType::reload) |
                        event_type_bit(EventType::channel);
  std::uint32_t rate_limit = 10000;  ///< events a second; more are counted, not written
  friend bool operator==(const EventsConfig&, const EventsConfig&) = default;
};

struct SocketConfig {
  std::string path = "/run/pktbroker/broker.sock";
  std::uint32_t mode = 0660;
  std::string group;                 ///< owning group of the socket; empty: root's
  std::uint32_t queue_limit = 1024;  ///< packets waiting to be written to one session
  // Bounds on what clients may take (an unprivileged client must not pin a queue or the broker).
  std::uint32_t max_sessions = 256;         ///< connections at once
  std::uint32_t max_sessions_per_uid = 32;  ///< connections of one non-root uid
  std::uint32_t max_subscriptions = 64;     ///< per session
  std::uint32_t hello_timeout_ms = 5000;    ///< a connection must say HELLO within this
  std::uint32_t max_timeout_ms = 60'000;    ///< the longest a subscription may hold a packet
  std::uint32_t max_outstanding = 1024;     ///< packets one session holds undecided
  /// Packets all sessions of one non-root uid hold undecided. (All non-root sessions together
  /// hold at most half of each queue's max_len, so clients cannot fill a queue.)
  std::uint32_t max_outstanding_per_uid = 1024;
};

/// Rights given to connecting processes (policy `clients:` section). Exactly one of user,
/// group or uid is set; `allowed` (when set) limits the packets the session may see or decide.
struct ClientGrant {
  enum class Kind : std::uint8_t { uid, gid };
  Kind kind = Kind::uid;
  std::uint32_t id = 0;
  std::uint8_t roles = 0;  ///< proto::Role bits
  std::shared_ptr<const Matcher> allowed;
  std::string
      allowed_text;    ///< `allowed:` as written: a reload keeps sessions whose grant it keeps
  std::string origin;  ///< "file:line", for logs
};

/// A channel the policy declares (`channels:`): what a CHANNEL_CREATE would say, plus a tap.
struct ChannelConfig {
  proto::ChannelCreate spec;
  /// Tap (ethernet channel) or tun (ip channel) interfaces the broker creates, each a member.
  std::vector<std::string> taps;
  std::string origin;  ///< "file:line", for messages
  int column = 0;
};

/// `broker.identity:`: finding the process behind a packet, for rules with `app.*` fields.
struct IdentityConfig {
  bool bpf = true;  ///< use the eBPF program (else sock_diag and /proc only)
  /// A packet whose process is not known yet waits at most this long, then takes `fallback`.
  std::uint32_t timeout_ms = 500;
  Verdict fallback{VerdictKind::drop, std::nullopt};  ///< never accept an unknown sender
  std::uint32_t max_waiting = 1024;  ///< packets waiting for a lookup per queue; more: fallback
  friend bool operator==(const IdentityConfig&, const IdentityConfig&) = default;
};

/// Policy `broker:` section.
struct BrokerConfig {
  std::vector<QueueConfig> queues{QueueConfig{}};
  Verdict default_verdict{};    ///< no rule matched
  Verdict malformed_verdict{};  ///< the packet could not be parsed
  SocketConfig socket;
  std::vector<ClientGrant> clients;  ///< root is always granted every role
  std::vector<PluginSpec> plugins;   ///< policy `plugins:` section, in load order
  std::size_t max_flows = 65536;     ///< per queue, when plugins are loaded
  /// `metrics: {listen: ADDR:PORT}`: where Prometheus scrapes; empty: no endpoint.
  std::string metrics_listen;
  EventsConfig events;
  std::vector<ChannelConfig> channels;  ///< policy `channels:` section
  IdentityConfig identity;
};

/// A rule's hand-over to client subscriptions (verdict `{deliver: NAME, ...}`).
struct Delivery {
  std::string subscription;  ///< subscriptions with this name receive the packet
  std::uint32_t timeout_ms = 500;
};

/// A rule's hand-over to plugins (verdict `{inspect: [dns, ...], fallback: V, timeout_ms: N}`):
/// when the packet's flow is handled by one of `plugins`, that plugin's decision applies.
struct Inspect {
  std::vector<std::string> plugins;
  std::uint32_t hold_timeout_ms = 2000;  ///< how long a held packet waits before the fallback
};

/// A rule's hand-over to a person (verdict `{ask: true, timeout_ms: N, fallback: V}`): the
/// first packet of a new connection waits for a prompt client of the connection's user.
struct Ask {
  std::uint32_t timeout_ms = 30'000;  ///< then the rule's fallback
};

/// A process, as `until: {app-exit: PID, start: TICKS}` names it (the start time tells a
/// reused pid apart).
struct ProcessRef {
  std::uint32_t pid = 0;
  std::uint64_t start_ticks = 0;
  friend bool operator==(const ProcessRef&, const ProcessRef&) = default;
};

/// One compiled rule.
struct Rule {
  std::string name;
  std::string file;  ///< where it was defined
  int line = 0;
  int priority = 0;          ///< `priority:` (rules are sorted by it, then by reading order)
  std::string match_text;    ///< `match:` as written, in YAML flow form (for listings)
  std::string verdict_text;  ///< `verdict:` as written
  /// `until:`: when the rule stops applying (it is left out of policies loaded after that).
  std::optional<std::chrono::system_clock::time_point> until;
  std::optional<ProcessRef> until_exit;  ///< `until: {app-exit: ...}`: while it runs
  Verdict verdict;  ///< the decision, or with `deliver`/`inspect`/`ask` the fallback
  std::optional<Ask> ask;
  /// `answers: RULE`: an answer rule (from a user's answer file). It is tried only when the
  /// ask rule RULE matched, and sits just before it.
  std::string answers;
  std::uint32_t answer_uid = 0;  ///< an answer rule: whose (the only uid it matches)
  std::size_t answer_rules = 0;  ///< an ask rule: how many answer rules sit just before it
  std::optional<Delivery> deliver;
  std::optional<Inspect> inspect;
  /// `mirror: CHANNEL`: a copy of each packet the rule decides goes to this ip channel.
  std::string mirror;
  std::shared_ptr<const Matcher> matcher;  ///< never null
};

/// Immutable once built; shared between queues by shared_ptr<const Policy>.
class Policy {
 public:
  static constexpr std::size_t no_match = static_cast<std::size_t>(-1);

  Policy(BrokerConfig broker, std::vector<Rule> rules);

  [[nodiscard]] const BrokerConfig& broker() const noexcept { return broker_; }
  [[nodiscard]] std::span<const Rule> rules() const noexcept { return rules_; }
  /// Whether a rule matches `dst_name:` (the dispatcher then looks names up).
  [[nodiscard]] bool uses_dst_name() const noexcept { return uses_dst_name_; }
  /// The first rule that names `app.*` fields, or no_match: a packet that a rule before it
  /// matches is decided without knowing its process.
  [[nodiscard]] std::size_t first_app_rule() const noexcept { return first_app_rule_; }
  [[nodiscard]] bool uses_app() const noexcept { return first_app_rule_ != no_match; }
  /// The earliest `until:` of its rules: the policy must be loaded again then.
  [[nodiscard]] std::optional<std::chrono::system_clock::time_point> next_expiry() const noexcept;
  /// Rules the files hold that had expired when it was loaded ("name (file:line)").
  [[nodiscard]] const std::vector<std::string>& expired() const noexcept { return expired_; }
  void set_expired(std::vector<std::string> expired) { expired_ = std::move(expired); }
  /// The processes whose exit ends a rule (`until: {app-exit: ...}`): reload when one exits.
  [[nodiscard]] std::vector<ProcessRef> app_exits() const;
  [[nodiscard]] bool uses_ask() const noexcept { return uses_ask_; }

  /// Index of the first rule that matches, or no_match. Never throws, never allocates.
  /// Answer rules are not tried here: the caller tries them when their ask rule matched.
  /// Only the rules the index cannot rule out by protocol, destination port, address or mark
  /// are tested (see RuleIndex); the answer is the same as testing every rule in order.
  [[nodiscard]] std::size_t match(const PacketMeta& meta, const PacketView& view) const noexcept;

  /// How many rules `match` tests at most for this packet.
  [[nodiscard]] std::size_t candidates(const PacketMeta& meta,
                                       const PacketView& view) const noexcept {
    return index_.candidates(meta, view);
  }

 private:
  BrokerConfig broker_;
  std::vector<Rule> rules_;
  RuleIndex index_;
  bool uses_dst_name_ = false;
  std::size_t first_app_rule_ = no_match;
  bool uses_ask_ = false;
  std::vector<std::string> expired_;
};

/// One problem found while loading a policy, with its position (1-based line and column).
struct Diagnostic {
  std::string file;
  int line = 0;
  int column = 0;
  std::string message;

  /// "file:line:column: error: message"
  [[nodiscard]] std::string to_string() const;
};

/// Thrown by the loaders; carries every problem found, not just the first.
class PolicyError : public std::runtime_error {
 public:
  explicit PolicyError(std::vector<Diagnostic> diagnostics);
  [[nodiscard]] const std::vector<Diagnostic>& diagnostics() const noexcept { return diagnostics_; }

 private:
  std::vector<Diagnostic> diagnostics_;
};

/// Loads `file` and the drop-ins in `policy.d/*.yaml` beside it (file-name order).
std::shared_ptr<const Policy> load_policy(const std::filesystem::path& file);

/// A user's answer file: `policy.d/answers-uid<UID>.yaml`. Only rules with `answers:` are
/// allowed there, and each must match `uid: UID` alone.
std::filesystem::path answer_file(const std::filesystem::path& config, std::uint32_t uid);

/// The problems of an answer file's text, as the loader would find them at `path` (one with
/// problems is left out whole when the policy loads).
std::vector<Diagnostic> check_answer_file(std::string_view text, const std::filesystem::path& path);

/// Compiles a `match:` expression given in YAML flow form (a client's subscription selector).
/// An empty text matches every packet. Throws PolicyError.
std::shared_ptr<const Matcher> compile_match(std::string_view yaml, std::string_view source);

/// Parses one YAML document (no drop-ins); `file_name` is used in diagnostics.
std::shared_ptr<const Policy> parse_policy(std::string_view yaml, std::string_view file_name);

}  // namespace pktbroker
