// One connected client: reads its requests, writes packets and replies, bounded and in order.
#pragma once

#include "broker/session/subscription_table.hpp"
#include "pktbroker/codec.hpp"
#include "pktbroker/seq_packet_protocol.hpp"

#include <atomic>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <sys/socket.h>

namespace pktbroker {

class SessionManager;

class Session : public SessionPort, public std::enable_shared_from_this<Session> {
 public:
  /// `socket` must already run on its own strand.
  /// `grantable` = 0 means the peer has no grant: its HELLO is answered with `refusal`.
  Session(SeqPacketProtocol::socket socket, SessionId id, const ucred& peer, std::uint8_t grantable,
          std::shared_ptr<const Matcher> allowed, std::size_t queue_limit, SessionManager& manager,
          std::string refusal = {});

  void start();

  // SessionPort
  [[nodiscard]] SessionId id() const noexcept override { return id_; }
  bool reserve() noexcept override;
  void deliver(std::shared_ptr<const std::vector<std::uint8_t>> datagram,
               std::size_t packets) noexcept override;
  void report_error(proto::ErrorCode code, std::string text) noexcept override;
  void count_fallback() noexcept override { fallbacks_.fetch_add(1, std::memory_order_relaxed); }

  /// Sends a reply or notice (any thread). Replies are bounded like packets: a client that never
  /// reads its replies is disconnected.
  void send(const proto::Message& message, std::uint32_t request_id);
  /// Closes the connection (any thread); the manager releases everything the session held.
  void close();

  [[nodiscard]] std::uint8_t roles() const noexcept { return roles_; }
  [[nodiscard]] const std::shared_ptr<const Matcher>& allowed() const noexcept { return allowed_; }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] proto::SessionInfo info() const;

 private:
  void do_read();
  void on_read(const boost::system::error_code& error, std::size_t size);
  void handle(const proto::Decoded& decoded);
  void handle_hello(const proto::Hello& hello, std::uint32_t request_id);
  void handle_verdicts(std::span<const proto::Verdict> verdicts);
  bool require(std::uint8_t role, std::uint32_t request_id);
  /// Queues a datagram that counts `weight` against the queue bound, and writes.
  void push(std::shared_ptr<const std::vector<std::uint8_t>> datagram, std::size_t weight);
  /// Sends what is queued, many datagrams per sendmmsg; waits for room when the socket is full.
  void do_write();
  void wait_writable();
  void written(std::size_t count);
  void fail(proto::ErrorCode code, const std::string& text);

  SeqPacketProtocol::socket socket_;
  SessionId id_;
  ucred peer_;
  std::uint8_t grantable_;  // roles the policy grants this peer
  std::uint8_t roles_ = 0;  // roles granted by HELLO
  std::shared_ptr<const Matcher> allowed_;
  std::size_t queue_limit_;
  SessionManager& manager_;
  std::string name_;
  std::string refusal_;
  bool welcomed_ = false;
  bool closing_ = false;  // an error was sent; close once it is written
  std::vector<std::uint8_t> read_buffer_;
  boost::asio::socket_base::message_flags read_flags_ = 0;
  struct Outgoing {
    std::shared_ptr<const std::vector<std::uint8_t>> datagram;
    std::size_t weight;  // packets it carries (1 for a reply)
  };
  std::deque<Outgoing> write_queue_;
  bool waiting_for_room_ = false;       // the socket is full; a wait for room is in flight
  std::atomic<std::size_t> queued_{0};  // packets and replies not yet written
  std::atomic<bool> closed_{false};
  std::atomic<std::uint64_t> delivered_{0};
  std::atomic<std::uint64_t> verdicts_{0};
  std::atomic<std::uint64_t> fallbacks_{0};
  std::atomic<std::uint32_t> subscriptions_{0};

  friend class SessionManager;
};

}  // namespace pktbroker
