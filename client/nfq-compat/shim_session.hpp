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
#include <system_error>
#include <thread>
#include <vector>

namespace pktbroker::nfq {

/// Tells the program's user what went wrong: "pktbroker-nfq: TEXT" on stderr.
void report(std::string_view text);

/// The errno for a failed client call: the socket's own, or `otherwise` for a broker's refusal.
int errno_of(const std::error_code& error, int otherwise);

/// What the program chose for a queue, as the kernel would keep it.
struct QueueSettings {
  std::uint8_t copy_mode = 0;  ///< NFQNL_COPY_NONE until the program sets one, as in the kernel
  std::uint32_t copy_range = 0xffff;  ///< bytes of payload shown with NFQNL_COPY_PACKET
  std::uint32_t flags = 0;            ///< the NFQA_CFG_F_* flags the program set

  /// The payload bytes the program is shown of a packet of `size` bytes (none: -1).
  [[nodiscard]] int shown(std::size_t size) const noexcept;
};

/// A queue the program bound: its settings, its packet ids and the broker subscription that
/// delivers its packets.
struct QueueBinding {
  std::uint16_t number = 0;
  QueueSettings settings;
  std::uint32_t subscription = 0;
  /// Bytes of each packet the subscription delivers: all of them until the program sets a copy
  /// mode, then what it is shown (one byte, the IP version, when it is shown none), so the
  /// datagrams it reads are no larger than the kernel's messages would be.
  std::uint32_t snaplen = 0xffff;
  /// The last subscriptions a mode change replaced: the packets they delivered are still this
  /// queue's (the session owns them until their verdict or timeout).
  std::vector<std::uint32_t> replaced;
  static constexpr std::size_t max_replaced = 4;
  PacketIds ids;

  [[nodiscard]] bool delivered(std::uint32_t subscription_id) const noexcept;
};

/// One broker session standing in for the program's netlink socket. Set-up calls (bind, unbind,
/// mode, flags) come from one thread at a time and not while another thread reads the socket;
/// verdicts may come from any thread.
class ShimSession {
 public:
  /// Reads the settings from the environment and connects; nullptr (after saying why on
  /// stderr) when the settings are malformed or the broker cannot be reached.
  static std::unique_ptr<ShimSession> open();

  /// The broker socket: readable when a packet is waiting, as the netlink socket would be.
  [[nodiscard]] int fd() const noexcept { return client_.native_handle(); }
  Client& client() noexcept { return client_; }

  /// Binds the program's queue `number` and subscribes to its packets; nullptr (reported, errno
  /// set) when it is bound already or the broker refuses the subscription.
  QueueBinding* bind(std::uint16_t number);
  /// Unbinds queue `number`; its waiting packets take the broker's fallback. False if unbound.
  bool unbind(std::uint16_t number);
  /// NFQNL_COPY_NONE / META / PACKET and the range; false (reported) for no such queue or mode,
  /// or when the broker refuses the subscription that delivers the new size.
  bool set_mode(std::uint16_t number, std::uint8_t mode, std::uint32_t range);
  /// NFQA_CFG_F_* flags: false (reported) for a flag the shim cannot honour.
  bool set_flags(std::uint16_t number, std::uint32_t mask, std::uint32_t flags);
  [[nodiscard]] bool bound(std::uint16_t number);

  /// The queue a delivered packet belongs to, its id for the program and the queue's settings
  /// now; nullopt for a packet of a queue since unbound.
  struct Delivery {
    std::uint16_t queue = 0;
    std::uint32_t id = 0;
    QueueSettings settings;
  };
  std::optional<Delivery> accept(const proto::Packet& packet);
  /// Forgets the id of a packet the program never saw (its message did not fit).
  void forget(std::uint16_t number, std::uint32_t id);

  /// A kernel-style verdict (NF_ACCEPT, NF_DROP, NF_REPEAT) for one waiting id, with an optional
  /// new mark and bytes. 0, or -1 with errno: ENOENT when the id is not waiting (or the queue not
  /// bound), EINVAL for a verdict the broker cannot give (reported), or the socket's error.
  int verdict(std::uint16_t number, std::uint32_t id, std::uint32_t nf_verdict,
              std::optional<std::uint32_t> mark, std::span<const std::uint8_t> payload);
  /// The same verdict for every waiting id up to `id` (nfq_set_verdict_batch).
  int verdict_through(std::uint16_t number, std::uint32_t id, std::uint32_t nf_verdict,
                      std::optional<std::uint32_t> mark);

  /// From here until end_gathering(), verdicts this thread gives without new bytes are sent
  /// together: one message for every packet a call of nfq_handle_packet handed out.
  void begin_gathering();
  /// Sends what was gathered; 0, or -1 with errno.
  int end_gathering();

  /// Prints the broker's notices (late verdicts, refused payloads) on stderr.
  void report_notices();

 private:
  explicit ShimSession(ShimSettings settings) : settings_(std::move(settings)) {}
  /// Subscribes for `number`'s packets with `snaplen` bytes each: the new subscription's id.
  std::optional<std::uint32_t> subscribe(std::uint16_t number, std::uint32_t snaplen);
  QueueBinding* find(std::uint16_t number);  // with mutex_ held
  /// After a request: packets it read meanwhile are held by the client, where the program's
  /// select() cannot see them; a PING's answer makes the socket readable so they are fetched.
  void wake_for_held_packets();
  int send(std::vector<proto::Verdict> verdicts);

  ShimSettings settings_;
  Client client_;
  std::mutex mutex_;                // queues and ids: verdicts may come from other threads
  std::list<QueueBinding> queues_;  // stable addresses
  std::optional<std::thread::id> gatherer_;
  std::vector<proto::Verdict> gathered_;
};

}  // namespace pktbroker::nfq
