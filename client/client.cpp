#include "pktbroker/client.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace pktbroker {
namespace {

class ClientCategory : public std::error_category {
 public:
  [[nodiscard]] const char* name() const noexcept override { return "pktbroker.client"; }
  [[nodiscard]] std::string message(int value) const override {
    switch (static_cast<ClientError>(value)) {
      case ClientError::not_connected: return "not connected to the broker";
      case ClientError::closed: return "the broker closed the connection";
      case ClientError::broker_error: return "the broker reported an error";
      case ClientError::unexpected_reply: return "unexpected reply from the broker";
      case ClientError::timeout: return "timed out waiting for the broker";
      case ClientError::woken: return "woken by the answer to a nudge";
      case ClientError::system: return "socket error";
      case ClientError::channel_left: return "the broker removed this session from a channel";
    }
    return "unknown client error";
  }
};

std::error_code system_error() {
  return {errno, std::generic_category()};
}

}  // namespace

const std::error_category& client_category() noexcept {
  static const ClientCategory category;
  return category;
}

std::error_code make_error_code(ClientError error) noexcept {
  return {static_cast<int>(error), client_category()};
}

Client::~Client() {
  close();
}

Client::Client(Client&& other) noexcept {
  *this = std::move(other);
}

Client& Client::operator=(Client&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    found_empty_ = other.found_empty_;
    spin_ = other.spin_;
    next_request_ = other.next_request_;
    early_packets_ = std::move(other.early_packets_);
    batch_ = std::move(other.batch_);
    batch_packets_ = std::move(other.batch_packets_);
    batch_next_ = std::exchange(other.batch_next_, 0);
    last_error_ = std::move(other.last_error_);
    notices_ = std::move(other.notices_);
    dropped_notices_ = std::exchange(other.dropped_notices_, 0);
    welcome_ = std::move(other.welcome_);
    early_frames_ = std::move(other.early_frames_);
    frames_datagram_ = std::move(other.frames_datagram_);
    frames_ = std::move(other.frames_);
    frames_next_ = std::exchange(other.frames_next_, 0);
    paused_ = std::move(other.paused_);
    left_ = std::move(other.left_);
    unreported_left_ = std::exchange(other.unreported_left_, 0);
    in_channels_ = std::exchange(other.in_channels_, false);
    prompt_events_ = std::move(other.prompt_events_);
  }
  return *this;
}

void Client::close() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::error_code Client::connect(const std::string& socket_path, const std::string& name,
                                std::uint8_t roles, std::uint32_t features) {
  close();
  forget_channels();
  prompt_events_.clear();
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof address.sun_path)
    return std::make_error_code(std::errc::filename_too_long);
  std::memcpy(address.sun_path, socket_path.c_str(), socket_path.size() + 1);
  fd_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return system_error();
  if (::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    const auto error = system_error();
    close();
    return error;
  }
  return request(
      proto::Hello{name, roles, proto::protocol_version, proto::protocol_version, features},
      welcome_);
}

std::error_code Client::send(const proto::Message& message, std::uint32_t request_id) {
  if (fd_ < 0) return ClientError::not_connected;
  std::vector<std::uint8_t> datagram;
  if (const auto error = proto::encode(message, request_id, datagram)) return error;
  // A socket the caller made non-blocking waits for room too: a message is never half-sent.
  // A channel member's sends never block in the kernel: waiting for room reads as well.
  const int flags = MSG_NOSIGNAL | (in_channels_ ? MSG_DONTWAIT : 0);
  while (::send(fd_, datagram.data(), datagram.size(), flags) < 0) {
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return system_error();
    if (const auto error = wait_for_room()) return error;
  }
  return {};
}

std::error_code Client::wait_for_room() {
  pollfd descriptor{fd_, static_cast<short>(POLLOUT | (in_channels_ ? POLLIN : 0)), 0};
  if (::poll(&descriptor, 1, -1) < 0) return errno == EINTR ? std::error_code() : system_error();
  if ((descriptor.revents & POLLIN) != 0) return absorb_waiting();
  return {};
}

// Into a scratch buffer sized once (zero-filling 256 KiB per packet would cost more than the
// packet), then copied out at its real size. Reads first, unless the last read found the socket
// empty: then it polls first (one system call less per wake-up). A busy-poll spin comes out of
// the wait's timeout, and the sleep after it waits only for what is left (ppoll: to the
// nanosecond, where poll's milliseconds would round up).
std::error_code Client::receive(std::vector<std::uint8_t>& buffer, int timeout_ms) {
  using std::chrono::steady_clock;
  if (fd_ < 0) return ClientError::not_connected;
  if (scratch_.empty()) scratch_.resize(proto::max_datagram);
  const auto deadline = timeout_ms > 0 ? steady_clock::now() + std::chrono::milliseconds(timeout_ms)
                                       : steady_clock::time_point{};  // used only with a timeout
  for (;;) {
    std::error_code error;
    if (!found_empty_ || timeout_ms == 0) {
      if (read_waiting(buffer, error) || error) return error;
      if (timeout_ms == 0) return ClientError::timeout;
    }
    if (spin_.count() > 0) {
      auto spin_end = steady_clock::now() + spin_;
      if (timeout_ms > 0) spin_end = std::min(spin_end, deadline);
      do {
        if (read_waiting(buffer, error) || error) return error;
      } while (steady_clock::now() < spin_end);
    }
    timespec left{};
    if (timeout_ms > 0) {
      const auto rest = deadline - steady_clock::now();
      if (rest <= steady_clock::duration::zero()) return ClientError::timeout;
      const auto seconds = std::chrono::floor<std::chrono::seconds>(rest);
      left.tv_sec = seconds.count();
      left.tv_nsec = std::chrono::nanoseconds(rest - seconds).count();
    }
    pollfd descriptor{fd_, POLLIN, 0};
    const int ready = ::ppoll(&descriptor, 1, timeout_ms > 0 ? &left : nullptr, nullptr);
    if (ready < 0) return system_error();
    if (ready == 0) return ClientError::timeout;
    found_empty_ = false;
  }
}

bool Client::read_waiting(std::vector<std::uint8_t>& buffer, std::error_code& error) {
  const ssize_t size = ::recv(fd_, scratch_.data(), scratch_.size(), MSG_DONTWAIT);
  if (size > 0) {
    buffer.assign(scratch_.begin(), scratch_.begin() + size);
    found_empty_ = false;
    return true;
  }
  if (size == 0) {
    error = ClientError::closed;
  } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    error = system_error();
  } else {
    found_empty_ = true;
  }
  return false;
}

template <typename Reply>
std::error_code Client::request(const proto::Message& message, Reply& reply) {
  const std::uint32_t id = next_request_++;
  if (const auto error = send(message, id)) return error;
  for (;;) {
    std::vector<std::uint8_t> datagram;
    if (const auto error = receive(datagram, -1)) return error;
    proto::Decoded decoded;
    if (const auto error = proto::decode(datagram, decoded)) return error;
    if (decoded.header.request_id != id) {
      keep_unsolicited(datagram, decoded);  // not this request's answer
      continue;
    }
    if (const auto* error = std::get_if<proto::Error>(&decoded.message)) {
      last_error_ = *error;
      return ClientError::broker_error;
    }
    if (auto* typed = std::get_if<Reply>(&decoded.message)) {
      reply = std::move(*typed);
      return {};
    }
    return ClientError::unexpected_reply;
  }
}

std::error_code Client::subscribe(const proto::Subscribe& request_message,
                                  std::uint32_t& subscription_id) {
  proto::Subscribed reply;
  const auto error = request(request_message, reply);
  if (!error) subscription_id = reply.subscription_id;
  return error;
}

std::error_code Client::unsubscribe(std::uint32_t subscription_id) {
  proto::Subscribed reply;
  return request(proto::Unsubscribe{subscription_id}, reply);
}

std::error_code Client::next_packet(ReceivedPacket& packet, int timeout_ms) {
  for (;;) {
    if (batch_next_ < batch_packets_.size()) {
      packet.datagram_ = batch_;
      packet.packet_ = batch_packets_[batch_next_++];  // its payload points into *batch_
      return {};
    }
    auto datagram = std::make_shared<std::vector<std::uint8_t>>();
    if (!early_packets_.empty()) {
      *datagram = std::move(early_packets_.front());
      early_packets_.pop_front();
    } else if (const auto error = receive(*datagram, timeout_ms)) {
      return error;
    }
    proto::Decoded decoded;
    if (const auto error = proto::decode(*datagram, decoded)) return error;
    if (auto* single = std::get_if<proto::Packet>(&decoded.message)) {
      packet.datagram_ = std::move(datagram);
      packet.packet_ = *single;
      return {};
    }
    if (auto* batch = std::get_if<proto::PacketBatch>(&decoded.message)) {
      batch_ = std::move(datagram);
      batch_packets_ = std::move(batch->packets);
      batch_next_ = 0;
      continue;
    }
    if (std::holds_alternative<proto::Pong>(decoded.message)) return ClientError::woken;
    keep_unsolicited(*datagram, decoded);
  }
}

bool Client::keep_unsolicited(std::vector<std::uint8_t>& datagram, const proto::Decoded& decoded) {
  const proto::Message& message = decoded.message;
  if (std::holds_alternative<proto::Packet>(message) ||
      std::holds_alternative<proto::PacketBatch>(message)) {
    early_packets_.push_back(std::move(datagram));
  } else if (std::holds_alternative<proto::ChannelFrames>(message)) {
    early_frames_.push_back(std::make_shared<const std::vector<std::uint8_t>>(std::move(datagram)));
  } else if (const auto* flow = std::get_if<proto::ChannelFlow>(&message)) {
    std::erase(paused_, flow->channel_id);
    if (flow->paused) paused_.push_back(flow->channel_id);
  } else if (const auto* left = std::get_if<proto::ChannelLeft>(&message)) {
    std::erase(paused_, left->channel_id);
    left_.push_back(*left);
    ++unreported_left_;
  } else if (std::holds_alternative<proto::Prompt>(message) ||
             std::holds_alternative<proto::PromptClosed>(message)) {
    if (prompt_events_.size() >= max_prompt_events) prompt_events_.pop_front();
    if (const auto* prompt = std::get_if<proto::Prompt>(&message)) {
      prompt_events_.emplace_back(*prompt);
    } else {
      prompt_events_.emplace_back(std::get<proto::PromptClosed>(message));
    }
  } else if (const auto* error = std::get_if<proto::Error>(&message)) {
    if (decoded.header.request_id == 0) keep_notice(*error);
  } else {
    return false;
  }
  return true;
}

std::error_code Client::absorb_waiting() {
  for (;;) {
    std::vector<std::uint8_t> datagram;
    if (const auto error = receive(datagram, 0)) {
      return error == ClientError::timeout ? std::error_code() : error;
    }
    proto::Decoded decoded;
    if (const auto error = proto::decode(datagram, decoded)) return error;
    keep_unsolicited(datagram, decoded);
  }
}

bool Client::paused(std::uint32_t channel_id) const noexcept {
  return std::find(paused_.begin(), paused_.end(), channel_id) != paused_.end();
}

std::vector<proto::ChannelLeft> Client::take_left() {
  unreported_left_ = 0;
  return std::exchange(left_, {});
}

void Client::forget_channels(std::optional<std::uint32_t> only) {
  if (!only) {
    early_frames_.clear();
    frames_datagram_.reset();
    frames_ = {};
    frames_next_ = 0;
    paused_.clear();
    left_.clear();
    unreported_left_ = 0;
    in_channels_ = false;
    return;
  }
  std::erase(paused_, *only);
  // The unreported removals are the newest ones, at the end.
  const std::size_t first_unreported = left_.size() - unreported_left_;
  for (std::size_t i = first_unreported; i < left_.size(); ++i) {
    if (left_[i].channel_id == *only) --unreported_left_;
  }
  std::erase_if(left_, [&](const proto::ChannelLeft& left) { return left.channel_id == *only; });
}

bool Client::removed_from(std::uint32_t channel_id) const noexcept {
  return std::any_of(left_.begin(), left_.end(),
                     [&](const proto::ChannelLeft& left) { return left.channel_id == channel_id; });
}

std::error_code Client::create_channel(const proto::ChannelCreate& request_message) {
  proto::Ok reply;
  return request(request_message, reply);
}

std::error_code Client::join_channel(std::string_view channel, std::uint8_t rights,
                                     proto::ChannelJoined& joined) {
  if (const auto error = request(proto::ChannelJoin{std::string(channel), rights}, joined)) {
    return error;
  }
  forget_channels(joined.channel_id);  // an earlier membership's pause or removal is over
  in_channels_ = true;
  return {};
}

std::error_code Client::leave_channel(std::uint32_t channel_id) {
  proto::ChannelLeft reply;
  if (const auto error = request(proto::ChannelLeave{channel_id}, reply)) return error;
  std::erase(paused_, channel_id);
  return {};
}

std::error_code Client::channels(proto::ChannelsReply& reply) {
  return request(proto::ChannelsRequest{}, reply);
}

std::error_code Client::kick(std::string_view channel, std::uint32_t member_id) {
  proto::Ok reply;
  return request(proto::ChannelKick{std::string(channel), member_id}, reply);
}

std::error_code Client::send_frames(std::uint32_t channel_id,
                                    std::span<const std::span<const std::uint8_t>> frames) {
  if (fd_ < 0) return ClientError::not_connected;
  constexpr std::size_t max_batch = 64;
  std::array<std::vector<std::uint8_t>, max_batch> datagrams;
  std::array<mmsghdr, max_batch> messages{};
  std::array<iovec, max_batch> parts{};
  for (std::size_t at = 0; at < frames.size();) {
    if (const auto error = absorb_waiting()) return error;
    while (paused(channel_id)) {  // backpressure: wait for the broker to let us go on
      std::vector<std::uint8_t> datagram;
      if (const auto error = receive(datagram, -1)) return error;
      proto::Decoded decoded;
      if (const auto error = proto::decode(datagram, decoded)) return error;
      keep_unsolicited(datagram, decoded);
    }
    if (removed_from(channel_id)) return ClientError::channel_left;
    const std::size_t count = std::min(max_batch, frames.size() - at);
    for (std::size_t i = 0; i < count; ++i) {
      if (const auto error =
              proto::encode(proto::ChannelSend{channel_id, frames[at + i]}, 0, datagrams[i])) {
        return error;
      }
      parts[i] = {datagrams[i].data(), datagrams[i].size()};
      messages[i] = {};
      messages[i].msg_hdr.msg_iov = &parts[i];
      messages[i].msg_hdr.msg_iovlen = 1;
    }
    // Never blocking in the kernel: a pause can come while the socket is full, and then only
    // reading (wait_for_room) lets the broker go on.
    std::size_t sent = 0;
    while (sent < count) {
      const int n = ::sendmmsg(fd_, messages.data() + sent, static_cast<unsigned>(count - sent),
                               MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        sent += static_cast<std::size_t>(n);
        continue;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return system_error();
      pollfd descriptor{fd_, POLLIN | POLLOUT, 0};
      if (::poll(&descriptor, 1, -1) < 0 && errno != EINTR) return system_error();
      if ((descriptor.revents & POLLIN) != 0) {
        if (const auto error = absorb_waiting()) return error;
      }
    }
    at += count;
  }
  return {};
}

std::error_code Client::next_frame(ReceivedFrame& frame, int timeout_ms) {
  for (;;) {
    if (frames_next_ < frames_.frames.size()) {
      const proto::ChannelFrame& next = frames_.frames[frames_next_++];
      frame.datagram_ = frames_datagram_;
      frame.channel_id_ = frames_.channel_id;
      frame.from_ = next.from_member;
      frame.data_ = next.frame;  // points into *frames_datagram_
      return {};
    }
    std::shared_ptr<const std::vector<std::uint8_t>> datagram;
    if (!early_frames_.empty()) {
      datagram = std::move(early_frames_.front());
      early_frames_.pop_front();
    } else {
      if (unreported_left_ > 0) {
        --unreported_left_;
        return ClientError::channel_left;
      }
      auto received = std::make_shared<std::vector<std::uint8_t>>();
      if (const auto error = receive(*received, timeout_ms)) return error;
      proto::Decoded decoded;
      if (const auto error = proto::decode(*received, decoded)) return error;
      if (std::holds_alternative<proto::Pong>(decoded.message)) return ClientError::woken;
      if (!std::holds_alternative<proto::ChannelFrames>(decoded.message)) {
        keep_unsolicited(*received, decoded);
        continue;
      }
      datagram = std::move(received);
    }
    proto::Decoded decoded;
    if (const auto error = proto::decode(*datagram, decoded)) return error;
    frames_ = std::move(std::get<proto::ChannelFrames>(decoded.message));
    frames_datagram_ = std::move(datagram);
    frames_next_ = 0;
  }
}

std::error_code Client::next_frames(std::vector<ReceivedFrame>& frames, std::size_t max,
                                    int timeout_ms) {
  frames.resize(std::max<std::size_t>(max, 1));
  std::size_t count = 0;
  std::error_code error = next_frame(frames[count], timeout_ms);
  while (!error && ++count < frames.size()) error = next_frame(frames[count], 0);
  frames.resize(count);
  return count > 0 ? std::error_code() : error;
}

void Client::keep_notice(const proto::Error& error) {
  last_error_ = error;
  constexpr std::size_t max_notices = 64;
  if (notices_.size() == max_notices) {
    notices_.pop_front();
    ++dropped_notices_;
  }
  notices_.push_back(error);
}

std::vector<proto::Error> Client::take_notices() {
  std::vector<proto::Error> taken(std::make_move_iterator(notices_.begin()),
                                  std::make_move_iterator(notices_.end()));
  notices_.clear();
  return taken;
}

std::error_code Client::next_packets(std::vector<ReceivedPacket>& packets, std::size_t max,
                                     int timeout_ms) {
  packets.resize(std::max<std::size_t>(max, 1));
  std::size_t count = 0;
  std::error_code error = next_packet(packets[count], timeout_ms);
  while (!error && ++count < packets.size()) {
    error = next_packet(packets[count], 0);  // only what is already there
  }
  packets.resize(count);
  return count > 0 ? std::error_code() : error;
}

std::error_code Client::verdicts(std::span<const proto::Verdict> verdicts) {
  for (std::size_t at = 0; at < verdicts.size(); at += max_verdicts_per_batch) {
    const auto part = verdicts.subspan(at, std::min(max_verdicts_per_batch, verdicts.size() - at));
    if (const auto error = send(proto::VerdictBatch{{part.begin(), part.end()}}, 0)) return error;
  }
  return {};
}

std::error_code Client::verdict(std::uint64_t token, proto::VerdictCode verdict,
                                std::optional<std::uint32_t> mark,
                                std::span<const std::uint8_t> replacement) {
  return send(proto::Verdict{token, verdict, mark, replacement}, 0);
}

std::error_code Client::stats(proto::StatsReply& reply) {
  return request(proto::StatsRequest{}, reply);
}

std::error_code Client::rules(proto::RulesReply& reply) {
  return request(proto::RulesRequest{}, reply);
}

std::error_code Client::sessions(proto::SessionsReply& reply) {
  return request(proto::SessionsRequest{}, reply);
}

std::error_code Client::reload(proto::ReloadReply& reply) {
  return request(proto::ReloadRequest{}, reply);
}

std::error_code Client::plugin_command(std::string_view plugin,
                                       const std::vector<std::string>& args,
                                       proto::PluginCommandReply& reply) {
  return request(proto::PluginCommand{std::string(plugin), args}, reply);
}

std::error_code Client::watch_prompts(proto::PromptScope scope) {
  proto::Ok ok;
  return request(proto::PromptWatch{scope}, ok);
}

std::error_code Client::next_prompt_event(PromptEvent& event, int timeout_ms) {
  for (;;) {
    if (!prompt_events_.empty()) {
      event = std::move(prompt_events_.front());
      prompt_events_.pop_front();
      return {};
    }
    std::vector<std::uint8_t> datagram;
    if (const auto error = receive(datagram, timeout_ms)) return error;
    proto::Decoded decoded;
    if (const auto error = proto::decode(datagram, decoded)) return error;
    if (std::holds_alternative<proto::Pong>(decoded.message)) return ClientError::woken;
    keep_unsolicited(datagram, decoded);
  }
}

std::error_code Client::answer(const proto::PromptAnswer& answer, std::string& result) {
  proto::Ok ok;
  const auto error = request(answer, ok);
  if (!error) result = std::move(ok.text);
  return error;
}

std::error_code Client::pending(proto::PendingReply& reply) {
  return request(proto::PendingRequest{}, reply);
}

std::error_code Client::apps(proto::AppsReply& reply) {
  return request(proto::AppsRequest{}, reply);
}

std::error_code Client::add_rule(const proto::RuleAdd& rule, std::string& name) {
  proto::Ok ok;
  const auto error = request(rule, ok);
  if (!error) name = std::move(ok.text);
  return error;
}

std::error_code Client::delete_rule(std::string_view name) {
  proto::Ok ok;
  return request(proto::RuleDelete{std::string(name)}, ok);
}

std::error_code Client::nudge() {
  return send(proto::Ping{}, 0);
}

std::error_code Client::ping() {
  proto::Pong pong;
  return request(proto::Ping{}, pong);
}

}  // namespace pktbroker
