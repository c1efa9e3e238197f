// The broker session behind a program's nfq handle or netlink socket, and the queues it binds.
#pragma once

#include "packet_ids.hpp"
#include "pktbroker/client.hpp"
#include "shim_settings.hpp"

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace pktbroker::nfq {

/// Tells the program's user what went wrong: "pktbroker-nfq: TEXT" on stderr.
void report(std::string_view text);

/// A queue the program bound, as the kernel would keep it (copy mode, flags, packet ids), and
/// the broker subscription that delivers its packets.
struct QueueBinding {
  std::uint16_t number = 0;
  std::uint8_t copy_mode = 0;  ///< NFQNL_COPY_NONE until the program sets one, as in the kernel
  std::uint32_t copy_range = 0xffff;  ///< bytes of payload with NFQNL_COPY_PACKET
  std::uint32_t flags = 0;            ///< the NFQA_CFG_F_* flags the program set
  std::optional<std::uint32_t> subscription;
  /// Subscriptions a mode change replaced: packets they delivered are still this queue's.
  std::vector<std::uint32_t> replaced;
  PacketIds ids;

  /// Bytes of each packet the broker sends: the copy range with NFQNL_COPY_PACKET, else the one
  /// byte that holds the IP version (the program is shown no payload).
  [[nodiscard]] std::uint32_t snaplen() const noexcept;
};

/// One broker session standing in for the program's netlink socket. Not copyable; calls that
/// change queues come from the program's set-up, verdicts may come from any thread.
class ShimSession {
 public:
  /// Reads the settings from the environment and connects; nullptr (after saying why on
  /// stderr) when the settings are malformed or the broker cannot be reached.
  static std::unique_ptr<ShimSession> open();

  /// The broker socket: readable when a packet is waiting, as the netlink socket would be.
  [[nodiscard]] int fd() const noexcept { return client_.native_handle(); }
  Client& client() noexcept { return client_; }

  /// Binds the program's queue `number` and subscribes to its packets; nullptr (reported) when
  /// it is bound already or the broker refuses the subscription.
  QueueBinding* bind(std::uint16_t number);
  /// Unbinds the queue; its waiting packets take the broker's fallback.
  void unbind(QueueBinding& queue);
  [[nodiscard]] QueueBinding* find(std::uint16_t number) noexcept;
  /// The queue a delivered packet belongs to (nullptr for one of a subscription since dropped).
  [[nodiscard]] QueueBinding* owner(const proto::Packet& packet) noexcept;
  /// NFQNL_COPY_NONE / META / PACKET and the range; resubscribes when the bytes sent change.
  bool set_mode(QueueBinding& queue, std::uint8_t mode, std::uint32_t range);
  /// NFQA_CFG_F_* flags: false (reported) for a flag the shim cannot honour.
  bool set_flags(QueueBinding& queue, std::uint32_t mask, std::uint32_t flags);

  /// The id the program sees for a delivered packet.
  std::uint32_t assign_id(QueueBinding& queue, const proto::Packet& packet);
  /// A kernel-style verdict (NF_ACCEPT, NF_DROP, NF_REPEAT) for one waiting id, with an optional
  /// new mark and bytes. 0, or -1 with errno: ENOENT when the id is not waiting, EINVAL for a
  /// verdict the broker cannot give (reported), or the socket's error.
  int verdict(QueueBinding& queue, std::uint32_t id, std::uint32_t nf_verdict,
              std::optional<std::uint32_t> mark, std::span<const std::uint8_t> payload);
  /// The same verdict for every waiting id up to `id` (nfq_set_verdict_batch).
  int verdict_through(QueueBinding& queue, std::uint32_t id, std::uint32_t nf_verdict,
                      std::optional<std::uint32_t> mark);
  /// Prints the broker's notices (late verdicts, refused payloads) on stderr.
  void report_notices();

 private:
  explicit ShimSession(ShimSettings settings) : settings_(std::move(settings)) {}
  bool subscribe(QueueBinding& queue);
  void unsubscribe(QueueBinding& queue);

  ShimSettings settings_;
  Client client_;
  std::mutex mutex_;  // ids and requests: verdicts may come from the program's other threads
  std::list<QueueBinding> queues_;  // stable addresses: the program holds pointers to them
};

}  // namespace pktbroker::nfq
