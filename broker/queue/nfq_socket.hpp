// A netlink socket bound to one NFQUEUE queue, configured from the policy's queue settings.
#pragma once

#include "broker/policy/policy.hpp"

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

struct mnl_socket;
struct nlmsghdr;

namespace pktbroker {

class NfqSocket {
 public:
  /// Opens, binds and configures the queue. Throws std::system_error naming the step that failed
  /// (start-up only; e.g. EBUSY when another process already owns the queue).
  explicit NfqSocket(const QueueConfig& config);
  ~NfqSocket();
  NfqSocket(const NfqSocket&) = delete;
  NfqSocket& operator=(const NfqSocket&) = delete;

  [[nodiscard]] int fd() const noexcept;
  [[nodiscard]] std::uint16_t queue() const noexcept { return queue_; }
  /// Flags the kernel refused (e.g. conntrack when nf_conntrack support is missing).
  [[nodiscard]] std::uint32_t refused_flags() const noexcept { return refused_flags_; }

  /// Sends one buffer of netlink messages. Returns 0 or an errno value.
  int send(std::span<const std::uint8_t> messages) noexcept;

  /// Packet messages that arrived while we waited for the kernel's configuration ack; the reader
  /// handles them before anything else so none is left without a verdict.
  [[nodiscard]] std::vector<std::vector<std::uint8_t>> take_early_messages() noexcept {
    return std::move(early_messages_);
  }

  /// Stops the kernel from queueing more packets to us (queue length 0): new packets are
  /// accepted by the kernel when the queue is fail-open, dropped otherwise. Used at shutdown so
  /// that unbinding finds nothing queued.
  void close_door(bool fail_open) noexcept;

  /// Tells the kernel we no longer serve the queue. Packets still queued are then dropped by the
  /// kernel (or bypassed with --queue-bypass), so drain first.
  void unbind() noexcept;

 private:
  void tune_buffers();
  void configure(const QueueConfig& config);
  int request(nlmsghdr* message);  // sends with NLM_F_ACK, returns the acked errno

  mnl_socket* socket_ = nullptr;
  std::uint16_t queue_;
  std::uint32_t port_id_ = 0;
  std::uint32_t sequence_ = 0;
  std::uint32_t refused_flags_ = 0;
  bool bound_ = false;
  std::vector<std::vector<std::uint8_t>> early_messages_;
};

}  // namespace pktbroker
