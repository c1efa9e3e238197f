#include "broker/queue/queue_reader.hpp"

#include "broker/queue/nfq_socket.hpp"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
// libnetfilter_queue.h needs the kernel types above first.
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

namespace pktbroker {
namespace {

constexpr std::size_t batch_slots = 64;       // datagrams per recvmmsg, one verdict flush each
constexpr int rounds_per_wakeup = 8;          // recvmmsg calls before yielding to other work
constexpr std::size_t attribute_room = 4096;  // netlink attributes around the payload
// The kernel never copies more than this (NFQNL_MAX_COPY_RANGE: 0xffff - NLA_HDRLEN).
constexpr std::uint32_t max_copy_range = 0xffff - 4;

// enum ip_conntrack_info, from linux/netfilter/nf_conntrack_common.h.
CtState ct_state_from_info(std::uint32_t info) noexcept {
  switch (info) {
    case 0:
    case 3: return CtState::established;  // IP_CT_ESTABLISHED(_REPLY)
    case 1:
    case 4: return CtState::related;  // IP_CT_RELATED(_REPLY)
    case 2: return CtState::new_;     // IP_CT_NEW
    default: return CtState::none;
  }
}

std::uint32_t u32_attribute(const nlattr* attribute) noexcept {
  return ntohl(mnl_attr_get_u32(attribute));
}

}  // namespace

bool parse_packet_message(const nlmsghdr* message, PacketMeta& meta) noexcept {
  std::array<nlattr*, NFQA_MAX + 1> attributes{};
  if (nfq_nlmsg_parse(message, attributes.data()) < 0) return false;
  const nlattr* header_attribute = attributes[NFQA_PACKET_HDR];
  if (header_attribute == nullptr ||
      mnl_attr_get_payload_len(header_attribute) < sizeof(nfqnl_msg_packet_hdr)) {
    return false;
  }
  nfqnl_msg_packet_hdr header{};
  std::memcpy(&header, mnl_attr_get_payload(header_attribute), sizeof header);
  const auto* generic = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(message));

  meta = PacketMeta{};
  meta.packet_id = ntohl(header.packet_id);
  meta.hw_protocol = ntohs(header.hw_protocol);
  meta.hook = header.hook;
  meta.queue = ntohs(generic->res_id);
  if (const nlattr* a = attributes[NFQA_MARK]) meta.mark = u32_attribute(a);
  if (const nlattr* a = attributes[NFQA_IFINDEX_INDEV]) meta.in_ifindex = u32_attribute(a);
  if (const nlattr* a = attributes[NFQA_IFINDEX_OUTDEV]) meta.out_ifindex = u32_attribute(a);
  if (const nlattr* a = attributes[NFQA_UID]) meta.uid = u32_attribute(a);
  if (const nlattr* a = attributes[NFQA_GID]) meta.gid = u32_attribute(a);
  if (const nlattr* a = attributes[NFQA_CT_INFO])
    meta.ct_state = ct_state_from_info(u32_attribute(a));
  if (const nlattr* a = attributes[NFQA_PAYLOAD]) {
    meta.payload = {static_cast<const std::uint8_t*>(mnl_attr_get_payload(a)),
                    mnl_attr_get_payload_len(a)};
  }
  meta.wire_length = static_cast<std::uint32_t>(meta.payload.size());
  if (const nlattr* a = attributes[NFQA_CAP_LEN]) meta.wire_length = u32_attribute(a);
  return true;
}

std::optional<std::uint32_t> packet_id_of(std::span<const std::uint8_t> message) noexcept {
  constexpr std::size_t header_size = MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(nfgenmsg));
  if (message.size() < header_size) return std::nullopt;
  nlmsghdr header{};
  std::memcpy(&header, message.data(), sizeof header);
  if (NFNL_MSG_TYPE(header.nlmsg_type) != NFQNL_MSG_PACKET) return std::nullopt;
  const std::size_t end = std::min<std::size_t>(message.size(), header.nlmsg_len);
  for (std::size_t at = header_size; at + sizeof(nlattr) <= end;) {
    nlattr attribute{};
    std::memcpy(&attribute, message.data() + at, sizeof attribute);
    if (attribute.nla_len < sizeof(nlattr)) return std::nullopt;
    if ((attribute.nla_type & NLA_TYPE_MASK) == NFQA_PACKET_HDR) {
      if (attribute.nla_len < sizeof(nlattr) + sizeof(nfqnl_msg_packet_hdr) ||
          at + sizeof(nlattr) + sizeof(nfqnl_msg_packet_hdr) > end) {
        return std::nullopt;
      }
      nfqnl_msg_packet_hdr packet{};
      std::memcpy(&packet, message.data() + at + sizeof(nlattr), sizeof packet);
      return ntohl(packet.packet_id);
    }
    at += MNL_ALIGN(attribute.nla_len);
  }
  return std::nullopt;
}

std::size_t receive_buffer_size(std::uint32_t copy_range) noexcept {
  const std::uint32_t payload =
      copy_range == 0 || copy_range > max_copy_range ? max_copy_range : copy_range;
  return payload + attribute_room;
}

QueueReader::QueueReader(const Strand& executor, NfqSocket& socket, std::uint32_t copy_range,
                         QueueCounters& counters)
    : descriptor_(executor, socket.fd()),
      socket_(socket),
      counters_(counters),
      buffers_(batch_slots, std::vector<std::uint8_t>(receive_buffer_size(copy_range))),
      iovecs_(batch_slots),
      headers_(batch_slots) {
  for (std::size_t i = 0; i < batch_slots; ++i) {
    iovecs_[i] = {buffers_[i].data(), buffers_[i].size()};
    headers_[i] = {};
    headers_[i].msg_hdr.msg_iov = &iovecs_[i];
    headers_[i].msg_hdr.msg_iovlen = 1;
  }
}

// The socket owns the descriptor; only detach it from Asio.
QueueReader::~QueueReader() {
  descriptor_.release();
}

void QueueReader::start(PacketHandler on_packet, UnreadableHandler on_unreadable,
                        BatchDoneHandler on_batch_done) {
  on_packet_ = std::move(on_packet);
  on_unreadable_ = std::move(on_unreadable);
  on_batch_done_ = std::move(on_batch_done);
  for (const auto& message : socket_.take_early_messages()) handle_datagram(message);
  on_batch_done_();
  do_wait();
}

void QueueReader::stop() {
  stopped_ = true;
  boost::system::error_code ignored;
  descriptor_.cancel(ignored);
}

void QueueReader::do_wait() {
  descriptor_.async_wait(StrandDescriptor::wait_read,
                         [this](const boost::system::error_code& error) { on_readable(error); });
}

void QueueReader::on_readable(const boost::system::error_code& error) {
  if (stopped_ || error == boost::asio::error::operation_aborted) return;
  if (error) {
    spdlog::error("queue {}: waiting for packets failed: {}", socket_.queue(), error.message());
    counters_.count(NetlinkError::receive_failed);
  }
  for (int round = 0; round < rounds_per_wakeup; ++round) {
    const int received = receive_batch();
    if (received < static_cast<int>(batch_slots)) break;
  }
  do_wait();
}

void QueueReader::drain(std::size_t limit) {
  std::size_t handled = 0;
  while (handled < limit) {
    const int received = receive_batch();
    if (received <= 0) break;
    handled += static_cast<std::size_t>(received);
  }
}

int QueueReader::receive_batch() {
  for (auto& header : headers_) header.msg_hdr.msg_flags = 0;
  const int received = recvmmsg(socket_.fd(), headers_.data(), static_cast<unsigned>(batch_slots),
                                MSG_DONTWAIT, nullptr);
  if (received < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return -1;
    if (errno == ENOBUFS) {
      counters_.count(NetlinkError::receive_overrun);
      return 0;
    }
    counters_.count(NetlinkError::receive_failed);
    spdlog::warn("queue {}: receiving packets failed: {}", socket_.queue(), std::strerror(errno));
    return -1;
  }
  for (int i = 0; i < received; ++i) {
    if ((headers_[i].msg_hdr.msg_flags & MSG_TRUNC) != 0) {
      // Cannot happen with buffers sized for the kernel's cap; if it does, the packet still
      // gets a verdict (an unjudged packet would be accepted by a later batch verdict).
      counters_.count(NetlinkError::message_truncated);
      const auto id = packet_id_of(std::span(buffers_[i].data(), buffers_[i].size()));
      if (id) on_unreadable_(*id);
      continue;
    }
    handle_datagram(std::span(buffers_[i].data(), headers_[i].msg_len));
  }
  on_batch_done_();
  return received;
}

void QueueReader::handle_datagram(std::span<const std::uint8_t> datagram) {
  auto remaining = static_cast<int>(datagram.size());
  PacketMeta meta;
  for (const auto* message = reinterpret_cast<const nlmsghdr*>(datagram.data());
       mnl_nlmsg_ok(message, remaining); message = mnl_nlmsg_next(message, &remaining)) {
    if (message->nlmsg_type == NLMSG_ERROR) {
      const auto* error = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(message));
      if (error->error != 0) {
        counters_.count(NetlinkError::kernel_error);
        spdlog::debug("queue {}: kernel rejected a verdict: {}", socket_.queue(),
                      std::strerror(-error->error));
      }
      continue;
    }
    if (NFNL_MSG_TYPE(message->nlmsg_type) != NFQNL_MSG_PACKET) continue;
    if (!parse_packet_message(message, meta)) {
      counters_.count(NetlinkError::bad_message);
      const auto* start = reinterpret_cast<const std::uint8_t*>(message);
      const auto id = packet_id_of(std::span(start, datagram.data() + datagram.size()));
      if (id) on_unreadable_(*id);
      continue;
    }
    on_packet_(meta);
  }
}

}  // namespace pktbroker
