// Accepts client connections, grants roles, keeps the subscriptions and routes verdicts.
#pragma once

#include "broker/broker_queue.hpp"
#include "broker/policy/policy.hpp"
#include "broker/prompt/prompt_board.hpp"
#include "broker/session/session.hpp"
#include "pktbroker/seq_packet_protocol.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <vector>

namespace pktbroker {

/// A loaded plugin's named counters.
struct PluginCounters {
  std::string name;
  std::vector<std::pair<std::string, std::uint64_t>> counters;
};

/// What the daemon does for manage-role requests.
struct ControlHandler {
  /// Collects every queue's snapshot and calls back (on some pool thread).
  std::function<void(std::function<void(std::vector<QueueSnapshot>)>)> collect_stats;
  /// Reloads the policy: true, or false with the diagnostics.
  std::function<std::pair<bool, std::string>()> reload;
  /// The counters of the plugins loaded now (any thread).
  std::function<std::vector<PluginCounters>()> plugin_counters;
  /// Runs a command on the named plugin's command hook (on the manager's strand): true and its
  /// output, or false and why not. Empty: the broker runs no plugin commands.
  std::function<std::pair<bool, std::string>(const std::string& plugin,
                                             const std::vector<std::string>& args)>
      plugin_command;
};

class SessionManager {
 public:
  SessionManager(boost::asio::io_context& io, std::vector<BrokerQueue*> queues,
                 std::shared_ptr<const Policy> policy, ControlHandler control);

  /// Creates the socket from the policy's `socket:` section and starts accepting.
  /// Throws std::system_error at start-up when the socket cannot be made.
  void start();
  /// Stops accepting and closes every session.
  void stop();
  /// Connections are granted by this policy from now on; a session whose grant it changes or
  /// removes is closed (its client reconnects under the new grant).
  void set_policy(std::shared_ptr<const Policy> policy);

  // Called by sessions, from their strands.
  void subscribe(std::shared_ptr<Session> session, proto::Subscribe request, std::uint32_t id);
  void unsubscribe(std::shared_ptr<Session> session, std::uint32_t subscription, std::uint32_t id);
  /// Hands a session's verdicts to their queues, one batch per queue.
  void verdicts(const std::shared_ptr<Session>& session, std::span<ClientVerdict> verdicts);
  void stats(std::shared_ptr<Session> session, std::uint32_t id);
  /// The policy's rules in order, with where each was written and what it decided.
  void rules(std::shared_ptr<Session> session, std::uint32_t id);
  void sessions(std::shared_ptr<Session> session, std::uint32_t id);
  void reload(std::shared_ptr<Session> session, std::uint32_t id);
  /// Hands a PLUGIN_COMMAND to ControlHandler::plugin_command and answers with its reply.
  void plugin_command(std::shared_ptr<Session> session, proto::PluginCommand request,
                      std::uint32_t id);
  void session_closed(SessionId session);
  /// The session is closing: its subscriptions go at once (it may never drain its queue).
  void drop_subscriptions(SessionId session);
  void count_malformed() noexcept { malformed_.fetch_add(1, std::memory_order_relaxed); }

  [[nodiscard]] std::uint64_t malformed() const noexcept { return malformed_.load(); }
  [[nodiscard]] std::uint64_t refused() const noexcept { return refused_.load(); }
  /// The channel hub sessions join channels through (set before start()).
  void set_channels(std::shared_ptr<ChannelHub> channels) { channels_ = std::move(channels); }
  [[nodiscard]] const std::shared_ptr<ChannelHub>& channels() const noexcept { return channels_; }
  /// The board of `ask` prompts sessions watch and answer (set before start()).
  void set_prompts(std::shared_ptr<PromptBoard> prompts) { prompts_ = std::move(prompts); }
  [[nodiscard]] const std::shared_ptr<PromptBoard>& prompts() const noexcept { return prompts_; }
  /// The programs the queues saw opening connections lately (a non-root session without the
  /// manage role: its own user's).
  void apps(std::shared_ptr<Session> session, std::uint32_t id);
  /// Sessions opening, closing and refused go to this event log from now on (`events:`).
  void set_event_log(std::shared_ptr<EventLog> events) { events_ = std::move(events); }
  /// A session event (open, close, refused) for the event log, if there is one.
  void log_session_event(std::string_view action, SessionId id, const std::string& name,
                         const ucred& peer, std::string_view reason = {});
  /// Calls `done` on the manager's strand with what `pktbrokerctl sessions` shows.
  void session_infos(std::function<void(std::vector<proto::SessionInfo>)> done);

 private:
  void do_accept();
  void on_accept(const boost::system::error_code& error, StrandSocket socket);
  /// Out of descriptors: waits before accepting again instead of spinning.
  void accept_later(const boost::system::error_code& error);
  /// Why a new connection from `peer` is refused (sessions at their bound), or "".
  [[nodiscard]] std::string session_bound(const ucred& peer) const;
  /// The counter of undecided packets shared by the sessions of `uid` (null for root).
  std::shared_ptr<std::atomic<std::size_t>> uid_outstanding(std::uint32_t uid);
  /// Checks a new subscription against the session's grant and the policy's bounds; on
  /// success may narrow its selector to the grant. Returns the error to send, if any.
  std::optional<proto::Error> admit(const Session& session, Subscription& s,
                                    const proto::Subscribe& request) const;
  void publish();  // hands the queues a new subscription table

  boost::asio::io_context& io_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  std::vector<BrokerQueue*> queues_;
  std::shared_ptr<const Policy> policy_;
  ControlHandler control_;
  SeqPacketProtocol::acceptor acceptor_;
  boost::asio::steady_timer accept_timer_;
  std::uint64_t accept_failures_ = 0;  // since the last logged one
  std::string path_;
  SessionId next_session_ = 1;
  std::uint32_t next_subscription_ = 1;
  std::map<SessionId, std::weak_ptr<Session>> sessions_;
  /// Connections refused at accept, waiting to be told why at their HELLO (bounded).
  std::map<SessionId, std::weak_ptr<Session>> refused_sessions_;
  static constexpr std::size_t max_refused_waiting = 64;
  bool stopping_ = false;
  std::map<std::uint32_t, std::weak_ptr<std::atomic<std::size_t>>> uid_outstanding_;
  std::vector<Subscription> subscriptions_;  // in arrival order
  std::atomic<std::uint64_t> malformed_{0};
  std::atomic<std::uint64_t> refused_{0};
  std::shared_ptr<EventLog> events_;  ///< set before start(); null without `events:`
  std::shared_ptr<ChannelHub> channels_;
  std::shared_ptr<PromptBoard> prompts_;
};

}  // namespace pktbroker
