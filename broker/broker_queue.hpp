// One served kernel queue: socket, reader, dispatcher and verdict writer on one strand.
#pragma once

#include "broker/dispatcher.hpp"
#include "broker/kernel_queue_stats.hpp"
#include "broker/policy/policy.hpp"
#include "broker/queue/nfq_socket.hpp"
#include "broker/queue/queue_reader.hpp"
#include "broker/queue/verdict_writer.hpp"

#include <boost/asio/io_context.hpp>
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
  void snapshot(std::function<void(QueueSnapshot)> done);
  /// Stops reading, verdicts every packet already handed to us, unbinds, then calls `done`.
  void stop(std::function<void()> done);

 private:
  void on_packet(const PacketMeta& meta);
  void flush_verdicts();

  QueueConfig config_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  NfqSocket socket_;
  Dispatcher dispatcher_;
  QueueReader reader_;
  VerdictWriter writer_;
};

}  // namespace pktbroker
