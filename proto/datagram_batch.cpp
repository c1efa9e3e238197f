#include "datagram_batch.hpp"

#include <sys/socket.h>

#include <cerrno>

namespace pktbroker {

int DatagramBatch::receive(int fd) {
  if (!buffer_) {
    buffer_ = std::make_unique_for_overwrite<std::uint8_t[]>(slots_ * slot_size_);
    messages_ = std::make_unique<mmsghdr[]>(slots_);
    parts_ = std::make_unique<iovec[]>(slots_);
  }
  for (std::size_t i = 0; i < slots_; ++i) {
    parts_[i] = {buffer_.get() + i * slot_size_, slot_size_};
    messages_[i] = {};
    messages_[i].msg_hdr.msg_iov = &parts_[i];
    messages_[i].msg_hdr.msg_iovlen = 1;
  }
  const int count =
      recvmmsg(fd, messages_.get(), static_cast<unsigned>(slots_), MSG_DONTWAIT, nullptr);
  if (count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
  return count;
}

std::span<const std::uint8_t> DatagramBatch::datagram(int i, bool& truncated) const noexcept {
  const mmsghdr& message = messages_[static_cast<std::size_t>(i)];
  truncated = (message.msg_hdr.msg_flags & MSG_TRUNC) != 0;
  return {buffer_.get() + static_cast<std::size_t>(i) * slot_size_, message.msg_len};
}

}  // namespace pktbroker
