// libnetfilter_queue's handle API (nfq_open ... nfq_set_verdict), answered through pktbrokerd.
// The program reads the broker socket nfq_fd() returns and hands what it read to
// nfq_handle_packet(), exactly as it would with the kernel's netlink socket.
#include "datagram_batch.hpp"
#include "kernel_packet.hpp"
#include "shim_session.hpp"

#include <libnetfilter_queue/libnetfilter_queue.h>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <list>
#include <memory>
#include <mutex>
#include <set>

#define PKTBROKER_NFQ_EXPORT __attribute__((visibility("default")))

using pktbroker::nfq::ShimSession;

struct nfq_handle {
  std::unique_ptr<ShimSession> session;
  std::list<nfq_q_handle> queues;
  /// The packets waiting behind the one the program read: as many as fit a 64 KiB packet each.
  pktbroker::DatagramBatch waiting{32, 0xffff + 4096};
  int closed_broker_socket = -1;  // see broker_gone()
};

struct nfq_q_handle {
  nfq_handle* handle = nullptr;
  std::uint16_t number = 0;
  nfq_callback* callback = nullptr;
  void* data = nullptr;
};

struct nfq_data {
  const pktbroker::proto::Packet* packet = nullptr;
  pktbroker::nfq::QueueSettings settings;  // a copy: the callback may destroy its queue
  nfqnl_msg_packet_hdr header{};
};

namespace {

// nfq_nfnlh() hands out the nfq handle itself as the nfnl handle; nfnl_fd() and
// nfnl_rcvbufsiz() know it by this set and pass any other handle on to libnfnetlink.
std::mutex handles_mutex;
std::set<const void*> handles;

bool is_ours(const void* handle) {
  const std::lock_guard lock(handles_mutex);
  return handles.contains(handle);
}

int unsupported(const char* function) {
  pktbroker::nfq::report(std::string(function) + " is not supported through the broker");
  errno = EOPNOTSUPP;
  return -1;
}

std::span<const std::uint8_t> bytes(const unsigned char* buffer, std::uint32_t length) {
  return buffer == nullptr ? std::span<const std::uint8_t>() : std::span(buffer, length);
}

// Hands one delivered packet to its queue's callback; the callback's return value.
int deliver(nfq_handle& handle, const pktbroker::proto::Packet& packet) {
  const auto delivery = handle.session->accept(packet);
  if (!delivery) return 0;  // its queue was destroyed
  const auto found =
      std::find_if(handle.queues.begin(), handle.queues.end(),
                   [&delivery](const nfq_q_handle& q) { return q.number == delivery->queue; });
  if (found == handle.queues.end()) return 0;
  nfq_data data;
  data.packet = &packet;
  data.settings = delivery->settings;
  data.header.packet_id = htonl(delivery->id);
  data.header.hw_protocol = htons(pktbroker::nfq::ethertype(packet));
  data.header.hook = packet.hook;
  nfgenmsg message{pktbroker::nfq::family(packet), NFNETLINK_V0, htons(delivery->queue)};
  return found->callback(&*found, &message, &data, found->data);
}

// The broker closed the session. A SOCK_SEQPACKET socket then reads 0 bytes forever, which
// netlink never does and loops like `while (recv(...) >= 0)` would spin on: an unconnected
// socket takes its descriptor number, so the program's next read fails with ENOTCONN. The
// broker socket itself stays open (until nfq_close) so that an epoll set watching the number
// keeps reporting it readable, and the program comes to read.
void broker_gone(nfq_handle& handle) {
  if (handle.closed_broker_socket >= 0) return;
  pktbroker::nfq::report("pktbrokerd closed the session; reads now fail with ENOTCONN");
  const int fd = handle.session->fd();
  handle.closed_broker_socket = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  const int unconnected = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (unconnected >= 0) {
    (void)dup3(unconnected, fd, O_CLOEXEC);
    close(unconnected);
  }
}

// The packets in a datagram the program read; the first negative callback result, else 0.
int deliver_datagram(nfq_handle& handle, std::span<const std::uint8_t> datagram) {
  pktbroker::proto::Decoded decoded;
  if (const auto error = pktbroker::proto::decode(datagram, decoded)) {
    pktbroker::nfq::report(
        "nfq_handle_packet: " + std::to_string(datagram.size()) +
        " bytes that are not a message from pktbrokerd (" + error.message() +
        "); a packet larger than the program's receive buffer is cut short: give the broker "
        "queue gso: false if the program does not handle GSO");
    errno = EINVAL;
    return -1;
  }
  if (const auto* packet = std::get_if<pktbroker::proto::Packet>(&decoded.message)) {
    return deliver(handle, *packet);
  }
  if (const auto* batch = std::get_if<pktbroker::proto::PacketBatch>(&decoded.message)) {
    for (const auto& packet : batch->packets) {
      if (const int result = deliver(handle, packet); result < 0) return result;
    }
  } else if (const auto* error = std::get_if<pktbroker::proto::Error>(&decoded.message)) {
    pktbroker::nfq::report("pktbrokerd: " + error->text);
  }
  return 0;  // PONG and other replies carry no packet
}

}  // namespace

extern "C" {

PKTBROKER_NFQ_EXPORT int nfq_errno = 0;

PKTBROKER_NFQ_EXPORT nfq_handle* nfq_open() {
  auto session = ShimSession::open();
  if (!session) return nullptr;
  auto* handle = new nfq_handle{std::move(session), {}};
  const std::lock_guard lock(handles_mutex);
  handles.insert(handle);
  return handle;
}

PKTBROKER_NFQ_EXPORT nfq_handle* nfq_open_nfnl(nfnl_handle* /*nfnlh*/) {
  unsupported("nfq_open_nfnl (a netlink handle of the program's own)");
  return nullptr;
}

PKTBROKER_NFQ_EXPORT int nfq_close(nfq_handle* h) {
  {
    const std::lock_guard lock(handles_mutex);
    handles.erase(h);
  }
  if (h->closed_broker_socket >= 0) close(h->closed_broker_socket);
  delete h;  // closing the session gives every packet still waiting its fallback
  return 0;
}

// Binding a protocol family is a no-op in kernels since 3.8, and so here.
PKTBROKER_NFQ_EXPORT int nfq_bind_pf(nfq_handle* /*h*/, uint16_t /*pf*/) {
  return 0;
}
PKTBROKER_NFQ_EXPORT int nfq_unbind_pf(nfq_handle* /*h*/, uint16_t /*pf*/) {
  return 0;
}

PKTBROKER_NFQ_EXPORT nfq_q_handle* nfq_create_queue(nfq_handle* h, uint16_t num, nfq_callback* cb,
                                                    void* data) {
  if (cb == nullptr) {
    errno = EINVAL;
    return nullptr;
  }
  if (h->session->bind(num) == nullptr) return nullptr;
  return &h->queues.emplace_back(nfq_q_handle{h, num, cb, data});
}

PKTBROKER_NFQ_EXPORT int nfq_destroy_queue(nfq_q_handle* qh) {
  nfq_handle* h = qh->handle;
  h->session->unbind(qh->number);
  h->queues.remove_if([qh](const nfq_q_handle& q) { return &q == qh; });
  return 0;
}

PKTBROKER_NFQ_EXPORT int nfq_set_mode(nfq_q_handle* qh, uint8_t mode, unsigned int len) {
  return qh->handle->session->set_mode(qh->number, mode, len) ? 0 : -1;
}

// The broker's own queue length bounds what waits in the kernel; the program's is not applied.
PKTBROKER_NFQ_EXPORT int nfq_set_queue_maxlen(nfq_q_handle* /*qh*/, uint32_t /*queuelen*/) {
  return 0;
}

PKTBROKER_NFQ_EXPORT int nfq_set_queue_flags(nfq_q_handle* qh, uint32_t mask, uint32_t flags) {
  return qh->handle->session->set_flags(qh->number, mask, flags) ? 0 : -1;
}

PKTBROKER_NFQ_EXPORT int nfq_fd(nfq_handle* h) {
  return h->session->fd();
}

PKTBROKER_NFQ_EXPORT nfnl_handle* nfq_nfnlh(nfq_handle* h) {
  return reinterpret_cast<nfnl_handle*>(h);
}

PKTBROKER_NFQ_EXPORT int nfnl_fd(nfnl_handle* h) {
  if (is_ours(h)) return nfq_fd(reinterpret_cast<nfq_handle*>(h));
  static const auto next = reinterpret_cast<int (*)(nfnl_handle*)>(dlsym(RTLD_NEXT, "nfnl_fd"));
  return next != nullptr ? next(h) : unsupported("nfnl_fd on a handle not from nfq_nfnlh");
}

PKTBROKER_NFQ_EXPORT unsigned int nfnl_rcvbufsiz(const nfnl_handle* h, unsigned int size) {
  if (!is_ours(h)) {
    static const auto next = reinterpret_cast<unsigned int (*)(const nfnl_handle*, unsigned int)>(
        dlsym(RTLD_NEXT, "nfnl_rcvbufsiz"));
    return next != nullptr ? next(h, size) : 0;
  }
  const int fd = reinterpret_cast<const nfq_handle*>(h)->session->fd();
  int value = static_cast<int>(std::min<unsigned int>(size, INT32_MAX));
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &value, sizeof value) != 0) {  // as libnfnetlink
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &value, sizeof value);
  }
  socklen_t length = sizeof value;
  (void)getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &value, &length);
  return static_cast<unsigned int>(value);
}

// Besides the datagram the program read, hands out the packets already waiting (those the
// client holds, then what one recvmmsg finds), so that a busy queue costs the program one read
// and one verdict message per call: the verdicts the callbacks give are sent together before it
// returns.
PKTBROKER_NFQ_EXPORT int nfq_handle_packet(nfq_handle* h, char* buf, int len) {
  ShimSession& session = *h->session;
  if (len <= 0) {
    if (len == 0) broker_gone(*h);  // what the program's own recv() read
    errno = len == 0 ? ENOTCONN : EINVAL;
    return -1;
  }
  // Every packet taken off the socket is handed out, whatever the callbacks return: the first
  // failure is what the call returns.
  int result = 0;
  auto keep_first_failure = [&result](int outcome) {
    if (outcome < 0 && result >= 0) result = outcome;
  };
  session.begin_gathering();
  keep_first_failure(deliver_datagram(
      *h, std::span(reinterpret_cast<const std::uint8_t*>(buf), static_cast<std::size_t>(len))));
  while (session.client().holds_packets()) {
    pktbroker::ReceivedPacket held;
    if (session.client().next_packet(held, 0)) break;
    keep_first_failure(deliver(*h, held.info()));
  }
  const int count = h->closed_broker_socket < 0 ? h->waiting.receive(session.fd()) : 0;
  for (int i = 0; i < count; ++i) {
    bool truncated = false;
    const auto datagram = h->waiting.datagram(i, truncated);
    if (datagram.empty()) {
      broker_gone(*h);
      break;
    }
    if (truncated) {
      pktbroker::nfq::report("a message from pktbrokerd longer than 68 KiB: skipped");
      errno = EMSGSIZE;
      keep_first_failure(-1);
      continue;
    }
    keep_first_failure(deliver_datagram(*h, datagram));
  }
  const int sent = session.end_gathering();
  session.report_notices();
  return result < 0 || sent < 0 ? -1 : 0;
}

PKTBROKER_NFQ_EXPORT int nfq_set_verdict(nfq_q_handle* qh, uint32_t id, uint32_t verdict,
                                         uint32_t data_len, const unsigned char* buf) {
  return qh->handle->session->verdict(qh->number, id, verdict, std::nullopt, bytes(buf, data_len));
}

PKTBROKER_NFQ_EXPORT int nfq_set_verdict2(nfq_q_handle* qh, uint32_t id, uint32_t verdict,
                                          uint32_t mark, uint32_t datalen,
                                          const unsigned char* buf) {
  return qh->handle->session->verdict(qh->number, id, verdict, mark, bytes(buf, datalen));
}

PKTBROKER_NFQ_EXPORT int nfq_set_verdict_batch(nfq_q_handle* qh, uint32_t id, uint32_t verdict) {
  return qh->handle->session->verdict_through(qh->number, id, verdict, std::nullopt);
}

PKTBROKER_NFQ_EXPORT int nfq_set_verdict_batch2(nfq_q_handle* qh, uint32_t id, uint32_t verdict,
                                                uint32_t mark) {
  return qh->handle->session->verdict_through(qh->number, id, verdict, mark);
}

// The deprecated variant takes the mark in network byte order.
PKTBROKER_NFQ_EXPORT int nfq_set_verdict_mark(nfq_q_handle* qh, uint32_t id, uint32_t verdict,
                                              uint32_t mark, uint32_t datalen,
                                              const unsigned char* buf) {
  return qh->handle->session->verdict(qh->number, id, verdict, ntohl(mark), bytes(buf, datalen));
}

PKTBROKER_NFQ_EXPORT nfqnl_msg_packet_hdr* nfq_get_msg_packet_hdr(nfq_data* nfad) {
  return &nfad->header;
}

PKTBROKER_NFQ_EXPORT uint32_t nfq_get_nfmark(nfq_data* nfad) {
  return nfad->packet->mark;
}

// The time pktbrokerd read the packet from the kernel.
PKTBROKER_NFQ_EXPORT int nfq_get_timestamp(nfq_data* nfad, timeval* tv) {
  const std::uint64_t ns = nfad->packet->timestamp_ns;
  if (ns == 0) return -1;
  tv->tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  tv->tv_usec = static_cast<suseconds_t>(ns % 1'000'000'000 / 1000);
  return 0;
}

PKTBROKER_NFQ_EXPORT uint32_t nfq_get_indev(nfq_data* nfad) {
  return nfad->packet->in_ifindex;
}
PKTBROKER_NFQ_EXPORT uint32_t nfq_get_outdev(nfq_data* nfad) {
  return nfad->packet->out_ifindex;
}
// Bridge ports and skb info are not passed on by the broker: 0, as for a packet without them.
PKTBROKER_NFQ_EXPORT uint32_t nfq_get_physindev(nfq_data* /*nfad*/) {
  return 0;
}
PKTBROKER_NFQ_EXPORT uint32_t nfq_get_physoutdev(nfq_data* /*nfad*/) {
  return 0;
}
PKTBROKER_NFQ_EXPORT uint32_t nfq_get_skbinfo(nfq_data* /*nfad*/) {
  return 0;
}

PKTBROKER_NFQ_EXPORT int nfq_get_uid(nfq_data* nfad, uint32_t* uid) {
  if ((nfad->settings.flags & NFQA_CFG_F_UID_GID) == 0 || !nfad->packet->uid) return 0;
  *uid = *nfad->packet->uid;
  return 1;
}

PKTBROKER_NFQ_EXPORT int nfq_get_gid(nfq_data* nfad, uint32_t* gid) {
  if ((nfad->settings.flags & NFQA_CFG_F_UID_GID) == 0 || !nfad->packet->gid) return 0;
  *gid = *nfad->packet->gid;
  return 1;
}

PKTBROKER_NFQ_EXPORT int nfq_get_secctx(nfq_data* /*nfad*/, unsigned char** /*secdata*/) {
  return -1;  // no security context: the kernel's answer without NFQA_CFG_F_SECCTX
}

// Link-layer addresses are not passed on by the broker (none exist on OUTPUT either).
PKTBROKER_NFQ_EXPORT nfqnl_msg_packet_hw* nfq_get_packet_hw(nfq_data* /*nfad*/) {
  return nullptr;
}

PKTBROKER_NFQ_EXPORT int nfq_get_payload(nfq_data* nfad, unsigned char** data) {
  const int shown = nfad->settings.shown(nfad->packet->payload.size());
  // The bytes lie in the program's own receive buffer (or the client's copy): writable.
  if (shown >= 0) *data = const_cast<unsigned char*>(nfad->packet->payload.data());
  return shown;
}

PKTBROKER_NFQ_EXPORT int nfq_get_indev_name(nlif_handle* /*h*/, nfq_data* /*nfad*/, char* /*n*/) {
  return unsupported("nfq_get_indev_name (use if_indextoname on nfq_get_indev)");
}
PKTBROKER_NFQ_EXPORT int nfq_get_physindev_name(nlif_handle* /*h*/, nfq_data* /*nfad*/,
                                                char* /*n*/) {
  return unsupported("nfq_get_physindev_name");
}
PKTBROKER_NFQ_EXPORT int nfq_get_outdev_name(nlif_handle* /*h*/, nfq_data* /*nfad*/, char* /*n*/) {
  return unsupported("nfq_get_outdev_name (use if_indextoname on nfq_get_outdev)");
}
PKTBROKER_NFQ_EXPORT int nfq_get_physoutdev_name(nlif_handle* /*h*/, nfq_data* /*nfad*/,
                                                 char* /*n*/) {
  return unsupported("nfq_get_physoutdev_name");
}
PKTBROKER_NFQ_EXPORT int nfq_snprintf_xml(char* /*buf*/, size_t /*len*/, nfq_data* /*tb*/,
                                          int /*flags*/) {
  return unsupported("nfq_snprintf_xml");
}

}  // extern "C"
