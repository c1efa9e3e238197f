#include "shim_session.hpp"

#include <libnetfilter_queue/linux_nfnetlink_queue.h>
#include <linux/netfilter.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <string>
#include <utility>

namespace pktbroker::nfq {
namespace {

std::optional<proto::VerdictCode> broker_verdict(std::uint32_t nf_verdict) {
  switch (nf_verdict) {
    case NF_ACCEPT: return proto::VerdictCode::accept;
    case NF_DROP: return proto::VerdictCode::drop;
    case NF_REPEAT: return proto::VerdictCode::repeat;
    default: return std::nullopt;  // NF_STOLEN, NF_QUEUE to another queue, NF_STOP
  }
}

int refuse_verdict(std::uint32_t nf_verdict) {
  report("verdict " + std::to_string(nf_verdict) +
         " is not supported through the broker (NF_ACCEPT, NF_DROP and NF_REPEAT are); the "
         "packet keeps waiting and takes the fallback at its timeout");
  errno = EINVAL;
  return -1;
}

}  // namespace

void report(std::string_view text) {
  std::string line = "pktbroker-nfq: ";
  line.append(text);
  line += '\n';
  std::fputs(line.c_str(), stderr);
}

int errno_of(const std::error_code& error, int otherwise) {
  const bool from_socket =
      error.category() == std::generic_category() || error.category() == std::system_category();
  return from_socket ? error.value() : otherwise;
}

int QueueSettings::shown(std::size_t size) const noexcept {
  if (copy_mode != NFQNL_COPY_PACKET) return -1;  // no payload, as in the kernel
  return static_cast<int>(std::min<std::size_t>(size, copy_range));
}

std::unique_ptr<ShimSession> ShimSession::open() {
  std::string error;
  auto settings = ShimSettings::from_environment(error);
  if (!settings) {
    report(error);
    errno = EINVAL;
    return nullptr;
  }
  std::unique_ptr<ShimSession> session(new ShimSession(std::move(*settings)));
  const ShimSettings& s = session->settings_;
  // No PACKET_BATCH: the program reads the socket into its own buffer, one packet per read.
  if (const auto failure =
          session->client_.connect(s.socket_path, s.name, proto::role_verdict, 0)) {
    const std::string why = failure == ClientError::broker_error
                                ? session->client_.last_error().text
                                : failure.message();
    report("cannot reach pktbrokerd at " + s.socket_path + ": " + why +
           " (is it running? PKTBROKER_SOCKET names another socket)");
    errno = errno_of(failure, ECONNREFUSED);
    return nullptr;
  }
  return session;
}

QueueBinding* ShimSession::find(std::uint16_t number) {
  const auto found = std::find_if(queues_.begin(), queues_.end(),
                                  [number](const QueueBinding& q) { return q.number == number; });
  return found == queues_.end() ? nullptr : &*found;
}

bool QueueBinding::delivered(std::uint32_t subscription_id) const noexcept {
  return subscription == subscription_id ||
         std::find(replaced.begin(), replaced.end(), subscription_id) != replaced.end();
}

QueueBinding* ShimSession::bind(std::uint16_t number) {
  {
    const std::lock_guard lock(mutex_);
    if (find(number) != nullptr) {
      report("queue " + std::to_string(number) + " is bound already by this handle");
      errno = EBUSY;
      return nullptr;
    }
  }
  // Packets that arrive before the answer wait in the client, and reach the queue after it.
  const auto subscription = subscribe(number, 0xffff);
  wake_for_held_packets();
  if (!subscription) return nullptr;
  const std::lock_guard lock(mutex_);
  QueueBinding& queue = queues_.emplace_back();
  queue.number = number;
  queue.subscription = *subscription;
  return &queue;
}

bool ShimSession::unbind(std::uint16_t number) {
  std::uint32_t subscription = 0;
  {
    const std::lock_guard lock(mutex_);
    QueueBinding* queue = find(number);
    if (queue == nullptr) return false;
    subscription = queue->subscription;
    queues_.remove_if([queue](const QueueBinding& q) { return &q == queue; });
  }
  if (subscription != 0) {
    if (const auto error = client_.unsubscribe(subscription)) {
      report("unsubscribing queue " + std::to_string(number) + ": " + error.message());
    }
  }
  wake_for_held_packets();
  return true;
}

bool ShimSession::bound(std::uint16_t number) {
  const std::lock_guard lock(mutex_);
  return find(number) != nullptr;
}

bool ShimSession::set_mode(std::uint16_t number, std::uint8_t mode, std::uint32_t range) {
  if (mode > NFQNL_COPY_PACKET) {
    report("copy mode " + std::to_string(mode) + " does not exist");
    errno = EINVAL;
    return false;
  }
  std::uint32_t old_subscription = 0;
  std::uint32_t snaplen = 0;
  {
    const std::lock_guard lock(mutex_);
    QueueBinding* queue = find(number);
    if (queue == nullptr) {
      errno = ENODEV;
      return false;
    }
    queue->settings.copy_mode = mode;
    queue->settings.copy_range = range == 0 || range > 0xffff ? 0xffff : range;  // as the kernel
    const int shown = queue->settings.shown(0xffff);
    snaplen = shown < 0 ? 1 : static_cast<std::uint32_t>(shown);
    if (snaplen == queue->snaplen && queue->subscription != 0) return true;
    old_subscription = queue->subscription;
  }
  // The broker fixes a subscription's snaplen: a new one replaces it (packets that arrive in
  // between go to the broker's policy, as they would before a kernel queue is bound).
  if (old_subscription != 0) {
    if (const auto error = client_.unsubscribe(old_subscription)) {
      report("unsubscribing queue " + std::to_string(number) + ": " + error.message());
    }
  }
  const auto subscription = subscribe(number, snaplen);
  wake_for_held_packets();
  const std::lock_guard lock(mutex_);
  QueueBinding* queue = find(number);
  if (queue == nullptr) return false;
  if (old_subscription != 0) {
    if (queue->replaced.size() == QueueBinding::max_replaced) {
      queue->replaced.erase(queue->replaced.begin());
    }
    queue->replaced.push_back(old_subscription);
  }
  if (!subscription) {
    queue->subscription = 0;  // no packets until a mode change subscribes again
    return false;
  }
  queue->subscription = *subscription;
  queue->snaplen = snaplen;
  return true;
}

bool ShimSession::set_flags(std::uint16_t number, std::uint32_t mask, std::uint32_t flags) {
  // uid/gid come from the broker; GSO packets arrive whole and fail-open is the broker's own
  // queue setting. Conntrack and security contexts the broker does not pass on.
  constexpr std::uint32_t honoured = NFQA_CFG_F_UID_GID | NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN;
  const std::uint32_t asked = flags & mask;
  if ((asked & ~honoured) != 0) {
    report("queue flags " + std::to_string(asked & ~honoured) +
           " are not supported through the broker (NFQA_CFG_F_UID_GID, _GSO and _FAIL_OPEN are; "
           "the broker's queue owns fail-open)");
    errno = EOPNOTSUPP;
    return false;
  }
  const std::lock_guard lock(mutex_);
  QueueBinding* queue = find(number);
  if (queue == nullptr) {
    errno = ENODEV;
    return false;
  }
  queue->settings.flags = (queue->settings.flags & ~mask) | asked;
  return true;
}

std::optional<ShimSession::Delivery> ShimSession::accept(const proto::Packet& packet) {
  const std::lock_guard lock(mutex_);
  for (QueueBinding& queue : queues_) {
    if (queue.delivered(packet.subscription_id)) {
      return Delivery{queue.number, queue.ids.assign(packet.token), queue.settings};
    }
  }
  return std::nullopt;  // its queue was unbound: the broker gives it the fallback
}

void ShimSession::forget(std::uint16_t number, std::uint32_t id) {
  const std::lock_guard lock(mutex_);
  if (QueueBinding* queue = find(number)) (void)queue->ids.take(id);
}

int ShimSession::verdict(std::uint16_t number, std::uint32_t id, std::uint32_t nf_verdict,
                         std::optional<std::uint32_t> mark, std::span<const std::uint8_t> payload) {
  const auto code = broker_verdict(nf_verdict);
  if (!code) return refuse_verdict(nf_verdict);
  std::optional<std::uint64_t> token;
  {
    const std::lock_guard lock(mutex_);
    QueueBinding* queue = find(number);
    if (queue != nullptr) token = queue->ids.take(id);
    if (token && payload.empty() && gatherer_ == std::this_thread::get_id()) {
      gathered_.push_back({*token, *code, mark, {}});
      return 0;
    }
  }
  if (!token) {
    errno = ENOENT;
    return -1;
  }
  return send({{*token, *code, mark, payload}});
}

int ShimSession::verdict_through(std::uint16_t number, std::uint32_t id, std::uint32_t nf_verdict,
                                 std::optional<std::uint32_t> mark) {
  const auto code = broker_verdict(nf_verdict);
  if (!code) return refuse_verdict(nf_verdict);
  std::vector<proto::Verdict> verdicts;
  {
    const std::lock_guard lock(mutex_);
    QueueBinding* queue = find(number);
    if (queue == nullptr) {
      errno = ENOENT;
      return -1;
    }
    for (const std::uint64_t token : queue->ids.take_through(id)) {
      verdicts.push_back({token, *code, mark, {}});
    }
    if (gatherer_ == std::this_thread::get_id()) {
      gathered_.insert(gathered_.end(), verdicts.begin(), verdicts.end());
      return 0;
    }
  }
  return send(std::move(verdicts));
}

void ShimSession::begin_gathering() {
  const std::lock_guard lock(mutex_);
  gatherer_ = std::this_thread::get_id();
}

int ShimSession::end_gathering() {
  std::vector<proto::Verdict> verdicts;
  {
    const std::lock_guard lock(mutex_);
    gatherer_.reset();
    verdicts.swap(gathered_);
  }
  return send(std::move(verdicts));
}

int ShimSession::send(std::vector<proto::Verdict> verdicts) {
  std::error_code error;
  if (verdicts.size() == 1) {
    const proto::Verdict& v = verdicts.front();
    error = client_.verdict(v.token, v.verdict, v.mark, v.payload);
  } else if (!verdicts.empty()) {
    error = client_.verdicts(verdicts);
  }
  if (!error) return 0;
  errno = errno_of(error, EPIPE);
  return -1;
}

void ShimSession::report_notices() {
  for (const proto::Error& notice : client_.take_notices()) report("pktbrokerd: " + notice.text);
}

std::optional<std::uint32_t> ShimSession::subscribe(std::uint16_t number, std::uint32_t snaplen) {
  proto::Subscribe request;
  request.name = settings_.name + " queue " + std::to_string(number);
  request.selector = settings_.selector_for(number);
  request.snaplen = snaplen;
  request.timeout_ms = settings_.timeout_ms;
  request.fallback = settings_.fallback;
  std::uint32_t id = 0;
  if (const auto error = client_.subscribe(request, id)) {
    const std::string why =
        error == ClientError::broker_error ? client_.last_error().text : error.message();
    report("pktbrokerd refused queue " + std::to_string(number) + " (selector " + request.selector +
           "): " + why);
    errno = error == ClientError::broker_error ? EPERM : errno_of(error, EPIPE);
    return std::nullopt;
  }
  return id;
}

void ShimSession::wake_for_held_packets() {
  if (client_.holds_packets()) (void)client_.nudge();
}

}  // namespace pktbroker::nfq
