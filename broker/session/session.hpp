// One connected client: reads its requests, writes packets and replies, bounded and in order.
#pragma once

#include "broker/broker_queue.hpp"
#include "broker/channel/channel_hub.hpp"
#include "broker/session/subscription_table.hpp"
#include "broker/strand.hpp"
#include "pktbroker/codec.hpp"

#include <boost/circular_buffer.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include <sys/socket.h>

namespace pktbroker {

class SessionManager;

class Session : public SessionPort,
                public ChannelPort,
                public std::enable_shared_from_this<Session> {
 public:
  /// What a session may do and hold: its grant and the policy's bounds.
  struct Limits {
    std::uint8_t grantable = 0;  ///< roles the policy grants; 0: HELLO is answered with a refusal
    std::shared_ptr<const Matcher> allowed;  ///< the grant's limit on packets, if any
    std::size_t queue_limit = 1024;          ///< packets waiting to be written
    std::size_t max_outstanding = 1024;      ///< packets held undecided by this session
    /// Packets held undecided by every session of this uid, and their bound (no bound: null).
    std::shared_ptr<std::atomic<std::size_t>> uid_outstanding;
    std::size_t max_uid_outstanding = 0;
    std::chrono::milliseconds hello_timeout{5000};
    std::vector<gid_t> groups;  ///< the peer's supplementary groups (SO_PEERGROUPS)
    std::string grant_key;      ///< roles and `allowed:` of the grant: a reload compares it
  };

  /// `socket` must already run on its own strand.
  Session(StrandSocket socket, SessionId id, const ucred& peer, Limits limits,
          SessionManager& manager, std::string refusal = {});

  void start();

  // SessionPort
  [[nodiscard]] SessionId id() const noexcept override { return id_; }
  [[nodiscard]] bool takes_batches() const noexcept override {
    return (features_.load(std::memory_order_relaxed) & proto::feature_packet_batch) != 0;
  }
  bool reserve() noexcept override;
  void deliver(std::shared_ptr<const std::vector<std::uint8_t>> datagram,
               std::size_t packets) noexcept override;
  void report_error(proto::ErrorCode code, std::string text) noexcept override;
  void count_fallback() noexcept override { fallbacks_.fetch_add(1, std::memory_order_relaxed); }
  bool claim_outstanding() noexcept override;
  void release_outstanding() noexcept override;

  // ChannelPort
  void channel_message(const proto::Message& message, std::uint32_t request_id) override;
  void channel_frames(std::shared_ptr<const std::vector<std::uint8_t>> datagram, std::size_t frames,
                      std::shared_ptr<ChannelBacklog> backlog) override;
  void frames_handled(std::size_t frames) noexcept override;

  /// Sends a reply or notice (any thread). Replies are bounded like packets: a client that never
  /// reads its replies is disconnected.
  void send(const proto::Message& message, std::uint32_t request_id);
  /// Closes the connection (any thread); the manager releases everything the session held.
  void close();
  /// Tells the client why, then closes (any thread).
  void close_with(proto::ErrorCode code, std::string text);

  [[nodiscard]] std::uint8_t roles() const noexcept { return roles_.load(); }
  [[nodiscard]] const std::shared_ptr<const Matcher>& allowed() const noexcept {
    return limits_.allowed;
  }
  /// The name HELLO gave (any thread).
  [[nodiscard]] std::string name() const;
  [[nodiscard]] const ucred& peer() const noexcept { return peer_; }
  [[nodiscard]] const Limits& limits() const noexcept { return limits_; }
  [[nodiscard]] proto::SessionInfo info() const;
  /// Whether the connection is closed or closing (any thread).
  [[nodiscard]] bool closed() const noexcept { return closed_.load(); }

 private:
  void do_read();
  void on_readable(const boost::system::error_code& error);
  void on_read(std::span<const std::uint8_t> datagram);
  void handle(const proto::Decoded& decoded);
  void handle_hello(const proto::Hello& hello, std::uint32_t request_id);
  /// Gathers verdicts: all a wake-up reads reach the queues together (flush_verdicts), so a
  /// client that answers packet by packet still costs the kernel one message per wake-up.
  void handle_verdicts(std::span<const proto::Verdict> verdicts);
  void flush_verdicts();
  /// Channel frames are gathered the same way: one run per channel per wake-up.
  void handle_channel_send(const proto::ChannelSend& frame);
  void flush_frames();
  /// Hands over what this wake-up gathered (verdicts, frames).
  void flush_gathered() {
    flush_verdicts();
    flush_frames();
  }
  /// Who this session is, for the channel hub.
  [[nodiscard]] ChannelPeer channel_peer() const;
  /// The socket is not read while a backpressure channel has this sender paused, or while the
  /// hub has not yet handled max_frames_at_hub of its frames: a sender cannot make the broker
  /// hold more than that, whatever it sends.
  [[nodiscard]] bool reading_held() const noexcept {
    return !paused_channels_.empty() || frames_at_hub_.load() >= max_frames_at_hub;
  }
  /// Reads again if reading was held and no longer is (on the strand).
  void resume_reading();
  static constexpr std::size_t max_frames_at_hub = 256;
  /// Verdicts gathered before they are handed over, whatever the wake-up read.
  static constexpr std::size_t max_gathered_verdicts = 4096;
  bool require(std::uint8_t role, std::uint32_t request_id);
  /// Queues a datagram that counts `weight` against the queue bound, and writes.
  void push(std::shared_ptr<const std::vector<std::uint8_t>> datagram, std::size_t weight);
  /// Sends what is queued, many datagrams per sendmmsg; waits for room when the socket is full.
  void do_write();
  void wait_writable();
  void stop_writing();
  void written(std::size_t count);
  void fail(proto::ErrorCode code, const std::string& text, std::uint32_t request_id = 0);

  StrandSocket socket_;
  SessionId id_;
  ucred peer_;
  Limits limits_;
  std::atomic<std::uint8_t> roles_{0};      // roles granted by HELLO
  std::atomic<std::uint32_t> features_{0};  // features granted by HELLO
  SessionManager& manager_;
  mutable std::mutex name_mutex_;  // HELLO writes the name on the session's strand; others read
  std::string name_;
  std::string refusal_;
  StrandTimer timer_;       // the HELLO deadline, then the linger after fail()
  proto::Decoded decoded_;  // the last message read, reused
  std::vector<ClientVerdict> gathered_verdicts_;  // read this wake-up, not yet handed over
  std::vector<FrameRun> gathered_frames_;         // likewise, per channel
  std::vector<std::uint32_t> paused_channels_;    // channels that paused this sender (strand)
  std::atomic<std::size_t> frames_at_hub_{0};     // sent to the hub, not yet handled there
  std::atomic<bool> read_held_{false};            // reading stopped by reading_held()
  bool welcomed_ = false;
  bool closing_ = false;         // an error was sent; close once it is written
  bool writes_stopped_ = false;  // the client reads no more (EPIPE): what is queued is dropped
  struct Outgoing {
    std::shared_ptr<const std::vector<std::uint8_t>> datagram;
    std::size_t weight;  // packets it carries (1 for a reply, 0 for channel frames)
    std::shared_ptr<ChannelBacklog> backlog = nullptr;  // channel frames: released when written
    std::size_t frames = 0;
  };
  /// The datagram at the front of the queue is written or discarded.
  void pop_front_outgoing();
  // A ring that grows only past its peak: queueing a datagram allocates nothing in steady state.
  boost::circular_buffer<Outgoing> write_queue_;
  void queue_outgoing(Outgoing outgoing);
  bool waiting_for_room_ = false;       // the socket is full; a wait for room is in flight
  std::atomic<std::size_t> queued_{0};  // packets and replies not yet written
  std::atomic<bool> closed_{false};
  std::atomic<bool> refusing_packets_{false};  // failing: no packet is queued any more
  std::atomic<std::uint64_t> delivered_{0};
  std::atomic<std::uint64_t> verdicts_{0};
  std::atomic<std::uint64_t> fallbacks_{0};
  std::atomic<std::uint32_t> subscriptions_{0};
  std::atomic<std::size_t> outstanding_{0};

  friend class SessionManager;
};

}  // namespace pktbroker
