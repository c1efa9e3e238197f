// libmnl's socket calls for programs in the libmnl style. A NETLINK_NETFILTER socket is opened
// for real; the first nfnetlink_queue message sent on it turns it into a broker session (the
// broker socket takes over its descriptor number), while one that carries other subsystems'
// messages (nftables, conntrack: iptables-nft run by the program inherits LD_PRELOAD) stays
// the kernel's. Queue requests are translated to the broker's; each packet the broker delivers
// comes out of mnl_socket_recvfrom() as the kernel's NFQNL_MSG_PACKET message.
#include "kernel_packet.hpp"
#include "shim_session.hpp"

#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <mutex>
#include <set>
#include <vector>

#define PKTBROKER_NFQ_EXPORT __attribute__((visibility("default")))

using pktbroker::nfq::report;
using pktbroker::nfq::ShimSession;

namespace {

// The real libmnl function `name`.
template <typename Function>
Function* next(const char* name) {
  auto* found = reinterpret_cast<Function*>(dlsym(RTLD_NEXT, name));
  if (found == nullptr) report(std::string("libmnl's ") + name + " is not loaded");
  return found;
}

#define REAL(name) static auto* real_##name = next<decltype(::name)>(#name)

/// A NETLINK_NETFILTER socket as the program sees it: the kernel's, until queue messages make
/// it a broker session.
struct StandIn {
  mnl_socket* real = nullptr;
  unsigned int port_id = 0;  // the real socket's, which the program passes to mnl_cb_run
  std::unique_ptr<ShimSession> session;
  std::mutex replies_mutex;  // verdicts may be sent from another thread than the reader
  /// Acknowledgements and errors for the program's requests, read before packets. At most
  /// max_replies wait: a program that never reads them loses the oldest, not memory.
  std::deque<std::vector<std::uint8_t>> replies;
  static constexpr std::size_t max_replies = 64;
};

std::mutex stand_ins_mutex;
std::set<const void*> stand_ins;

StandIn* stand_in(const mnl_socket* nl) {
  const std::lock_guard lock(stand_ins_mutex);
  return stand_ins.contains(nl) ? reinterpret_cast<StandIn*>(const_cast<mnl_socket*>(nl)) : nullptr;
}

// The socket as libmnl knows it: the stand-in's real socket, or `nl` itself.
const mnl_socket* real_socket(const mnl_socket* nl) {
  const StandIn* socket = stand_in(nl);
  return socket != nullptr ? socket->real : nl;
}

mnl_socket* wrap(mnl_socket* real) {
  if (real == nullptr) return nullptr;
  auto* socket = new StandIn;
  socket->real = real;
  const std::lock_guard lock(stand_ins_mutex);
  stand_ins.insert(socket);
  return reinterpret_cast<mnl_socket*>(socket);
}

// The first queue message: connect to the broker and put its socket on the real descriptor.
bool become_broker_session(StandIn& socket) {
  REAL(mnl_socket_get_fd);
  REAL(mnl_socket_get_portid);
  auto session = ShimSession::open();
  if (!session) return false;
  const int fd = real_mnl_socket_get_fd(socket.real);
  const int flags = fcntl(fd, F_GETFL);
  socket.port_id = real_mnl_socket_get_portid(socket.real);
  if (dup3(session->fd(), fd, O_CLOEXEC) < 0) {
    report(std::string("cannot take over the netlink socket: ") + std::strerror(errno));
    return false;
  }
  if (flags >= 0 && (flags & O_NONBLOCK) != 0) {
    (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  socket.session = std::move(session);
  return true;
}

// Queues the kernel's answer to `request`: NLMSG_ERROR with `error` (0 acknowledges).
void reply(StandIn& socket, const nlmsghdr& request, int error) {
  std::vector<std::uint8_t> message(MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(nlmsgerr)));
  nlmsghdr* nlh = mnl_nlmsg_put_header(message.data());
  nlh->nlmsg_type = NLMSG_ERROR;
  nlh->nlmsg_seq = request.nlmsg_seq;
  nlh->nlmsg_pid = socket.port_id;
  auto* answer = static_cast<nlmsgerr*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nlmsgerr)));
  answer->error = -error;
  answer->msg = request;
  {
    const std::lock_guard lock(socket.replies_mutex);
    if (socket.replies.size() == StandIn::max_replies) socket.replies.pop_front();
    socket.replies.push_back(std::move(message));
  }
  // The kernel's reply makes the socket readable; the broker's answer to a PING does here, and
  // receive() hands out the reply when it reads that answer.
  (void)socket.session->client().nudge();
}

using AttributeTable = std::array<const nlattr*, NFQA_MAX + 1>;

int keep(const nlattr* attr, void* data) {
  if (mnl_attr_type_valid(attr, NFQA_MAX) >= 0) {
    (*static_cast<AttributeTable*>(data))[mnl_attr_get_type(attr)] = attr;
  }
  return MNL_CB_OK;
}

template <typename T>
const T* fixed(const nlattr* attr) {
  if (attr == nullptr || mnl_attr_get_payload_len(attr) < sizeof(T)) return nullptr;
  return static_cast<const T*>(mnl_attr_get_payload(attr));
}

// NFQNL_MSG_CONFIG, in the kernel's order: command, parameters, length, flags. 0 or an errno.
int configure(ShimSession& session, std::uint16_t number, const AttributeTable& attrs) {
  if (const auto* command = fixed<nfqnl_msg_config_cmd>(attrs[NFQA_CFG_CMD])) {
    switch (command->command) {
      case NFQNL_CFG_CMD_BIND:
        if (session.bind(number) == nullptr) return errno;
        break;
      case NFQNL_CFG_CMD_UNBIND:
        if (!session.unbind(number)) return ENODEV;
        break;
      case NFQNL_CFG_CMD_PF_BIND:
      case NFQNL_CFG_CMD_PF_UNBIND: break;  // no-ops since Linux 3.8
      default: return EOPNOTSUPP;
    }
  }
  const bool changes = attrs[NFQA_CFG_PARAMS] || attrs[NFQA_CFG_QUEUE_MAXLEN] ||
                       attrs[NFQA_CFG_FLAGS] || attrs[NFQA_CFG_MASK];
  if (changes && !session.bound(number)) return ENODEV;  // the kernel's answer, unbound queue
  if (const auto* params = fixed<nfqnl_msg_config_params>(attrs[NFQA_CFG_PARAMS])) {
    if (!session.set_mode(number, params->copy_mode, ntohl(params->copy_range))) return errno;
  }
  if (attrs[NFQA_CFG_FLAGS] || attrs[NFQA_CFG_MASK]) {
    const auto* flags = fixed<std::uint32_t>(attrs[NFQA_CFG_FLAGS]);
    const auto* mask = fixed<std::uint32_t>(attrs[NFQA_CFG_MASK]);
    if (flags == nullptr || mask == nullptr) return EINVAL;
    if (!session.set_flags(number, ntohl(*mask), ntohl(*flags))) return errno;
  }
  return 0;  // NFQA_CFG_QUEUE_MAXLEN: the broker's queue length applies
}

// NFQNL_MSG_VERDICT and _BATCH. 0 or an errno.
int decide(ShimSession& session, std::uint16_t number, bool batch, const AttributeTable& attrs) {
  const auto* header = fixed<nfqnl_msg_verdict_hdr>(attrs[NFQA_VERDICT_HDR]);
  if (header == nullptr) return EINVAL;
  if (attrs[NFQA_CT] != nullptr || attrs[NFQA_EXP] != nullptr) {
    report(
        "conntrack attributes in a verdict (a connmark, an expectation) are not supported "
        "through the broker; the verdict is refused");
    return EOPNOTSUPP;
  }
  std::optional<std::uint32_t> mark;
  if (const auto* value = fixed<std::uint32_t>(attrs[NFQA_MARK])) mark = ntohl(*value);
  const std::uint32_t id = ntohl(header->id);
  const std::uint32_t verdict = ntohl(header->verdict);
  int result = 0;
  if (batch) {
    result = session.verdict_through(number, id, verdict, mark);
  } else {
    std::span<const std::uint8_t> payload;
    if (const nlattr* bytes = attrs[NFQA_PAYLOAD]) {
      payload = {static_cast<const std::uint8_t*>(mnl_attr_get_payload(bytes)),
                 mnl_attr_get_payload_len(bytes)};
    }
    result = session.verdict(number, id, verdict, mark, payload);
  }
  return result == 0 ? 0 : errno;
}

bool is_queue_message(const nlmsghdr* nlh) {
  return (nlh->nlmsg_type >> 8) == NFNL_SUBSYS_QUEUE &&
         nlh->nlmsg_len >= MNL_NLMSG_HDRLEN + sizeof(nfgenmsg);
}

ssize_t send_requests(StandIn& socket, const void* buffer, std::size_t size) {
  int remaining = static_cast<int>(std::min<std::size_t>(size, INT32_MAX));
  for (auto* nlh = static_cast<const nlmsghdr*>(buffer); mnl_nlmsg_ok(nlh, remaining);
       nlh = mnl_nlmsg_next(nlh, &remaining)) {
    if (!is_queue_message(nlh)) {
      report("a netlink message for nfnetlink subsystem " + std::to_string(nlh->nlmsg_type >> 8) +
             " on a socket that carries queue messages to the broker: use another socket");
      errno = EOPNOTSUPP;
      return -1;
    }
    const auto* message = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh));
    const std::uint16_t number = ntohs(message->res_id);
    AttributeTable attrs{};
    if (mnl_attr_parse(nlh, sizeof(nfgenmsg), keep, &attrs) < 0) {
      errno = EINVAL;
      return -1;
    }
    const int type = nlh->nlmsg_type & 0xff;
    if (type == NFQNL_MSG_CONFIG) {
      // A configuration the broker cannot follow fails the call: the program stops at start-up
      // with the reason on stderr instead of running on settings it did not get.
      if (const int error = configure(*socket.session, number, attrs)) {
        errno = error;
        return -1;
      }
      if ((nlh->nlmsg_flags & NLM_F_ACK) != 0) reply(socket, *nlh, 0);
    } else if (type == NFQNL_MSG_VERDICT || type == NFQNL_MSG_VERDICT_BATCH) {
      // As in the kernel, a verdict that fails (an id not waiting) is answered by a message.
      const int error = decide(*socket.session, number, type == NFQNL_MSG_VERDICT_BATCH, attrs);
      if (error != 0 || (nlh->nlmsg_flags & NLM_F_ACK) != 0) reply(socket, *nlh, error);
    } else {
      reply(socket, *nlh, EOPNOTSUPP);
    }
  }
  return static_cast<ssize_t>(size);
}

// The kernel's NFQNL_MSG_PACKET for a delivered packet, built in `buffer`; its length, or 0
// when it does not fit.
std::size_t packet_message(const ShimSession::Delivery& delivery,
                           const pktbroker::proto::Packet& packet, void* buffer, std::size_t size) {
  if (size < MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(nfgenmsg))) return 0;
  nlmsghdr* nlh = mnl_nlmsg_put_header(buffer);
  nlh->nlmsg_type = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET;
  auto* message = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  *message = {pktbroker::nfq::family(packet), NFNETLINK_V0, htons(delivery.queue)};
  nfqnl_msg_packet_hdr header{};
  header.packet_id = htonl(delivery.id);
  header.hw_protocol = htons(pktbroker::nfq::ethertype(packet));
  header.hook = packet.hook;
  const std::uint64_t ns = packet.timestamp_ns;
  const nfqnl_msg_packet_timestamp stamp{htobe64(ns / 1'000'000'000),
                                         htobe64(ns % 1'000'000'000 / 1000)};
  bool fits = mnl_attr_put_check(nlh, size, NFQA_PACKET_HDR, sizeof header, &header);
  auto put_u32 = [&](std::uint16_t type, std::uint32_t value) {
    fits = fits && mnl_attr_put_u32_check(nlh, size, type, htonl(value));
  };
  if (packet.mark != 0) put_u32(NFQA_MARK, packet.mark);
  if (packet.in_ifindex != 0) put_u32(NFQA_IFINDEX_INDEV, packet.in_ifindex);
  if (packet.out_ifindex != 0) put_u32(NFQA_IFINDEX_OUTDEV, packet.out_ifindex);
  if ((delivery.settings.flags & NFQA_CFG_F_UID_GID) != 0) {
    if (packet.uid) put_u32(NFQA_UID, *packet.uid);
    if (packet.gid) put_u32(NFQA_GID, *packet.gid);
  }
  if (ns != 0) fits = fits && mnl_attr_put_check(nlh, size, NFQA_TIMESTAMP, sizeof stamp, &stamp);
  if (const int shown = delivery.settings.shown(packet.payload.size()); shown >= 0) {
    if (packet.wire_length > static_cast<std::uint32_t>(shown)) {
      put_u32(NFQA_CAP_LEN, packet.wire_length);
    }
    fits = fits && mnl_attr_put_check(nlh, size, NFQA_PAYLOAD, static_cast<std::size_t>(shown),
                                      packet.payload.data());
  }
  return fits ? nlh->nlmsg_len : 0;
}

// The next waiting reply; false when there is none.
bool take_reply(StandIn& socket, std::vector<std::uint8_t>& message) {
  const std::lock_guard lock(socket.replies_mutex);
  if (socket.replies.empty()) return false;
  message = std::move(socket.replies.front());
  socket.replies.pop_front();
  return true;
}

// A reply is handed out when the answer to its nudge is read, so every PONG that made the
// socket readable is consumed by the read it woke.
ssize_t receive(StandIn& socket, void* buffer, std::size_t size) {
  ShimSession& session = *socket.session;
  const bool blocking = (fcntl(session.fd(), F_GETFL) & O_NONBLOCK) == 0;
  for (;;) {
    pktbroker::ReceivedPacket packet;
    const auto error = session.client().next_packet(packet, blocking ? -1 : 0);
    session.report_notices();
    if (error == pktbroker::ClientError::woken) {
      std::vector<std::uint8_t> message;
      if (!take_reply(socket, message)) continue;  // held packets' nudge, or a reply dropped
      std::memcpy(buffer, message.data(), std::min(size, message.size()));
      if (size < message.size()) {
        errno = ENOSPC;
        return -1;
      }
      return static_cast<ssize_t>(message.size());
    }
    if (error == pktbroker::ClientError::timeout) {
      errno = EAGAIN;
      return -1;
    }
    if (error == std::errc::interrupted) {
      errno = EINTR;
      return -1;
    }
    if (error) {
      report("the broker session ended: " + error.message());
      errno = pktbroker::nfq::errno_of(error, ECONNRESET);
      return -1;
    }
    const auto delivery = session.accept(packet.info());
    if (!delivery) continue;  // its queue was unbound: the broker gives it the fallback
    if (const std::size_t length = packet_message(*delivery, packet.info(), buffer, size)) {
      return static_cast<ssize_t>(length);
    }
    // The kernel's answer to a packet larger than the buffer; the packet takes its fallback.
    session.forget(delivery->queue, delivery->id);
    errno = ENOSPC;
    return -1;
  }
}

}  // namespace

extern "C" {

PKTBROKER_NFQ_EXPORT mnl_socket* mnl_socket_open(int bus) {
  REAL(mnl_socket_open);
  if (real_mnl_socket_open == nullptr) return nullptr;
  mnl_socket* real = real_mnl_socket_open(bus);
  return bus == NETLINK_NETFILTER ? wrap(real) : real;
}

PKTBROKER_NFQ_EXPORT mnl_socket* mnl_socket_open2(int bus, int flags) {
  REAL(mnl_socket_open2);
  if (real_mnl_socket_open2 == nullptr) return nullptr;
  mnl_socket* real = real_mnl_socket_open2(bus, flags);
  return bus == NETLINK_NETFILTER ? wrap(real) : real;
}

PKTBROKER_NFQ_EXPORT int mnl_socket_bind(mnl_socket* nl, unsigned int groups, pid_t pid) {
  REAL(mnl_socket_bind);
  return real_mnl_socket_bind != nullptr
             ? real_mnl_socket_bind(const_cast<mnl_socket*>(real_socket(nl)), groups, pid)
             : -1;
}

PKTBROKER_NFQ_EXPORT int mnl_socket_close(mnl_socket* nl) {
  REAL(mnl_socket_close);
  StandIn* socket = stand_in(nl);
  mnl_socket* real = socket != nullptr ? socket->real : nl;
  if (socket != nullptr) {
    const std::lock_guard lock(stand_ins_mutex);
    stand_ins.erase(socket);
  }
  const int result = real_mnl_socket_close != nullptr ? real_mnl_socket_close(real) : -1;
  delete socket;  // its session, if any, gives every waiting packet its fallback
  return result;
}

PKTBROKER_NFQ_EXPORT int mnl_socket_get_fd(const mnl_socket* nl) {
  REAL(mnl_socket_get_fd);
  return real_mnl_socket_get_fd != nullptr ? real_mnl_socket_get_fd(real_socket(nl)) : -1;
}

PKTBROKER_NFQ_EXPORT unsigned int mnl_socket_get_portid(const mnl_socket* nl) {
  REAL(mnl_socket_get_portid);
  return real_mnl_socket_get_portid != nullptr ? real_mnl_socket_get_portid(real_socket(nl)) : 0;
}

PKTBROKER_NFQ_EXPORT ssize_t mnl_socket_sendto(const mnl_socket* nl, const void* req, size_t siz) {
  REAL(mnl_socket_sendto);
  StandIn* socket = stand_in(nl);
  if (socket != nullptr && !socket->session && siz >= sizeof(nlmsghdr) &&
      is_queue_message(static_cast<const nlmsghdr*>(req)) && !become_broker_session(*socket)) {
    return -1;
  }
  if (socket != nullptr && socket->session) return send_requests(*socket, req, siz);
  return real_mnl_socket_sendto != nullptr ? real_mnl_socket_sendto(real_socket(nl), req, siz) : -1;
}

PKTBROKER_NFQ_EXPORT ssize_t mnl_socket_recvfrom(const mnl_socket* nl, void* buf, size_t siz) {
  REAL(mnl_socket_recvfrom);
  StandIn* socket = stand_in(nl);
  if (socket != nullptr && socket->session) return receive(*socket, buf, siz);
  return real_mnl_socket_recvfrom != nullptr ? real_mnl_socket_recvfrom(real_socket(nl), buf, siz)
                                             : -1;
}

// Netlink socket options (NETLINK_NO_ENOBUFS, NETLINK_EXT_ACK, ...) set before the socket turns
// into a broker session go to the kernel's socket; afterwards they tune a socket the broker
// owns: accepted and not applied.
PKTBROKER_NFQ_EXPORT int mnl_socket_setsockopt(const mnl_socket* nl, int type, void* buf,
                                               socklen_t len) {
  REAL(mnl_socket_setsockopt);
  StandIn* socket = stand_in(nl);
  if (socket != nullptr && socket->session) return 0;
  return real_mnl_socket_setsockopt != nullptr
             ? real_mnl_socket_setsockopt(real_socket(nl), type, buf, len)
             : -1;
}

PKTBROKER_NFQ_EXPORT int mnl_socket_getsockopt(const mnl_socket* nl, int type, void* buf,
                                               socklen_t* len) {
  REAL(mnl_socket_getsockopt);
  StandIn* socket = stand_in(nl);
  if (socket != nullptr && socket->session) {
    report("netlink socket options cannot be read through the broker");
    errno = ENOPROTOOPT;
    return -1;
  }
  return real_mnl_socket_getsockopt != nullptr
             ? real_mnl_socket_getsockopt(real_socket(nl), type, buf, len)
             : -1;
}

}  // extern "C"
