#include "broker/queue/nfq_socket.hpp"

#include "broker/kernel_queue_stats.hpp"

#include <array>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <vector>

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <sys/socket.h>
// libnetfilter_queue.h needs the kernel types above first.
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <spdlog/spdlog.h>

namespace pktbroker {
namespace {

constexpr int receive_buffer_bytes = 64 * 1024 * 1024;

[[noreturn]] void fail(std::uint16_t queue, const char* step, int error) {
  throw std::system_error(error, std::generic_category(),
                          "queue " + std::to_string(queue) + ": " + step);
}

}  // namespace

NfqSocket::NfqSocket(const QueueConfig& config) : queue_(config.num) {
  socket_ = mnl_socket_open(NETLINK_NETFILTER);
  if (socket_ == nullptr) fail(queue_, "cannot open a netfilter netlink socket", errno);
  if (mnl_socket_bind(socket_, 0, MNL_SOCKET_AUTOPID) < 0) {
    const int error = errno;
    mnl_socket_close(socket_);
    fail(queue_, "cannot bind the netlink socket", error);
  }
  port_id_ = mnl_socket_get_portid(socket_);
  try {
    tune_buffers();
    configure(config);
  } catch (...) {
    mnl_socket_close(socket_);
    throw;
  }
}

NfqSocket::~NfqSocket() {
  unbind();
  mnl_socket_close(socket_);
}

int NfqSocket::fd() const noexcept {
  return mnl_socket_get_fd(socket_);
}

int NfqSocket::request(nlmsghdr* message) {
  message->nlmsg_flags |= NLM_F_ACK;
  message->nlmsg_seq = ++sequence_;
  if (mnl_socket_sendto(socket_, message, message->nlmsg_len) < 0) return errno;
  std::vector<std::uint8_t> reply(MNL_SOCKET_BUFFER_SIZE + 0xffff);
  for (;;) {
    const ssize_t got = mnl_socket_recvfrom(socket_, reply.data(), reply.size());
    if (got < 0) return errno;
    auto remaining = static_cast<int>(got);
    for (auto* header = reinterpret_cast<nlmsghdr*>(reply.data()); mnl_nlmsg_ok(header, remaining);
         header = mnl_nlmsg_next(header, &remaining)) {
      if (header->nlmsg_type == NLMSG_ERROR && header->nlmsg_seq == sequence_) {
        const auto* error = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(header));
        return -error->error;
      }
      // A packet queued between the bind and its ack: keep it for the reader.
      const auto* bytes = reinterpret_cast<const std::uint8_t*>(header);
      early_messages_.emplace_back(bytes, bytes + header->nlmsg_len);
    }
  }
}

void NfqSocket::tune_buffers() {
  int no_enobufs = 1;
  if (mnl_socket_setsockopt(socket_, NETLINK_NO_ENOBUFS, &no_enobufs, sizeof no_enobufs) < 0) {
    fail(queue_, "setting NETLINK_NO_ENOBUFS", errno);
  }
  // SO_RCVBUFFORCE ignores rmem_max (we run as root); fall back to what rmem_max allows.
  if (setsockopt(fd(), SOL_SOCKET, SO_RCVBUFFORCE, &receive_buffer_bytes,
                 sizeof receive_buffer_bytes) < 0) {
    setsockopt(fd(), SOL_SOCKET, SO_RCVBUF, &receive_buffer_bytes, sizeof receive_buffer_bytes);
  }
}

// Bind, parameters and flags travel in one message: the kernel checks the flags before it
// creates the queue, so a refused optional flag leaves nothing bound and we retry without it.
void NfqSocket::configure(const QueueConfig& config) {
  std::uint32_t flags = 0;
  if (config.fail_open) flags |= NFQA_CFG_F_FAIL_OPEN;
  if (config.gso) flags |= NFQA_CFG_F_GSO;
  if (config.uid_gid) flags |= NFQA_CFG_F_UID_GID;
  if (config.conntrack) flags |= NFQA_CFG_F_CONNTRACK;
  constexpr std::uint32_t managed =
      NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO | NFQA_CFG_F_UID_GID | NFQA_CFG_F_CONNTRACK;

  std::vector<char> buffer(MNL_SOCKET_BUFFER_SIZE);
  for (int attempt = 0;; ++attempt) {
    nlmsghdr* header = nfq_nlmsg_put(buffer.data(), NFQNL_MSG_CONFIG, queue_);
    nfq_nlmsg_cfg_put_cmd(header, AF_INET, NFQNL_CFG_CMD_BIND);
    nfq_nlmsg_cfg_put_params(header, NFQNL_COPY_PACKET, static_cast<int>(config.copy_range));
    nfq_nlmsg_cfg_put_qmaxlen(header, config.max_len);
    mnl_attr_put_u32(header, NFQA_CFG_FLAGS, htonl(flags));
    mnl_attr_put_u32(header, NFQA_CFG_MASK, htonl(managed));
    const int error = request(header);
    if (error == 0) break;
    // EAGAIN: the kernel just loaded conntrack support on our behalf; ask again.
    if (error == EAGAIN && attempt < 3) continue;
    if (error == EOPNOTSUPP && (flags & NFQA_CFG_F_CONNTRACK) != 0) {
      refused_flags_ |= NFQA_CFG_F_CONNTRACK;
      flags &= ~NFQA_CFG_F_CONNTRACK;
      continue;
    }
    // The kernel answers EPERM both for a missing CAP_NET_ADMIN and for a queue owned by
    // another socket; /proc tells the two apart.
    const bool taken = (error == EPERM || error == EBUSY) && read_kernel_queue_stats(queue_);
    fail(queue_, taken ? "already bound by another process" : "bind failed", error);
  }
  bound_ = true;
}

int NfqSocket::send(std::span<const std::uint8_t> messages) noexcept {
  if (mnl_socket_sendto(socket_, messages.data(), messages.size()) < 0) return errno;
  return 0;
}

void NfqSocket::close_door(bool fail_open) noexcept {
  std::vector<char> buffer(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* header = nfq_nlmsg_put(buffer.data(), NFQNL_MSG_CONFIG, queue_);
  nfq_nlmsg_cfg_put_qmaxlen(header, 0);
  mnl_attr_put_u32(header, NFQA_CFG_FLAGS, htonl(fail_open ? NFQA_CFG_F_FAIL_OPEN : 0U));
  mnl_attr_put_u32(header, NFQA_CFG_MASK, htonl(NFQA_CFG_F_FAIL_OPEN));
  if (mnl_socket_sendto(socket_, header, header->nlmsg_len) < 0) {
    spdlog::warn("queue {}: closing the queue to new packets failed: {}", queue_,
                 std::strerror(errno));
  }
}

void NfqSocket::unbind() noexcept {
  if (!bound_) return;
  bound_ = false;
  std::vector<char> buffer(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* header = nfq_nlmsg_put(buffer.data(), NFQNL_MSG_CONFIG, queue_);
  nfq_nlmsg_cfg_put_cmd(header, AF_INET, NFQNL_CFG_CMD_UNBIND);
  if (mnl_socket_sendto(socket_, header, header->nlmsg_len) < 0) {
    spdlog::warn("queue {}: unbind failed: {}", queue_, std::strerror(errno));
  }
}

}  // namespace pktbroker
