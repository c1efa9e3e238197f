#include "shim_session.hpp"

#include <libnetfilter_queue/linux_nfnetlink_queue.h>
#include <linux/netfilter.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <string>
#include <vector>

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

int sent(const std::error_code& error) {
  if (!error) return 0;
  errno = error.category() == std::system_category() ? error.value() : EPIPE;
  return -1;
}

}  // namespace

void report(std::string_view text) {
  std::string line = "pktbroker-nfq: ";
  line.append(text);
  line += '\n';
  std::fputs(line.c_str(), stderr);
}

std::uint32_t QueueBinding::snaplen() const noexcept {
  return copy_mode == NFQNL_COPY_PACKET ? copy_range : 1;  // one byte tells IPv4 from IPv6
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
    errno = failure.category() == std::system_category() ? failure.value() : ECONNREFUSED;
    return nullptr;
  }
  return session;
}

QueueBinding* ShimSession::bind(std::uint16_t number) {
  const std::lock_guard lock(mutex_);
  for (const QueueBinding& queue : queues_) {
    if (queue.number == number) {
      report("queue " + std::to_string(number) + " is bound already by this handle");
      errno = EBUSY;
      return nullptr;
    }
  }
  QueueBinding& queue = queues_.emplace_back();
  queue.number = number;
  if (!subscribe(queue)) {
    queues_.pop_back();
    return nullptr;
  }
  return &queue;
}

void ShimSession::unbind(QueueBinding& queue) {
  const std::lock_guard lock(mutex_);
  unsubscribe(queue);
  queues_.remove_if([&queue](const QueueBinding& q) { return &q == &queue; });
}

QueueBinding* ShimSession::find(std::uint16_t number) noexcept {
  const std::lock_guard lock(mutex_);
  for (QueueBinding& queue : queues_) {
    if (queue.number == number) return &queue;
  }
  return nullptr;
}

QueueBinding* ShimSession::owner(const proto::Packet& packet) noexcept {
  const std::lock_guard lock(mutex_);
  for (QueueBinding& queue : queues_) {
    if (queue.subscription == packet.subscription_id ||
        std::find(queue.replaced.begin(), queue.replaced.end(), packet.subscription_id) !=
            queue.replaced.end()) {
      return &queue;
    }
  }
  return nullptr;
}

bool ShimSession::set_mode(QueueBinding& queue, std::uint8_t mode, std::uint32_t range) {
  if (mode > NFQNL_COPY_PACKET) {
    report("copy mode " + std::to_string(mode) + " does not exist");
    errno = EINVAL;
    return false;
  }
  const std::lock_guard lock(mutex_);
  const std::uint32_t before = queue.snaplen();
  queue.copy_mode = mode;
  queue.copy_range = range == 0 || range > 0xffff ? 0xffff : range;  // as the kernel clamps it
  if (!queue.subscription || queue.snaplen() == before) return true;
  // The broker fixes a subscription's snaplen: a new one replaces it. Packets the old one
  // delivered stay this queue's (the session still owns them); those that arrive in between go
  // to the broker's policy, as they would to an unbound kernel queue.
  const std::uint32_t old = *queue.subscription;
  unsubscribe(queue);
  queue.replaced.push_back(old);
  return subscribe(queue);
}

bool ShimSession::set_flags(QueueBinding& queue, std::uint32_t mask, std::uint32_t flags) {
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
  queue.flags = (queue.flags & ~mask) | asked;
  return true;
}

std::uint32_t ShimSession::assign_id(QueueBinding& queue, const proto::Packet& packet) {
  const std::lock_guard lock(mutex_);
  return queue.ids.assign(packet.token);
}

int ShimSession::verdict(QueueBinding& queue, std::uint32_t id, std::uint32_t nf_verdict,
                         std::optional<std::uint32_t> mark, std::span<const std::uint8_t> payload) {
  const auto code = broker_verdict(nf_verdict);
  if (!code) return refuse_verdict(nf_verdict);
  std::optional<std::uint64_t> token;
  {
    const std::lock_guard lock(mutex_);
    token = queue.ids.take(id);
  }
  if (!token) {
    errno = ENOENT;
    return -1;
  }
  return sent(client_.verdict(*token, *code, mark, payload));
}

int ShimSession::verdict_through(QueueBinding& queue, std::uint32_t id, std::uint32_t nf_verdict,
                                 std::optional<std::uint32_t> mark) {
  const auto code = broker_verdict(nf_verdict);
  if (!code) return refuse_verdict(nf_verdict);
  std::vector<std::uint64_t> tokens;
  {
    const std::lock_guard lock(mutex_);
    tokens = queue.ids.take_through(id);
  }
  std::vector<proto::Verdict> verdicts;
  verdicts.reserve(tokens.size());
  for (const std::uint64_t token : tokens) verdicts.push_back({token, *code, mark, {}});
  return sent(client_.verdicts(verdicts));
}

void ShimSession::report_notices() {
  for (const proto::Error& notice : client_.take_notices()) report("pktbrokerd: " + notice.text);
}

bool ShimSession::subscribe(QueueBinding& queue) {
  proto::Subscribe request;
  request.name = settings_.name + " queue " + std::to_string(queue.number);
  request.selector = settings_.selector_for(queue.number);
  request.snaplen = queue.snaplen();
  request.timeout_ms = settings_.timeout_ms;
  request.fallback = settings_.fallback;
  std::uint32_t id = 0;
  if (const auto error = client_.subscribe(request, id)) {
    const std::string why =
        error == ClientError::broker_error ? client_.last_error().text : error.message();
    report("pktbrokerd refused queue " + std::to_string(queue.number) + " (selector " +
           request.selector + "): " + why);
    errno = EPERM;
    return false;
  }
  queue.subscription = id;
  return true;
}

void ShimSession::unsubscribe(QueueBinding& queue) {
  if (!queue.subscription) return;
  if (const auto error = client_.unsubscribe(*queue.subscription)) {
    report("unsubscribing queue " + std::to_string(queue.number) + ": " + error.message());
  }
  queue.subscription.reset();
}

}  // namespace pktbroker::nfq
