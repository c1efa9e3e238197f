// One served kernel queue: socket, reader, dispatcher, verdict tracker and writer on one strand.
#pragma once

#include "broker/dispatcher.hpp"
#include "broker/kernel_queue_stats.hpp"
#include "broker/policy/policy.hpp"
#include "broker/queue/nfq_socket.hpp"
#include "broker/queue/queue_reader.hpp"
#include "broker/queue/verdict_writer.hpp"
#include "broker/session/subscription_table.hpp"
#include "broker/verdict_tracker.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace pktbroker {

/// A point-in-time copy of one queue's counters, safe to hand to another thread.
struct QueueSnapshot {
  std::uint16_t queue = 0;
  QueueCounters counters;
  VerdictWriter::Counters writer;
  std::vector<RuleStats> rules;
  std::optional<KernelQueueStats> kernel;
  std::size_t outstanding = 0;  ///< packets waiting for a client's verdict
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
              std::shared_ptr<const Policy> policy);

  [[nodiscard]] std::uint16_t number() const noexcept { return config_.num; }
  [[nodiscard]] const QueueConfig& config() const noexcept { return config_; }

  // Each of these posts to the queue's strand and returns at once.
  void start();
  void set_policy(std::shared_ptr<const Policy> policy);
  void set_subscriptions(std::shared_ptr<const SubscriptionTable> table);
  void client_verdict(SessionId session, std::shared_ptr<SessionPort> port, ClientVerdict verdict);
  /// The session went away: every packet it owns takes its fallback now.
  void release_session(SessionId session);
  void snapshot(std::function<void(QueueSnapshot)> done);
  /// Stops reading, verdicts every packet already handed to us, unbinds, then calls `done`.
  void stop(std::function<void()> done);

 private:
  void on_packet(const PacketMeta& meta);
  void copy_to_observers(const PacketMeta& meta, const PacketView& view);
  /// Hands the packet to the head of `chain`, or applies the fallback when it cannot.
  void offer(const PacketMeta& meta, const std::vector<Subscription>& chain,
             const Decision& decision);
  bool offer_to(const std::shared_ptr<ChainState>& state);
  void on_client_verdict(SessionId session, const std::shared_ptr<SessionPort>& port,
                         ClientVerdict verdict);
  void finish(std::uint32_t packet_id, const Verdict& verdict,
              std::span<const std::uint8_t> replacement = {});
  void flush_verdicts();
  void schedule_expiry();
  void expire_now();

  QueueConfig config_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  NfqSocket socket_;
  Dispatcher dispatcher_;
  QueueReader reader_;
  VerdictWriter writer_;
  VerdictTracker tracker_;
  std::shared_ptr<const SubscriptionTable> subscriptions_;
  boost::asio::steady_timer expiry_timer_;
  bool expiry_armed_ = false;
  Clock::time_point expiry_at_{};
  std::vector<std::uint8_t> encode_buffer_;
};

}  // namespace pktbroker
