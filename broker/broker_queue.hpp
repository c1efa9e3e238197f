// One served kernel queue: socket, reader, dispatcher, verdict tracker and writer on one strand.
#pragma once

#include "broker/dispatcher.hpp"
#include "broker/kernel_queue_stats.hpp"
#include "broker/policy/policy.hpp"
#include "broker/queue/nfq_socket.hpp"
#include "broker/queue/queue_reader.hpp"
#include "broker/queue/verdict_writer.hpp"
#include "broker/session/packet_batcher.hpp"
#include "broker/session/subscription_table.hpp"
#include "broker/strand.hpp"
#include "broker/telemetry/event_log.hpp"
#include "broker/verdict_tracker.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <functional>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <optional>
#include <span>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace pktbroker {

class ChannelHub;
class PromptBoard;

/// A point-in-time copy of one queue's counters, safe to hand to another thread.
struct QueueSnapshot {
  std::uint16_t queue = 0;
  QueueCounters counters;
  VerdictWriter::Counters writer;
  std::vector<RuleStats> rules;
  std::optional<KernelQueueStats> kernel;
  std::size_t outstanding = 0;  ///< packets waiting for a client's or a plugin's verdict
  InspectorCounters flows;
  /// Packets decided in their read batch (until the batch's verdicts were flushed), and each
  /// wait for a client or plugin (a chain `pass` starts a new wait).
  LatencyHistogram latency;
};

/// A client's answer, copied off the session's read buffer.
struct ClientVerdict {
  PacketToken token = 0;
  proto::VerdictCode code = proto::VerdictCode::accept;
  std::optional<std::uint32_t> mark;
  std::vector<std::uint8_t> replacement;
};

class BrokerQueue {
 public:
  /// Binds the queue (throws std::system_error at start-up when it cannot).
  BrokerQueue(boost::asio::io_context& io, const QueueConfig& config,
              std::shared_ptr<const Policy> policy, std::shared_ptr<const PluginSet> plugins,
              std::shared_ptr<NameCache> names, std::shared_ptr<EventLog> events = nullptr);

  [[nodiscard]] std::uint16_t number() const noexcept { return config_.num; }
  [[nodiscard]] const QueueConfig& config() const noexcept { return config_; }

  // Each of these posts to the queue's strand and returns at once.
  void start();
  void set_policy(std::shared_ptr<const Policy> policy, std::shared_ptr<const PluginSet> plugins,
                  IdentityResolver* identity = nullptr);
  /// Where rules with `app.*` fields look processes up (set before start(); may be null).
  void set_identity(IdentityResolver* identity) {
    identity_ = identity;
    dispatcher_.set_identity(identity);
  }
  /// Rules with `mirror:` copy their packets into this hub's channels (set before start()).
  void set_mirror(std::shared_ptr<ChannelHub> hub) { mirror_ = std::move(hub); }
  /// Packets ask rules hold go to this board's prompts (set before start()).
  void set_prompts(std::shared_ptr<PromptBoard> board) { prompts_ = std::move(board); }
  /// How the packets a prompt held were decided.
  enum class AskOutcome : std::uint8_t { answer, timeout, unwatched, overflow };
  /// The board's answer for packets this queue handed it: each still waiting gets `verdict`,
  /// which their connection keeps (a SYN sent again is not asked again). Any thread.
  void answered(std::vector<PacketToken> tokens, Verdict verdict, AskOutcome outcome);
  void set_subscriptions(std::shared_ptr<const SubscriptionTable> table);
  /// A session's verdicts: this queue takes those whose token names it (moving them out),
  /// decides them together and sends the kernel one message. Any thread.
  void client_verdicts(SessionId session, const std::shared_ptr<SessionPort>& port,
                       std::span<ClientVerdict> verdicts);
  /// The session went away: every packet it owns takes its fallback now.
  void release_session(SessionId session);
  void snapshot(std::function<void(QueueSnapshot)> done);
  /// Calls `done` (on the queue's strand) with the programs seen opening connections lately.
  void apps(std::function<void(std::vector<proto::AppSeen>)> done);
  /// pktb_host::wake: the timers of `plugin`'s flows on this queue fire now (if it still lives).
  void wake_plugin(std::weak_ptr<const Plugin> plugin);
  /// Stops reading, verdicts every packet already handed to us, unbinds, then calls `done`.
  void stop(std::function<void()> done);

 private:
  void on_packet(const PacketMeta& meta);
  /// `again`: a packet that waited for its process (counted when it arrived).
  void decide(const PacketMeta& meta, bool again);
  void on_unreadable(std::uint32_t packet_id);
  void open_batch() noexcept;  ///< notes when the read batch in progress began
  void copy_to_observers(const PacketMeta& meta, const PacketView& view);
  /// Hands the packet to the head of `chain`, or applies the fallback when it cannot.
  void offer(const PacketMeta& meta, std::span<const Subscription* const> chain,
             const Decision& decision);
  bool offer_to(const std::shared_ptr<ChainState>& state);
  void on_client_verdict(SessionId session, const std::shared_ptr<SessionPort>& port,
                         ClientVerdict verdict);
  /// Decides what sessions put in the inbox since the last time (on the strand).
  void take_inbox();
  /// Why a packet got its verdict, for the event log.
  struct Why {
    std::string_view decided_by;  ///< a static string: rule, default, plugin, client, timeout...
    const Decision* decision = nullptr;  ///< when decided as it arrived
    std::string_view subscription{};     ///< the client subscription that decided it
  };
  void finish(std::uint32_t packet_id, const Verdict& verdict,
              std::span<const std::uint8_t> replacement, const Why& why);
  /// Keeps who a packet that waits for a client or plugin is, for its verdict's event.
  void note_waiting(std::uint32_t packet_id, const Decision& decision) noexcept;
  static PacketEvent event_of(const Decision& decision);
  void log_verdict(std::uint32_t packet_id, const Verdict& verdict, const Why& why) noexcept;
  /// A packet a client held left the tracker: the client may hold another.
  void settled(const VerdictTracker::Pending& pending) noexcept;
  /// Whether a limited session's verdict keeps the packet inside its grant (new mark, new bytes).
  [[nodiscard]] static bool inside_grant(const ChainState& state, const proto::Packet& packet,
                                         const ClientVerdict& verdict) noexcept;
  /// Sends what this round decided: packets to clients, verdicts to the kernel.
  void flush();
  void schedule_expiry();
  void expire_now();
  /// Keeps a packet a plugin holds; false when too many are held (decide it now).
  bool hold(std::uint32_t packet_id, const Decision& decision);
  /// A flow's packet was decided: held packets of the flow take the same verdict.
  void settle(Flow* flow, const Verdict& verdict);
  int release_held(std::uint64_t handle, const pktb_decision& decision);
  /// Forgets a held packet's bookkeeping; returns whether it was held.
  bool forget_held(std::uint64_t handle);
  void schedule_flow_maintenance();
  /// The packet's process is not known yet: it waits (alone) for the resolver, at most
  /// identity.timeout_ms, then takes identity.fallback.
  void wait_for_identity(const PacketMeta& meta, const Decision& decision);
  void on_identity(const SocketKey& key, AppRef app);
  /// Asks the resolver about the flow, unless that is under way; on_identity gets the answer.
  void ask_identity(const SocketKey& key);
  /// An ask rule holds the packet: the board asks a person, at most ask->timeout_ms.
  void wait_for_answer(const PacketMeta& meta, const Decision& decision);

  QueueConfig config_;
  Strand strand_;
  NfqSocket socket_;
  FlowInspector inspector_;
  Dispatcher dispatcher_;
  QueueReader reader_;
  VerdictWriter writer_;
  // Chain states come from here and go back when their packet is decided: a pool of equal
  // blocks, so handing a packet to a client allocates nothing once it has grown. Only this
  // queue's strand takes and frees them; declared before the tracker that holds them.
  std::pmr::unsynchronized_pool_resource chain_memory_;
  // Client verdicts wait here for the strand. Two vectors swapped, so both keep their capacity
  // and handing verdicts over allocates nothing.
  struct InboxEntry {
    SessionId session;
    std::shared_ptr<SessionPort> port;
    ClientVerdict verdict;
  };
  std::mutex inbox_mutex_;
  std::vector<InboxEntry> inbox_;        // guarded by inbox_mutex_
  bool inbox_scheduled_ = false;         // guarded by inbox_mutex_: take_inbox() is on its way
  std::vector<InboxEntry> taken_inbox_;  // the strand's
  VerdictTracker tracker_;
  PacketBatcher batcher_;
  std::shared_ptr<const SubscriptionTable> subscriptions_;
  StrandTimer expiry_timer_;
  bool expiry_armed_ = false;
  Clock::time_point expiry_at_{};
  std::vector<const Subscription*> candidates_;  ///< on_packet's scratch
  std::vector<const Subscription*> chain_;       ///< on_packet's scratch
  // The read batch in progress: when its first packet arrived, how many it decided at once.
  bool batch_open_ = false;
  Clock::time_point batch_started_{};
  std::uint64_t decided_in_batch_ = 0;
  LatencyHistogram batch_latency_;
  std::shared_ptr<EventLog> events_;  ///< null without `events:`
  std::shared_ptr<ChannelHub> mirror_;
  /// Packets waiting for a client or plugin, when their verdicts are logged.
  std::unordered_map<std::uint32_t, PacketEvent> waiting_;

  /// Packets plugins hold: handle -> (tracker token, flow id), and each flow's handles.
  struct Held {
    PacketToken token = 0;
    std::uint64_t flow_id = 0;
    bool plugin_decides = false;  ///< Decision::plugin_decides: a release's verdict counts
  };
  std::unordered_map<std::uint64_t, Held> held_;
  std::unordered_multimap<std::uint64_t, std::uint64_t> held_by_flow_;
  StrandTimer flow_timer_;
  bool flow_timer_armed_ = false;
  bool stopped_ = false;  ///< after stop(): no timer is armed again, late verdicts are refused
  std::size_t untrusted_outstanding_ = 0;  ///< undecided packets held by non-root sessions

  /// Packets waiting for their process, by kernel id (and by flow): a copy, decided again on
  /// the answer.
  struct IdentityWait {
    PacketToken token = 0;  ///< in the tracker, which gives the fallback at the deadline
    SocketKey key;
    PacketMeta meta;  ///< payload points into `bytes`
    std::vector<std::uint8_t> bytes;
  };
  IdentityResolver* identity_ = nullptr;
  std::unordered_map<std::uint32_t, IdentityWait> identity_waits_;
  std::unordered_multimap<SocketKey, std::uint32_t, SocketKeyHash> identity_waits_by_key_;
  /// Forgets a waiting packet's copy (it was decided or took its fallback).
  void forget_wait(std::uint32_t packet_id) noexcept;
  std::unordered_set<SocketKey, SocketKeyHash> identity_asked_;  ///< flows with a lookup under way

  /// Packets waiting for a prompt's answer, by kernel id (no copy: the answer is final).
  struct AskWait {
    PacketToken token = 0;
    SocketKey flow;
    std::optional<std::uint32_t> uid;
  };
  std::shared_ptr<PromptBoard> prompts_;
  std::unordered_map<std::uint32_t, AskWait> ask_waits_;
};

}  // namespace pktbroker
