// Receives packet messages from one NFQUEUE socket in batches and hands each packet on.
#pragma once

#include "broker/counters.hpp"
#include "broker/packet_meta.hpp"

#include "broker/strand.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include <sys/socket.h>

struct nlmsghdr;

namespace pktbroker {

class NfqSocket;

/// Parses one NFQNL_MSG_PACKET message. Returns false (and leaves `meta` partial) when the
/// message lacks the packet header; the payload span points into the message.
bool parse_packet_message(const nlmsghdr* message, PacketMeta& meta) noexcept;

/// The kernel's packet id from the start of a packet message that cannot be parsed whole (cut
/// short by the receive buffer, or with broken attributes): the packet must still get a
/// verdict. Empty when even the id is not there.
std::optional<std::uint32_t> packet_id_of(std::span<const std::uint8_t> message) noexcept;

/// Receive buffer for one datagram: the largest payload the kernel copies for `copy_range`
/// (0 and anything above the kernel's cap mean the cap, 65531 bytes) and its attributes.
std::size_t receive_buffer_size(std::uint32_t copy_range) noexcept;

class QueueReader {
 public:
  using PacketHandler = std::function<void(const PacketMeta&)>;
  using BatchDoneHandler = std::function<void()>;
  /// A packet whose message could not be parsed: only its id is known.
  using UnreadableHandler = std::function<void(std::uint32_t packet_id)>;

  /// `executor` must be the queue's strand: handlers run there.
  QueueReader(const Strand& executor, NfqSocket& socket, std::uint32_t copy_range,
              QueueCounters& counters);
  ~QueueReader();
  QueueReader(const QueueReader&) = delete;
  QueueReader& operator=(const QueueReader&) = delete;

  /// Starts reading; `on_packet` for every packet, `on_unreadable` for a packet message that
  /// cannot be parsed, `on_batch_done` after each receive batch.
  void start(PacketHandler on_packet, UnreadableHandler on_unreadable,
             BatchDoneHandler on_batch_done);
  /// Stops the asynchronous reads. Call `drain` afterwards to consume what is left.
  void stop();
  /// Reads, without blocking, every message already waiting (bounded by `limit` packets).
  void drain(std::size_t limit);

 private:
  void do_wait();
  void on_readable(const boost::system::error_code& error);
  /// One recvmmsg; returns the number of datagrams or -1 when nothing more is waiting.
  int receive_batch();
  void handle_datagram(std::span<const std::uint8_t> datagram);

  StrandDescriptor descriptor_;
  NfqSocket& socket_;
  QueueCounters& counters_;
  PacketHandler on_packet_;
  UnreadableHandler on_unreadable_;
  BatchDoneHandler on_batch_done_;
  std::vector<std::vector<std::uint8_t>> buffers_;
  std::vector<iovec> iovecs_;
  std::vector<mmsghdr> headers_;
  bool stopped_ = false;
};

}  // namespace pktbroker
