/// @file client.hpp
/// @brief libpktbroker: a blocking client for pktbrokerd's Unix socket.
///
/// A Client connects, says HELLO, subscribes with a selector and then reads packets and answers
/// verdicts. Every call returns a std::error_code; nothing throws. Example:
/// @code
///   pktbroker::Client client;
///   if (auto error = client.connect("/run/pktbroker/broker.sock", "dropper")) return 1;
///   std::uint32_t id = 0;
///   client.subscribe({.name = "marks", .selector = "{mark: 7}"}, id);
///   pktbroker::ReceivedPacket packet;
///   while (!client.next_packet(packet)) client.verdict(packet.info().token,
///   pktbroker::proto::VerdictCode::drop);
/// @endcode
#pragma once

#include "pktbroker/codec.hpp"
#include "pktbroker/packet_view.hpp"
#include "pktbroker/protocol.hpp"

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <variant>
#include <vector>

namespace pktbroker {

/// Errors of the client library (protocol errors use proto::ProtocolError).
enum class ClientError {
  not_connected = 1,  ///< connect() has not succeeded
  closed,             ///< the broker closed the connection
  broker_error,       ///< the broker answered ERROR; see Client::last_error()
  unexpected_reply,   ///< the broker answered with a message of the wrong type
  timeout,            ///< nothing arrived within the given time
  woken,              ///< a nudge() was answered: the wait ended without a packet
  system,             ///< a socket call failed; see errno
  channel_left,       ///< the broker removed this session from a channel; see take_left()
};

/// The error category of ClientError ("pktbroker.client").
const std::error_category& client_category() noexcept;
std::error_code make_error_code(ClientError error) noexcept;

/// A packet delivered by the broker. Shares ownership of the datagram it came in (packets of
/// one PACKET_BATCH share one buffer); the view stays valid while it lives.
class ReceivedPacket {
 public:
  /// Metadata and payload (the payload span points into this object).
  [[nodiscard]] const proto::Packet& info() const noexcept { return packet_; }
  /// The captured bytes, starting at the IP header.
  [[nodiscard]] std::span<const std::uint8_t> payload() const noexcept { return packet_.payload; }
  /// Parses the payload with the same packet view the broker uses.
  ParseError parse(PacketView& view) const noexcept { return parse_packet(payload(), view); }

 private:
  friend class Client;
  friend class AsyncClient;
  std::shared_ptr<const std::vector<std::uint8_t>> datagram_;
  proto::Packet packet_;
};

/// A frame received on a channel. Shares ownership of the datagram it came in (the frames of
/// one CHANNEL_FRAMES share one buffer); data() stays valid while it lives.
class ReceivedFrame {
 public:
  [[nodiscard]] std::uint32_t channel_id() const noexcept { return channel_id_; }
  /// The sending member (ChannelJoined::member_id of its session); 0 for the broker's mirror.
  [[nodiscard]] std::uint32_t from() const noexcept { return from_; }
  [[nodiscard]] std::span<const std::uint8_t> data() const noexcept { return data_; }

 private:
  friend class Client;
  std::shared_ptr<const std::vector<std::uint8_t>> datagram_;
  std::uint32_t channel_id_ = 0;
  std::uint32_t from_ = 0;
  std::span<const std::uint8_t> data_;
};

/// One session with the broker. Not thread-safe: use one Client per thread.
class Client {
 public:
  Client() = default;
  ~Client();
  Client(Client&& other) noexcept;
  Client& operator=(Client&& other) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// Connects to `socket_path` and asks for `roles` (proto::Role bits) and `features`
  /// (proto::Feature bits; without feature_packet_batch every packet comes in a datagram of its
  /// own, for callers that read native_handle() themselves).
  std::error_code connect(const std::string& socket_path, const std::string& name,
                          std::uint8_t roles = proto::role_verdict | proto::role_observe,
                          std::uint32_t features = proto::feature_packet_batch);
  /// Subscribes; on success `subscription_id` names the subscription.
  std::error_code subscribe(const proto::Subscribe& request, std::uint32_t& subscription_id);
  std::error_code unsubscribe(std::uint32_t subscription_id);
  /// Waits for the next packet; `timeout_ms` < 0 waits forever. An ERROR the broker sends on
  /// its own (about an earlier verdict: a late or foreign token, a bad payload) does not end the
  /// wait: it is kept for take_notices(). When the broker closes the session, the wait ends
  /// with ClientError::closed and the notices say why.
  std::error_code next_packet(ReceivedPacket& packet, int timeout_ms = -1);
  /// Waits like next_packet for the first packet, then takes up to `max` in all that are
  /// already waiting, without blocking again: `packets` holds what arrived (on an error after
  /// the first packet, the packets so far and no error). Answer them with one verdicts() call.
  std::error_code next_packets(std::vector<ReceivedPacket>& packets, std::size_t max,
                               int timeout_ms = -1);
  /// True when packets that came in while a request waited for its reply (or the rest of a
  /// batch) are held here: next_packet() hands them out without reading the socket.
  [[nodiscard]] bool holds_packets() const noexcept {
    return !early_packets_.empty() || batch_next_ < batch_packets_.size();
  }
  /// Answers a packet: accept, drop, repeat or pass, optionally with a new mark and new bytes.
  std::error_code verdict(std::uint64_t token, proto::VerdictCode verdict,
                          std::optional<std::uint32_t> mark = std::nullopt,
                          std::span<const std::uint8_t> replacement = {});
  /// Answers many packets in as few messages as possible (VERDICT_BATCH).
  std::error_code verdicts(std::span<const proto::Verdict> verdicts);
  std::error_code stats(proto::StatsReply& reply);
  std::error_code sessions(proto::SessionsReply& reply);
  std::error_code reload(proto::ReloadReply& reply);
  /// Runs a command on a loaded plugin's command hook (needs the manage role): `args` reach the
  /// plugin unchanged and in order. The plugin's answer, success or failure, is in `reply`;
  /// the error code says only whether one came. Fails without sending with
  /// proto::ProtocolError::bad_value for an empty `plugin` and ProtocolError::oversized beyond
  /// proto::max_plugin_name, proto::max_plugin_args or proto::max_plugin_arg; with
  /// ClientError::broker_error (last_error() says why) when the session lacks the manage role.
  std::error_code plugin_command(std::string_view plugin, const std::vector<std::string>& args,
                                 proto::PluginCommandReply& reply);
  std::error_code ping();

  // Channels: connect with proto::role_channel among the roles.
  /// Creates a channel (manage role); the creator's uid gets every right on it.
  std::error_code create_channel(const proto::ChannelCreate& request);
  /// Joins `channel` with `rights` (proto::ChannelRight bits; 0: all the channel gives this
  /// user). `joined` says the rights granted, the channel id and what its frames are.
  std::error_code join_channel(std::string_view channel, std::uint8_t rights,
                               proto::ChannelJoined& joined);
  std::error_code leave_channel(std::uint32_t channel_id);
  /// Sends frames, many per system call. While the channel's backpressure has paused this
  /// sender it waits (frames and packets that arrive meanwhile are kept), so no frame is lost.
  std::error_code send_frames(std::uint32_t channel_id,
                              std::span<const std::span<const std::uint8_t>> frames);
  std::error_code send_frame(std::uint32_t channel_id, std::span<const std::uint8_t> frame) {
    return send_frames(channel_id, std::span(&frame, 1));
  }
  /// Waits for the next frame of any joined channel, like next_packet. Ends once with
  /// ClientError::channel_left for each removal by the broker (take_left() says which).
  std::error_code next_frame(ReceivedFrame& frame, int timeout_ms = -1);
  /// Like next_packets: the first frame waits, the rest are what is already there.
  std::error_code next_frames(std::vector<ReceivedFrame>& frames, std::size_t max,
                              int timeout_ms = -1);
  std::error_code channels(proto::ChannelsReply& reply);
  /// The policy's rules in the order they are tried, with their origin and hit counters.
  std::error_code rules(proto::RulesReply& reply);
  /// Removes a member (manage role, or the channel's manage right).
  std::error_code kick(std::string_view channel, std::uint32_t member_id);
  /// Whether the broker has paused this sender on the channel (backpressure).
  [[nodiscard]] bool paused(std::uint32_t channel_id) const noexcept;
  /// The channels the broker removed this session from since the last call, and why.
  std::vector<proto::ChannelLeft> take_left();

  // Prompts (`ask` rules): connect with proto::role_prompt.
  /// What a watching session hears: a new question, or the end of one.
  using PromptEvent = std::variant<proto::Prompt, proto::PromptClosed>;
  /// Starts hearing the questions for this user (root: PromptScope::all for everyone's); the
  /// ones already pending come first.
  std::error_code watch_prompts(proto::PromptScope scope = proto::PromptScope::own);
  /// Waits for the next question or end of one, like next_packet (at most 1024 are kept).
  std::error_code next_prompt_event(PromptEvent& event, int timeout_ms = -1);
  /// Whether events that came in while a request waited are held here (no need to poll).
  [[nodiscard]] bool holds_prompt_events() const noexcept { return !prompt_events_.empty(); }
  /// Answers a question; `result` says how many connections it released and the rule written.
  std::error_code answer(const proto::PromptAnswer& answer, std::string& result);
  /// The questions waiting now of this session's user (root and the manage role: everyone's).
  std::error_code pending(proto::PendingReply& reply);
  /// Programs seen opening connections lately (prompt role: this user's; manage role: all).
  std::error_code apps(proto::AppsReply& reply);
  /// Writes a rule into an answer file; `name` is the new rule's, with its file.
  std::error_code add_rule(const proto::RuleAdd& rule, std::string& name);
  std::error_code delete_rule(std::string_view name);

  /// Sends a PING without waiting for its PONG, to make native_handle() readable: for callers
  /// that poll it while holds_packets() is true, or that have something of their own to hand
  /// out. next_packet() ends its wait with ClientError::woken when it reads the PONG.
  std::error_code nudge();

  /// The last ERROR received from the broker (a reply to a request, or a notice).
  [[nodiscard]] const proto::Error& last_error() const noexcept { return last_error_; }
  /// The ERRORs the broker sent on its own since the last call, oldest first (at most 64 are
  /// kept; older ones are counted in dropped_notices()).
  std::vector<proto::Error> take_notices();
  [[nodiscard]] std::uint64_t dropped_notices() const noexcept { return dropped_notices_; }
  /// The broker's WELCOME (session id, granted roles).
  [[nodiscard]] const proto::Welcome& welcome() const noexcept { return welcome_; }
  /// Busy-polling: before a wait sleeps, keep reading the socket for up to `spin` (0, the
  /// default: never). When the broker's next message comes within it, neither side pays for a
  /// wake-up. Each wait spins at most `spin`, and the spin comes out of its timeout, not on top
  /// of it, so an idle client burns that much CPU once and then sleeps. A signal during the
  /// spin does not end the wait (no EINTR): wait with a timeout to notice one. It pays only on a
  /// CPU the broker does not need: on the broker's CPU the spin takes the time the broker needed
  /// to send what it waits for.
  void set_busy_poll(std::chrono::microseconds spin) noexcept { spin_ = spin; }
  /// The socket, for poll()/select() integration.
  [[nodiscard]] int native_handle() const noexcept { return fd_; }
  void close() noexcept;

 private:
  std::error_code send(const proto::Message& message, std::uint32_t request_id);
  std::error_code receive(std::vector<std::uint8_t>& buffer, int timeout_ms);

  static constexpr std::size_t max_verdicts_per_batch = 256;
  std::vector<std::uint8_t> scratch_;  ///< receive buffer, max_datagram bytes once used
  /// Sends a request and waits for its reply; packets arriving meanwhile are kept for later.
  template <typename Reply>
  std::error_code request(const proto::Message& message, Reply& reply);

  int fd_ = -1;
  bool found_empty_ = false;           ///< the last read found nothing: the next wait polls first
  std::chrono::microseconds spin_{0};  ///< set_busy_poll()
  /// One read that does not wait: true with a datagram in `buffer`; false when none is waiting
  /// (then `error` says whether the session ended or the socket failed).
  bool read_waiting(std::vector<std::uint8_t>& buffer, std::error_code& error);
  std::uint32_t next_request_ = 1;
  std::deque<std::vector<std::uint8_t>> early_packets_;
  // The PACKET_BATCH being handed out by next_packet, one packet per call.
  std::shared_ptr<const std::vector<std::uint8_t>> batch_;
  std::vector<proto::Packet> batch_packets_;
  std::size_t batch_next_ = 0;
  /// Keeps an unsolicited ERROR (request id 0) for take_notices().
  void keep_notice(const proto::Error& error);
  /// Keeps what arrived unasked while waiting for something else: packets and frames for
  /// later, notices, pauses and removals. False for anything else (a reply).
  bool keep_unsolicited(std::vector<std::uint8_t>& datagram, const proto::Decoded& decoded);
  /// Reads (without waiting) what has arrived, to learn of pauses before sending.
  std::error_code absorb_waiting();

  std::deque<std::shared_ptr<const std::vector<std::uint8_t>>> early_frames_;
  // The CHANNEL_FRAMES being handed out by next_frame, one frame per call.
  std::shared_ptr<const std::vector<std::uint8_t>> frames_datagram_;
  proto::ChannelFrames frames_;
  std::size_t frames_next_ = 0;
  std::vector<std::uint32_t> paused_;  // channel ids
  std::vector<proto::ChannelLeft> left_;
  std::size_t unreported_left_ = 0;  // the newest removals next_frame has not ended with yet
  bool in_channels_ = false;         // joined a channel on this connection
  /// Waits until the socket takes more; while a channel has this session paused the broker
  /// does not read it, so a channel member reads and keeps what arrives meanwhile (else
  /// neither side would move).
  std::error_code wait_for_room();
  /// Forgets every channel's state (a new connection, or a rejoined channel when `only` is set).
  void forget_channels(std::optional<std::uint32_t> only = std::nullopt);
  [[nodiscard]] bool removed_from(std::uint32_t channel_id) const noexcept;

  std::deque<PromptEvent> prompt_events_;
  static constexpr std::size_t max_prompt_events = 1024;

  proto::Error last_error_;
  std::deque<proto::Error> notices_;
  std::uint64_t dropped_notices_ = 0;
  proto::Welcome welcome_;
};

}  // namespace pktbroker

template <>
struct std::is_error_code_enum<pktbroker::ClientError> : std::true_type {};
