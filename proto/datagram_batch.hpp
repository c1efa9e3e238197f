// Several waiting datagrams from a socket in one recvmmsg call.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace pktbroker {

/// Reads up to `slots` datagrams of at most `slot_size` bytes each, without waiting. The
/// buffer is allocated on first use and not zeroed, so pages no datagram reached cost nothing.
class DatagramBatch {
 public:
  DatagramBatch(std::size_t slots, std::size_t slot_size) : slots_(slots), slot_size_(slot_size) {}

  /// Reads what is waiting on `fd`: the number of datagrams (0 when none), or -1 with errno.
  int receive(int fd);
  /// Datagram `i` of the last receive(); `truncated` when it was longer than a slot.
  [[nodiscard]] std::span<const std::uint8_t> datagram(int i, bool& truncated) const noexcept;

 private:
  std::size_t slots_;
  std::size_t slot_size_;
  std::unique_ptr<std::uint8_t[]> buffer_;
  std::unique_ptr<mmsghdr[]> messages_;
  std::unique_ptr<iovec[]> parts_;
};

}  // namespace pktbroker
