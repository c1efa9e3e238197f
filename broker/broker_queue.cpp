#include "broker/broker_queue.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include <cstring>

namespace pktbroker {
namespace {

// At shutdown, read at most this many packets that are already waiting for us.
constexpr std::size_t drain_limit = 1'000'000;

}  // namespace

BrokerQueue::BrokerQueue(boost::asio::io_context& io, const QueueConfig& config,
                         std::shared_ptr<const Policy> policy)
    : config_(config),
      strand_(boost::asio::make_strand(io)),
      socket_(config),
      dispatcher_(config.num, std::move(policy)),
      reader_(strand_, socket_, config.copy_range, dispatcher_.counters()),
      writer_(config.num,
              [this](std::span<const std::uint8_t> messages) { return socket_.send(messages); }) {}

void BrokerQueue::start() {
  boost::asio::post(strand_, [this] {
    reader_.start([this](const PacketMeta& meta) { on_packet(meta); },
                  [this] { flush_verdicts(); });
  });
}

void BrokerQueue::on_packet(const PacketMeta& meta) {
  writer_.add(meta.packet_id, dispatcher_.decide(meta));
}

void BrokerQueue::flush_verdicts() {
  if (writer_.empty()) return;
  if (const int error = writer_.flush(); error != 0) {
    dispatcher_.counters().count(NetlinkError::verdict_send_failed);
    spdlog::error("queue {}: sending verdicts failed: {}", config_.num, std::strerror(error));
  }
}

void BrokerQueue::set_policy(std::shared_ptr<const Policy> policy) {
  boost::asio::post(strand_, [this, policy = std::move(policy)]() mutable {
    dispatcher_.set_policy(std::move(policy));
  });
}

void BrokerQueue::snapshot(std::function<void(QueueSnapshot)> done) {
  boost::asio::post(strand_, [this, done = std::move(done)] {
    done(QueueSnapshot{config_.num, dispatcher_.counters(), writer_.counters(),
                       dispatcher_.rule_stats(), read_kernel_queue_stats(config_.num)});
  });
}

void BrokerQueue::stop(std::function<void()> done) {
  boost::asio::post(strand_, [this, done = std::move(done)] {
    reader_.stop();
    socket_.close_door(config_.fail_open);
    reader_.drain(drain_limit);
    flush_verdicts();
    socket_.unbind();
    done();
  });
}

}  // namespace pktbroker
