/// @file protocol.hpp
/// @brief Messages of the broker <-> client protocol (one message per SOCK_SEQPACKET datagram).
///
/// Every datagram starts with a 16-byte Header; the body layout of each message type is given
/// in proto/README.md. All integers are big-endian. Decoding treats every byte as hostile: see
/// codec.hpp.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace pktbroker::proto {

/// Protocol version spoken by this library.
inline constexpr std::uint8_t protocol_version = 1;
/// First two bytes of every datagram ("PB").
inline constexpr std::uint16_t magic = 0x5042;
/// Size of the fixed header.
inline constexpr std::size_t header_size = 16;
/// Largest datagram either side sends or accepts.
inline constexpr std::size_t max_datagram = std::size_t{256} * 1024;
/// Largest packet payload carried in PACKET or VERDICT.
inline constexpr std::size_t max_payload = 65535;
/// Longest plugin name in PLUGIN_COMMAND (at least 1 byte).
inline constexpr std::size_t max_plugin_name = 32;
/// Most arguments in one PLUGIN_COMMAND.
inline constexpr std::size_t max_plugin_args = 16;
/// Longest single PLUGIN_COMMAND argument.
inline constexpr std::size_t max_plugin_arg = 256;
/// Longest PLUGIN_COMMAND_REPLY text: 64 KiB less the one byte a u16 string length cannot say.
inline constexpr std::size_t max_plugin_reply_text = 65535;
/// Longest channel name (at least 1 byte): [a-z0-9_.-].
inline constexpr std::size_t max_channel_name = 64;
/// Largest frame a channel carries (CHANNEL_SEND, CHANNEL_FRAMES).
inline constexpr std::size_t max_frame = 65535;
/// Channel names: 1 to max_channel_name of a-z, 0-9, '_', '.' and '-'.
inline bool valid_channel_name(std::string_view name) noexcept {
  for (const char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-')) {
      return false;
    }
  }
  return !name.empty() && name.size() <= max_channel_name;
}
/// Default Unix socket path of the broker.
inline constexpr const char* default_socket_path = "/run/pktbroker/broker.sock";

/// Message type codes (header byte 3).
enum class MessageType : std::uint8_t {
  hello = 1,
  welcome = 2,
  subscribe = 3,
  subscribed = 4,
  unsubscribe = 5,
  packet = 6,
  verdict = 7,
  verdict_batch = 8,
  stats_request = 9,
  stats_reply = 10,
  sessions_request = 11,
  sessions_reply = 12,
  reload_request = 13,
  reload_reply = 14,
  error = 15,
  ping = 16,
  pong = 17,
  packet_batch = 18,
  plugin_command = 19,
  plugin_command_reply = 20,
  channel_create = 21,
  channel_join = 22,
  channel_joined = 23,
  channel_send = 24,
  channel_frames = 25,
  channel_leave = 26,
  channel_left = 27,
  channel_flow = 28,
  channels_request = 29,
  channels_reply = 30,
  channel_kick = 31,
  ok = 32,
  rules_request = 33,
  rules_reply = 34,
  prompt_watch = 35,
  prompt = 36,
  prompt_answer = 37,
  prompt_closed = 38,
  pending_request = 39,
  pending_reply = 40,
  apps_request = 41,
  apps_reply = 42,
  rule_add = 43,
  rule_delete = 44,
};

/// Rights a session may hold (bit mask).
enum Role : std::uint8_t {
  role_observe = 1 << 0,  ///< receive copies of packets
  role_verdict = 1 << 1,  ///< own and decide packets
  role_manage = 1 << 2,   ///< control commands (stats, sessions, reload, plugin commands)
  /// Join channels. Granted to every peer that may open the socket: what it may do on a channel
  /// is that channel's `access:` list.
  role_channel = 1 << 3,
  /// Watch and answer the `ask` prompts of the session's own user (root: of every user), list
  /// them, and write that user's answer rules.
  role_prompt = 1 << 4,
};

/// Rights on a channel (bit mask), as IPN's read/write/manage.
enum ChannelRight : std::uint8_t {
  right_receive = 1 << 0,  ///< receive the frames the delivery policy sends this member
  right_send = 1 << 1,     ///< send frames
  right_manage = 1 << 2,   ///< see the channel's members and kick them
};
inline constexpr std::uint8_t all_channel_rights = right_receive | right_send | right_manage;

/// What a channel's frames are: Ethernet frames (taps, the switch policy) or IP packets
/// (tun devices, mirrors of queued packets).
enum class LinkType : std::uint8_t { ethernet = 0, ip = 1 };

/// What a channel does with a frame for a member whose queue is full.
enum class Overflow : std::uint8_t {
  drop = 0,          ///< that member misses it (counted); the others get it
  backpressure = 1,  ///< senders are paused (CHANNEL_FLOW) until the member catches up
};

/// How a subscriber takes part in a packet's fate.
enum class SubscriptionMode : std::uint8_t { verdict = 0, observe = 1 };

/// What happens when several verdict subscriptions select the same packet.
enum class Clash : std::uint8_t {
  exclusive = 0,  ///< only one subscriber may hold an overlapping selector
  chain = 1,      ///< by priority; `pass` hands the packet to the next one, then to the policy
  balance = 2,    ///< flows are spread over the subscribers by flow hash
};

/// A client's decision. `pass` means "no opinion": the next subscriber or the policy decides.
enum class VerdictCode : std::uint8_t { accept = 0, drop = 1, repeat = 2, pass = 3 };

/// Conntrack state of a delivered packet.
enum class CtStateCode : std::uint8_t { none = 0, new_ = 1, established = 2, related = 3 };

/// Error codes carried by ERROR messages.
enum class ErrorCode : std::uint16_t {
  malformed = 1,  ///< the peer's datagram could not be decoded; the session is closed
  /// The session lacks the role, the grant does not cover the selector, or a bound of the
  /// policy's `socket:` section was reached (sessions, subscriptions, timeout): the text says.
  not_permitted = 2,
  busy = 3,           ///< an exclusive subscription clashes with another session's
  bad_selector = 4,   ///< the selector does not compile
  unknown_token = 5,  ///< a verdict for a packet the session does not own (or no longer)
  bad_payload = 6,    ///< a replacement payload is too large or not a well-formed IP packet
  unknown_subscription = 7,
  version = 8,  ///< no common protocol version
  internal = 9,
  unknown_channel = 10,  ///< no channel of that name, or the session is not a member of it
  channel_full = 11,     ///< the channel has its most members, or the broker its most channels
  bad_frame = 12,        ///< a frame too long or too short for its channel, never forwarded
  /// No pending prompt with that id that this session may answer (unknown, already answered,
  /// timed out, or another user's: one answer for all, so ids of others cannot be probed).
  unknown_prompt = 13,
  bad_rule = 14,      ///< a rule to add does not compile or is not the user's to add
  unknown_rule = 15,  ///< no answer rule of that name that this session may delete
};

/// The fixed header in front of every body.
struct Header {
  std::uint8_t version = protocol_version;
  MessageType type = MessageType::ping;
  std::uint32_t body_length = 0;
  std::uint32_t request_id = 0;  ///< echoed in the reply to a request; 0 for unsolicited messages
};

/// Optional behaviour a client asks for in HELLO and the broker grants in WELCOME (bit mask).
enum Feature : std::uint32_t {
  /// Several packets may come in one PACKET_BATCH datagram. Without it every packet is a PACKET
  /// of its own: what a client needs that reads the socket into a fixed buffer of its own.
  feature_packet_batch = 1U << 0,
};
inline constexpr std::uint32_t supported_features = feature_packet_batch;

/// Opens a session: who the client is and which roles it wants.
struct Hello {
  std::string client_name;
  std::uint8_t roles = 0;  ///< Role bits requested
  std::uint8_t min_version = protocol_version;
  std::uint8_t max_version = protocol_version;
  std::uint32_t features = 0;  ///< Feature bits asked for (sent only when not 0)
};

/// The broker's answer to Hello.
struct Welcome {
  std::uint8_t version = protocol_version;
  std::uint32_t session_id = 0;
  std::uint8_t roles = 0;  ///< Role bits granted
  std::string broker_version;
  std::uint32_t features = 0;  ///< Feature bits granted (sent only when HELLO asked for any)
};

/// Asks for packets matching `selector`, a policy `match:` expression in YAML flow form, e.g.
/// `{mark: {value: 1, mask: 0xff}, proto: tcp}` (empty: every packet).
struct Subscribe {
  std::string name;
  std::string selector;
  SubscriptionMode mode = SubscriptionMode::verdict;
  Clash clash = Clash::exclusive;
  std::int32_t priority = 0;                   ///< chain order, lower first
  std::uint32_t snaplen = 0xffff;              ///< bytes of each packet to deliver
  std::uint32_t timeout_ms = 1000;             ///< verdict subscriptions: time to answer
  VerdictCode fallback = VerdictCode::accept;  ///< applied on timeout, disconnect, overflow
};

struct Subscribed {
  std::uint32_t subscription_id = 0;
};

struct Unsubscribe {
  std::uint32_t subscription_id = 0;
};

/// A delivered packet. `payload` points into the received datagram.
struct Packet {
  std::uint64_t token = 0;  ///< names the packet in a Verdict
  std::uint32_t subscription_id = 0;
  bool needs_verdict = false;  ///< false for observer copies
  std::uint16_t queue = 0;
  std::uint8_t hook = 0;
  CtStateCode ct_state = CtStateCode::none;
  std::uint32_t mark = 0;
  std::uint32_t in_ifindex = 0;
  std::uint32_t out_ifindex = 0;
  std::optional<std::uint32_t> uid;
  std::optional<std::uint32_t> gid;
  std::uint64_t timestamp_ns = 0;  ///< CLOCK_REALTIME when the broker received it
  std::uint32_t wire_length = 0;   ///< length on the wire (payload may be shorter)
  std::span<const std::uint8_t> payload;
};

/// A decision for one packet. `payload` (when not empty) replaces the packet's bytes.
struct Verdict {
  std::uint64_t token = 0;
  VerdictCode verdict = VerdictCode::accept;
  std::optional<std::uint32_t> mark;
  std::span<const std::uint8_t> payload;
};

/// Several packets in one datagram: what the broker sends when more than one packet for a
/// session is ready at once (one wake-up and one read of the client for all of them).
struct PacketBatch {
  std::vector<Packet> packets;
};

/// Several decisions without payloads.
struct VerdictBatch {
  std::vector<Verdict> verdicts;
};

struct StatsRequest {};
struct StatsEntry {
  std::string scope;  ///< e.g. "queue 0", "rule no-telnet", "session 7"
  std::string name;   ///< e.g. "packets", "timeouts"
  std::uint64_t value = 0;
};
struct StatsReply {
  std::vector<StatsEntry> entries;
};

struct SessionsRequest {};
struct SessionInfo {
  std::uint32_t id = 0;
  std::string name;
  std::uint32_t pid = 0;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint8_t roles = 0;
  std::uint32_t subscriptions = 0;
  std::uint32_t outstanding = 0;  ///< packets awaiting this session's verdict
  std::uint64_t delivered = 0;
  std::uint64_t verdicts = 0;
  std::uint64_t fallbacks = 0;  ///< timeouts + overflows + disconnect
};
struct SessionsReply {
  std::vector<SessionInfo> sessions;
};

struct ReloadRequest {};
struct ReloadReply {
  bool ok = false;
  std::string text;  ///< the diagnostics when not ok
};

/// A command for a loaded plugin's command hook (manage role), e.g. plugin "resend" with
/// args {"wakeup", "--iface", "ppp0"}. What the args mean is the plugin's business.
struct PluginCommand {
  std::string plugin;             ///< the plugin's name, 1..max_plugin_name bytes
  std::vector<std::string> args;  ///< at most max_plugin_args, each at most max_plugin_arg bytes
};
/// The plugin's answer to a PluginCommand.
struct PluginCommandReply {
  bool ok = false;
  std::string text;  ///< the output, or why it failed; at most max_plugin_reply_text bytes
};

/// Who may do what on a channel: a uid or gid and its ChannelRight bits.
struct ChannelAccess {
  enum class Kind : std::uint8_t { uid = 0, gid = 1 };
  Kind kind = Kind::uid;
  std::uint32_t id = 0;
  std::uint8_t rights = 0;
  friend bool operator==(const ChannelAccess&, const ChannelAccess&) = default;
};

/// Creates a channel at run time (manage role). Answered with OK.
struct ChannelCreate {
  std::string name;      ///< 1..max_channel_name of a-z, 0-9, '_', '.', '-'
  std::string delivery;  ///< the delivery-policy plugin: "broadcast", "switch", ...
  LinkType link = LinkType::ethernet;
  std::uint32_t max_members = 16;
  std::uint32_t max_frame = 1518;
  std::uint32_t queue_length = 256;  ///< frames waiting for one member
  Overflow overflow = Overflow::drop;
  std::vector<ChannelAccess> access;  ///< root may always do everything
};

/// Joins a channel asking for `rights` (0: every right the channel gives this peer).
struct ChannelJoin {
  std::string channel;
  std::uint8_t rights = 0;
};
/// The answer to ChannelJoin: the rights granted and what the channel carries.
struct ChannelJoined {
  std::uint32_t channel_id = 0;  ///< names the channel in CHANNEL_SEND, FRAMES, LEAVE
  std::uint32_t member_id = 0;   ///< this member, as other members see it in frames
  std::uint8_t rights = 0;
  LinkType link = LinkType::ethernet;
  std::uint32_t max_frame = 0;
};
/// A frame to the channel's members (send right). No reply; a refusal comes as ERROR.
struct ChannelSend {
  std::uint32_t channel_id = 0;
  std::span<const std::uint8_t> frame;
};
/// One frame as a member receives it.
struct ChannelFrame {
  std::uint32_t from_member = 0;  ///< 0: the broker (a mirror of a queued packet)
  std::span<const std::uint8_t> frame;
};
/// Frames for a member, as many as were ready at once.
struct ChannelFrames {
  std::uint32_t channel_id = 0;
  std::vector<ChannelFrame> frames;
};
struct ChannelLeave {
  std::uint32_t channel_id = 0;
};
/// The member left: the answer to ChannelLeave (reason empty), or, unsolicited, why the broker
/// removed it (kicked).
struct ChannelLeft {
  std::uint32_t channel_id = 0;
  std::string reason;
};
/// Backpressure: stop sending on this channel (paused) or go on.
struct ChannelFlow {
  std::uint32_t channel_id = 0;
  bool paused = false;
};
struct ChannelsRequest {};
struct ChannelMemberInfo {
  std::uint32_t member_id = 0;
  std::uint32_t session_id = 0;  ///< 0 for a tap device
  std::string name;              ///< the client's name, or "tap IFNAME"
  std::uint32_t pid = 0;
  std::uint32_t uid = 0;
  std::uint8_t rights = 0;
  std::uint64_t received = 0;  ///< frames delivered to it
  std::uint64_t sent = 0;      ///< frames it sent
  std::uint64_t dropped = 0;   ///< frames it missed (its queue was full)
  std::uint32_t queued = 0;    ///< frames waiting for it now
};
struct ChannelInfo {
  std::string name;
  std::string delivery;
  LinkType link = LinkType::ethernet;
  Overflow overflow = Overflow::drop;
  std::uint32_t max_members = 0;
  std::uint32_t max_frame = 0;
  std::uint32_t queue_length = 0;
  std::uint64_t frames = 0;     ///< frames sent into the channel
  std::uint64_t delivered = 0;  ///< copies delivered to members
  std::uint64_t dropped = 0;    ///< copies members missed
  std::uint64_t refused = 0;    ///< frames refused (bad, no right, paused)
  std::vector<ChannelMemberInfo> members;
};
/// The channels the session may see: all with the manage role, else those it may manage.
struct ChannelsReply {
  std::vector<ChannelInfo> channels;
};
/// Removes a member (manage role, or the channel's manage right). Answered with OK.
struct ChannelKick {
  std::string channel;
  std::uint32_t member_id = 0;
};
/// The policy's rules in the order they are tried (manage role).
struct RulesRequest {};
struct RuleInfo {
  std::string name;
  std::string origin;  ///< "file:line"
  std::int32_t priority = 0;
  std::string match;          ///< as written, in YAML flow form
  std::string verdict;        ///< as written
  std::uint64_t packets = 0;  ///< packets it decided, summed over the queues
  std::uint64_t bytes = 0;
};
struct RulesReply {
  std::vector<RuleInfo> rules;
};
// Prompts: a rule's `ask` verdict holds a new connection's first packet until a prompt client
// of the connection's user answers, or the rule's timeout gives its fallback.

/// Which prompts a PROMPT_WATCH session is sent.
enum class PromptScope : std::uint8_t {
  own = 0,  ///< its own user's
  all = 1,  ///< every user's (root only)
};
/// Starts sending this session PROMPT and PROMPT_CLOSED messages. Replied with OK, then a
/// PROMPT for each one already pending.
struct PromptWatch {
  PromptScope scope = PromptScope::own;
};
/// A question (unsolicited, to watching sessions; also an entry of PENDING_REPLY). Identical
/// questions (same user, program, destination and rule) are merged: `waiting` connections.
struct Prompt {
  std::uint64_t id = 0;
  std::uint32_t uid = 0;  ///< whose connection it is
  std::uint32_t pid = 0;
  std::string path;     ///< the program (app.path)
  std::string name;     ///< comm
  std::string cmdline;  ///< cut to max_prompt_cmdline bytes
  std::uint8_t protocol = 0;
  std::string destination;  ///< the address, as text
  std::uint16_t port = 0;   ///< destination port (0 without ports)
  std::string rule;         ///< the ask rule
  std::uint32_t waiting = 0;
  std::uint32_t left_ms = 0;  ///< until the fallback applies
  VerdictCode fallback = VerdictCode::drop;
};
inline constexpr std::size_t max_prompt_cmdline = 512;

enum class AnswerDecision : std::uint8_t { allow = 0, deny = 1 };
/// How long an answer lasts. Every span decides the waiting connections; the others also
/// write a rule into the user's answer file (policy.d/answers-uid<UID>.yaml).
enum class AnswerSpan : std::uint8_t {
  once = 0,      ///< these connections only
  minutes = 1,   ///< a rule until `minutes` from now
  app_exit = 2,  ///< a rule until the process exits
  always = 3,    ///< a rule without end
};
inline constexpr std::uint32_t max_answer_minutes = 7 * 24 * 60;
/// Answers a prompt (prompt role: the prompt's user, or root). Replied with OK, whose text
/// says how many connections it released and the rule it wrote.
struct PromptAnswer {
  std::uint64_t id = 0;
  AnswerDecision decision = AnswerDecision::deny;
  AnswerSpan span = AnswerSpan::once;
  std::uint32_t minutes = 0;  ///< 1..max_answer_minutes with AnswerSpan::minutes, else 0
};
enum class PromptEnd : std::uint8_t { answered = 0, timed_out = 1 };
/// A prompt is over (unsolicited, to the sessions it was sent to).
struct PromptClosed {
  std::uint64_t id = 0;
  PromptEnd how = PromptEnd::answered;
  VerdictCode verdict = VerdictCode::drop;  ///< what its connections got
  std::string text;                         ///< who answered, and how
};
struct PendingRequest {};
struct PendingReply {
  std::vector<Prompt> prompts;  ///< those the session may answer, oldest first
};
/// Programs the broker recently saw open connections (APPS_REQUEST: manage or prompt role; a
/// non-root prompt session sees its own user's).
struct AppsRequest {};
struct AppSeen {
  std::uint32_t uid = 0;
  std::uint32_t pid = 0;
  std::string path;
  std::string name;
  std::uint64_t connections = 0;
  std::uint32_t idle_ms = 0;              ///< since its last new connection
  std::vector<std::string> destinations;  ///< the latest, newest first ("tcp 10.0.0.2:80")
};
struct AppsReply {
  std::vector<AppSeen> apps;
};
/// Writes a rule into a user's answer file (prompt or manage role; only root names another
/// uid). It is tried only where the ask rule `answers` matched, and only for that user's
/// packets (the broker adds `uid:` to the match). Replied with OK: the new rule's name.
inline constexpr std::uint32_t own_uid = 0xffffffff;  ///< RuleAdd::uid: the session's own
struct RuleAdd {
  std::uint32_t uid = own_uid;                ///< whose; another than the session's own: root only
  std::string answers;                        ///< the ask rule it answers
  std::string match;                          ///< YAML flow mapping, as a rule's match:
  VerdictCode verdict = VerdictCode::accept;  ///< accept or drop
  std::string until;  ///< empty (no end), a duration (90s, 5m, 2h, 7d) or a UTC time
};
/// Removes a rule from an answer file (its user's, or root). Replied with OK.
struct RuleDelete {
  std::string name;
};

/// A request that returns nothing else succeeded.
struct Ok {
  std::string text;
};

struct Error {
  ErrorCode code = ErrorCode::internal;
  std::string text;
};

struct Ping {};
struct Pong {};

/// Any message body.
using Message = std::variant<
    Hello, Welcome, Subscribe, Subscribed, Unsubscribe, Packet, Verdict, VerdictBatch, StatsRequest,
    StatsReply, SessionsRequest, SessionsReply, ReloadRequest, ReloadReply, Error, Ping, Pong,
    PacketBatch, PluginCommand, PluginCommandReply, ChannelCreate, ChannelJoin, ChannelJoined,
    ChannelSend, ChannelFrames, ChannelLeave, ChannelLeft, ChannelFlow, ChannelsRequest,
    ChannelsReply, ChannelKick, Ok, RulesRequest, RulesReply, PromptWatch, Prompt, PromptAnswer,
    PromptClosed, PendingRequest, PendingReply, AppsRequest, AppsReply, RuleAdd, RuleDelete>;

/// The type code of a message body.
MessageType type_of(const Message& message) noexcept;

}  // namespace pktbroker::proto
