#include "broker/session/session.hpp"

#include "broker/session/session_manager.hpp"

#include "broker/logging.hpp"
#include "datagram_batch.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <utility>

namespace pktbroker {

namespace {

// Datagrams per receive (one recvmmsg), and receives per wake-up before other sessions get a
// turn. A receive that fills fewer slots found the socket empty: no further read to learn that.
constexpr std::size_t datagrams_per_receive = 8;
constexpr int receives_per_wakeup = 8;

// The receive buffers of the thread running a session's read handler: an idle connection holds
// none, and the datagrams are handled before the handler returns. A slot one byte longer than
// the longest datagram reads an oversized one whole, for decode() to refuse; a longer one is
// cut short (MSG_TRUNC).
DatagramBatch& read_batch() {
  thread_local DatagramBatch batch(datagrams_per_receive, proto::max_datagram + 1);
  return batch;
}

// A client name goes into logs and replies: printable, without line breaks or escapes.
bool printable_name(std::string_view name) noexcept {
  return name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
           const auto byte = static_cast<unsigned char>(c);
           return byte >= 0x20 && byte != 0x7f;
         });
}

}  // namespace

Session::Session(StrandSocket socket, SessionId id, const ucred& peer, Limits limits,
                 SessionManager& manager, std::string refusal)
    : socket_(std::move(socket)),
      id_(id),
      peer_(peer),
      limits_(std::move(limits)),
      manager_(manager),
      refusal_(std::move(refusal)),
      timer_(socket_.get_executor()) {}

void Session::start() {
  boost::asio::post(socket_.get_executor(), [self = shared_from_this()] {
    self->timer_.expires_after(self->limits_.hello_timeout);
    self->timer_.async_wait([self](const boost::system::error_code& error) {
      if (error || self->welcomed_ || self->closing_) return;
      self->fail(proto::ErrorCode::malformed,
                 "no HELLO within " + std::to_string(self->limits_.hello_timeout.count()) + " ms");
    });
    self->do_read();
  });
}

void Session::do_read() {
  socket_.async_wait(StrandSocket::wait_read,
                     [self = shared_from_this()](const boost::system::error_code& error) {
                       self->on_readable(error);
                     });
}

void Session::on_readable(const boost::system::error_code& error) {
  if (closed_) return;
  if (error) {
    if (error != boost::asio::error::operation_aborted) {
      log_client_event(spdlog::level::info, "session {} ({}): waiting for data failed: {}", id_,
                       name(), error.message());
    }
    close();
    return;
  }
  if (reading_held()) {
    // Held, then checked again: frames_handled may have run in between and seen no hold.
    read_held_ = true;
    resume_reading();
    return;
  }
  DatagramBatch& batch = read_batch();
  for (int round = 0; round < receives_per_wakeup; ++round) {
    const int received = batch.receive(socket_.native_handle());
    const int read_error = received < 0 ? errno : 0;
    // ECONNRESET: the client closed with messages unread; what it sent is still to be read.
    if (read_error == EINTR || read_error == ECONNRESET) continue;
    if (received < 0) {
      flush_gathered();
      log_client_event(spdlog::level::info, "session {} ({}): read failed: {}", id_, name(),
                       strerror(read_error));
      close();
      return;
    }
    for (int i = 0; i < received && !closing_ && !closed_; ++i) {
      bool truncated = false;
      const std::span<const std::uint8_t> datagram = batch.datagram(i, truncated);
      if (datagram.empty()) {  // the peer closed its end
        flush_gathered();
        close();
        return;
      }
      if (truncated) {
        flush_gathered();
        manager_.count_malformed();
        fail(proto::ErrorCode::malformed, "malformed message: datagram longer than " +
                                              std::to_string(proto::max_datagram) + " bytes");
        return;
      }
      on_read(datagram);
    }
    if (closing_ || closed_) break;
    if (received < static_cast<int>(datagrams_per_receive)) {  // nothing more is waiting
      flush_gathered();
      return do_read();
    }
  }
  flush_gathered();
  if (closing_ || closed_) return;
  // More may be waiting: let other work run first.
  boost::asio::post(socket_.get_executor(), [self = shared_from_this()] {
    self->on_readable(boost::system::error_code());
  });
}

void Session::on_read(std::span<const std::uint8_t> datagram) {
  proto::Decoded& decoded = decoded_;
  if (const std::error_code bad = proto::decode(datagram, decoded)) {
    flush_gathered();  // the good verdicts before the bad datagram count, as they did unbatched
    manager_.count_malformed();
    fail(proto::ErrorCode::malformed, "malformed message: " + bad.message());
    return;
  }
  handle(decoded);
  // A batch far larger than libpktbroker sends (256) does not keep its room.
  const auto* batch = std::get_if<proto::VerdictBatch>(&decoded.message);
  if (batch != nullptr && batch->verdicts.capacity() > max_gathered_verdicts) decoded = {};
}

void Session::handle(const proto::Decoded& decoded) {
  const std::uint32_t request = decoded.header.request_id;
  if (!welcomed_) {
    if (const auto* hello = std::get_if<proto::Hello>(&decoded.message)) {
      handle_hello(*hello, request);
    } else {
      fail(proto::ErrorCode::malformed, "the first message must be HELLO");
    }
    return;
  }
  const bool is_verdict = std::holds_alternative<proto::Verdict>(decoded.message) ||
                          std::holds_alternative<proto::VerdictBatch>(decoded.message);
  const bool is_frame = std::holds_alternative<proto::ChannelSend>(decoded.message);
  if (writes_stopped_ && !is_verdict && !is_frame) return;  // nobody reads the answer
  if (!is_verdict && !is_frame) flush_gathered();  // requests see what was sent before them
  ChannelHub& hub = *manager_.channels();
  std::visit(
      [&](const auto& message) {
        using T = std::decay_t<decltype(message)>;
        if constexpr (std::is_same_v<T, proto::Verdict>) {
          handle_verdicts(std::span(&message, 1));
        } else if constexpr (std::is_same_v<T, proto::VerdictBatch>) {
          handle_verdicts(message.verdicts);
        } else if constexpr (std::is_same_v<T, proto::Subscribe>) {
          const auto needed =
              message.mode == proto::SubscriptionMode::verdict
                  ? static_cast<std::uint8_t>(proto::role_verdict)
                  : static_cast<std::uint8_t>(proto::role_observe | proto::role_verdict);
          if ((roles() & needed) == 0) {
            send(proto::Error{proto::ErrorCode::not_permitted,
                              message.mode == proto::SubscriptionMode::verdict
                                  ? "a verdict subscription needs the verdict role"
                                  : "an observe subscription needs the observe role"},
                 request);
            return;
          }
          manager_.subscribe(shared_from_this(), message, request);
        } else if constexpr (std::is_same_v<T, proto::Unsubscribe>) {
          manager_.unsubscribe(shared_from_this(), message.subscription_id, request);
        } else if constexpr (std::is_same_v<T, proto::StatsRequest>) {
          if (require(proto::role_manage, request)) manager_.stats(shared_from_this(), request);
        } else if constexpr (std::is_same_v<T, proto::RulesRequest>) {
          if (require(proto::role_manage, request)) manager_.rules(shared_from_this(), request);
        } else if constexpr (std::is_same_v<T, proto::SessionsRequest>) {
          if (require(proto::role_manage, request)) manager_.sessions(shared_from_this(), request);
        } else if constexpr (std::is_same_v<T, proto::ReloadRequest>) {
          if (require(proto::role_manage, request)) manager_.reload(shared_from_this(), request);
        } else if constexpr (std::is_same_v<T, proto::PluginCommand>) {
          if (require(proto::role_manage, request)) {
            manager_.plugin_command(shared_from_this(), message, request);
          }
        } else if constexpr (std::is_same_v<T, proto::PromptWatch>) {
          if (require(proto::role_prompt, request)) {
            manager_.prompts()->watch(shared_from_this(), message.scope, request);
          }
        } else if constexpr (std::is_same_v<T, proto::PromptAnswer>) {
          if (require(proto::role_prompt, request)) {
            manager_.prompts()->answer(shared_from_this(), message, request);
          }
        } else if constexpr (std::is_same_v<T, proto::PendingRequest>) {
          if (require(proto::role_prompt | proto::role_manage, request)) {
            manager_.prompts()->pending(shared_from_this(), request);
          }
        } else if constexpr (std::is_same_v<T, proto::RuleAdd>) {
          if (require(proto::role_prompt | proto::role_manage, request)) {
            manager_.prompts()->add_rule(shared_from_this(), message, request);
          }
        } else if constexpr (std::is_same_v<T, proto::RuleDelete>) {
          if (require(proto::role_prompt | proto::role_manage, request)) {
            manager_.prompts()->delete_rule(shared_from_this(), message, request);
          }
        } else if constexpr (std::is_same_v<T, proto::AppsRequest>) {
          if (require(proto::role_prompt | proto::role_manage, request)) {
            manager_.apps(shared_from_this(), request);
          }
        } else if constexpr (std::is_same_v<T, proto::ChannelSend>) {
          handle_channel_send(message);
        } else if constexpr (std::is_same_v<T, proto::ChannelJoin>) {
          if ((roles() & proto::role_channel) == 0) {
            send(proto::Error{proto::ErrorCode::not_permitted,
                              "joining a channel needs the channel role (ask for it in HELLO)"},
                 request);
          } else {
            hub.join(shared_from_this(), channel_peer(), message, request);
          }
        } else if constexpr (std::is_same_v<T, proto::ChannelLeave>) {
          hub.leave(shared_from_this(), id_, message.channel_id, request);
        } else if constexpr (std::is_same_v<T, proto::ChannelCreate>) {
          hub.create(shared_from_this(), channel_peer(), message, request);
        } else if constexpr (std::is_same_v<T, proto::ChannelsRequest>) {
          hub.list(shared_from_this(), channel_peer(), request);
        } else if constexpr (std::is_same_v<T, proto::ChannelKick>) {
          hub.kick(shared_from_this(), channel_peer(), message, request);
        } else if constexpr (std::is_same_v<T, proto::Ping>) {
          send(proto::Pong{}, request);
        } else if constexpr (std::is_same_v<T, proto::Pong>) {
          // an answer to nothing we asked: ignored
        } else {
          fail(proto::ErrorCode::malformed, "a client may not send this message type");
        }
      },
      decoded.message);
}

void Session::handle_hello(const proto::Hello& hello, std::uint32_t request_id) {
  if (hello.min_version > proto::protocol_version || hello.max_version < proto::protocol_version) {
    fail(proto::ErrorCode::version,
         "this broker speaks protocol version " + std::to_string(proto::protocol_version),
         request_id);
    return;
  }
  // Refusals wait for HELLO: closing with the client's message unread would reset the
  // connection and the client would never see why.
  if (!refusal_.empty()) {
    fail(proto::ErrorCode::not_permitted, refusal_, request_id);
    return;
  }
  if (!printable_name(hello.client_name)) {
    fail(proto::ErrorCode::malformed,
         "a client name must be at most 64 printable characters (no control characters)",
         request_id);
    return;
  }
  const std::uint8_t roles = hello.roles & limits_.grantable;
  if (roles == 0) {
    fail(proto::ErrorCode::not_permitted,
         "none of the requested roles is granted to uid " + std::to_string(peer_.uid), request_id);
    return;
  }
  {
    const std::lock_guard lock(name_mutex_);
    name_ = hello.client_name.empty() ? "pid " + std::to_string(peer_.pid) : hello.client_name;
  }
  roles_ = roles;
  features_ = hello.features & proto::supported_features;
  welcomed_ = true;
  timer_.cancel();
  log_client_event(spdlog::level::info, "session {} ({}): pid {} uid {} gid {} roles {:#x}", id_,
                   name(), peer_.pid, peer_.uid, peer_.gid, roles);
  manager_.log_session_event("open", id_, name(), peer_);
  send(proto::Welcome{proto::protocol_version, id_, roles, PKTBROKER_VERSION_STRING,
                      features_.load()},
       request_id);
}

std::string Session::name() const {
  const std::lock_guard lock(name_mutex_);
  return name_;
}

bool Session::claim_outstanding() noexcept {
  if (outstanding_.fetch_add(1, std::memory_order_relaxed) >= limits_.max_outstanding) {
    outstanding_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  if (limits_.uid_outstanding && limits_.uid_outstanding->fetch_add(1, std::memory_order_relaxed) >=
                                     limits_.max_uid_outstanding) {
    limits_.uid_outstanding->fetch_sub(1, std::memory_order_relaxed);
    outstanding_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void Session::release_outstanding() noexcept {
  outstanding_.fetch_sub(1, std::memory_order_relaxed);
  if (limits_.uid_outstanding) limits_.uid_outstanding->fetch_sub(1, std::memory_order_relaxed);
}

void Session::handle_verdicts(std::span<const proto::Verdict> verdicts) {
  if ((roles() & proto::role_verdict) == 0) {
    report_error(proto::ErrorCode::not_permitted, "verdicts need the verdict role");
    return;
  }
  verdicts_.fetch_add(verdicts.size(), std::memory_order_relaxed);
  for (const proto::Verdict& verdict : verdicts) {
    if (gathered_verdicts_.size() == max_gathered_verdicts) flush_verdicts();
    gathered_verdicts_.push_back({verdict.token,
                                  verdict.verdict,
                                  verdict.mark,
                                  {verdict.payload.begin(), verdict.payload.end()}});
  }
}

void Session::flush_verdicts() {
  if (gathered_verdicts_.empty()) return;
  manager_.verdicts(shared_from_this(), gathered_verdicts_);
  gathered_verdicts_.clear();  // keeps its capacity (at most max_gathered_verdicts)
}

void Session::handle_channel_send(const proto::ChannelSend& frame) {
  auto run = std::find_if(gathered_frames_.begin(), gathered_frames_.end(),
                          [&](const FrameRun& r) { return r.channel_id == frame.channel_id; });
  if (run == gathered_frames_.end()) {
    gathered_frames_.push_back({frame.channel_id, {}, {}});
    run = gathered_frames_.end() - 1;
  }
  run->bytes.insert(run->bytes.end(), frame.frame.begin(), frame.frame.end());
  run->ends.push_back(static_cast<std::uint32_t>(run->bytes.size()));
}

void Session::flush_frames() {
  for (FrameRun& run : gathered_frames_) {
    frames_at_hub_ += run.ends.size();
    manager_.channels()->send(shared_from_this(), id_, std::move(run));
  }
  gathered_frames_.clear();
}

void Session::frames_handled(std::size_t frames) noexcept {
  frames_at_hub_ -= frames;
  if (!read_held_.load()) return;
  try {
    boost::asio::post(socket_.get_executor(),
                      [self = shared_from_this()] { self->resume_reading(); });
  } catch (...) {  // out of memory: the next frames_handled or flow change resumes it
  }
}

void Session::resume_reading() {
  if (!read_held_ || reading_held() || closed_) return;
  read_held_ = false;
  do_read();
}

void Session::channel_message(const proto::Message& message, std::uint32_t request_id) {
  // A pause holds this session's reading until its channel lets it go on or it leaves.
  const auto* flow = std::get_if<proto::ChannelFlow>(&message);
  const auto* left = std::get_if<proto::ChannelLeft>(&message);
  if (flow != nullptr || left != nullptr) {
    const std::uint32_t channel = flow != nullptr ? flow->channel_id : left->channel_id;
    const bool paused = flow != nullptr && flow->paused;
    boost::asio::post(socket_.get_executor(), [self = shared_from_this(), channel, paused] {
      std::erase(self->paused_channels_, channel);
      if (paused) self->paused_channels_.push_back(channel);
      self->resume_reading();
    });
  }
  send(message, request_id);
}

ChannelPeer Session::channel_peer() const {
  return {id_, name(), peer_, limits_.groups, (roles() & proto::role_manage) != 0};
}

void Session::channel_frames(std::shared_ptr<const std::vector<std::uint8_t>> datagram,
                             std::size_t frames, std::shared_ptr<ChannelBacklog> backlog) {
  try {
    boost::asio::dispatch(
        socket_.get_executor(),
        [self = shared_from_this(), datagram = std::move(datagram), frames, backlog]() mutable {
          if (self->closed_ || self->refusing_packets_) {
            backlog->release(frames);
            return;
          }
          self->queue_outgoing({std::move(datagram), 0, std::move(backlog), frames});
          if (!self->waiting_for_room_) self->do_write();
        });
  } catch (...) {  // out of memory: the member misses these frames
    backlog->release(frames);
  }
}

bool Session::require(std::uint8_t role, std::uint32_t request_id) {
  if ((roles() & role) != 0) return true;
  send(proto::Error{proto::ErrorCode::not_permitted,
                    role == proto::role_manage ? "this request needs the manage role"
                    : role == proto::role_prompt
                        ? "this request needs the prompt role"
                        : "this request needs the prompt or the manage role"},
       request_id);
  return false;
}

bool Session::reserve() noexcept {
  if (closed_.load(std::memory_order_relaxed) ||
      refusing_packets_.load(std::memory_order_relaxed)) {
    return false;
  }
  if (queued_.fetch_add(1, std::memory_order_relaxed) >= limits_.queue_limit) {
    queued_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  delivered_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

// Dispatched: when the session's strand is free the datagram is written at once, from the
// queue's handler, instead of after another turn of the event loop.
void Session::deliver(std::shared_ptr<const std::vector<std::uint8_t>> datagram,
                      std::size_t packets) noexcept {
  try {
    boost::asio::dispatch(socket_.get_executor(),
                          [self = shared_from_this(), datagram = std::move(datagram),
                           packets]() mutable { self->push(std::move(datagram), packets); });
  } catch (...) {  // out of memory: the packets stay tracked and take their fallback
    queued_.fetch_sub(packets, std::memory_order_relaxed);
  }
}

void Session::report_error(proto::ErrorCode code, std::string text) noexcept {
  try {
    send(proto::Error{code, std::move(text)}, 0);
  } catch (...) {  // out of memory: the client misses one error notice
  }
}

void Session::send(const proto::Message& message, std::uint32_t request_id) {
  auto datagram = std::make_shared<std::vector<std::uint8_t>>();
  if (proto::encode(message, request_id, *datagram)) {
    // A reply too large for a datagram (a huge channel list): the client still gets an answer.
    spdlog::error("session {}: a reply did not fit a datagram", id_);
    if (request_id == 0 || proto::encode(proto::Error{proto::ErrorCode::internal,
                                                      "the reply does not fit in a datagram"},
                                         request_id, *datagram)) {
      return;
    }
  }
  // Replies share the packet bound, with headroom; a client that never reads is dropped.
  if (queued_.fetch_add(1, std::memory_order_relaxed) >= 2 * limits_.queue_limit + 16) {
    queued_.fetch_sub(1, std::memory_order_relaxed);
    log_client_event(spdlog::level::warn, "session {} ({}): not reading its replies; closing it",
                     id_, name());
    close();
    return;
  }
  boost::asio::post(socket_.get_executor(),
                    [self = shared_from_this(), datagram = std::move(datagram)]() mutable {
                      self->push(std::move(datagram), 1);
                    });
}

void Session::push(std::shared_ptr<const std::vector<std::uint8_t>> datagram, std::size_t weight) {
  if (closed_) {
    queued_.fetch_sub(weight, std::memory_order_relaxed);
    return;
  }
  queue_outgoing({std::move(datagram), weight});
  if (!waiting_for_room_) do_write();
}

void Session::do_write() {
  constexpr std::size_t max_batch = 64;
  if (writes_stopped_) {
    while (!write_queue_.empty()) pop_front_outgoing();
    return;
  }
  while (!write_queue_.empty() && !closed_) {
    std::array<mmsghdr, max_batch> messages{};
    std::array<iovec, max_batch> parts{};
    const std::size_t count = std::min(write_queue_.size(), max_batch);
    for (std::size_t i = 0; i < count; ++i) {
      auto& datagram = *write_queue_[i].datagram;
      parts[i] = {const_cast<std::uint8_t*>(datagram.data()), datagram.size()};
      messages[i].msg_hdr.msg_iov = &parts[i];
      messages[i].msg_hdr.msg_iovlen = 1;
    }
    const int sent = ::sendmmsg(socket_.native_handle(), messages.data(),
                                static_cast<unsigned>(count), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent > 0) {
      written(static_cast<std::size_t>(sent));
      continue;
    }
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return wait_writable();
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && (errno == EPIPE || errno == ECONNRESET)) return stop_writing();
    close();
    return;
  }
  if (write_queue_.empty() && closing_) close();
}

// The client stopped reading or went away, perhaps with messages of its own still unread here
// (its last verdicts, frames a channel's pause held back). Nothing more is written or offered
// to it; reading goes on as usual, with its holds and bounds, to the end of what it sent, and
// the session closes there, or after a second at most (below).
void Session::stop_writing() {
  writes_stopped_ = true;
  refusing_packets_ = true;
  manager_.drop_subscriptions(id_);
  while (!write_queue_.empty()) pop_front_outgoing();
  // A second at most: a client that only shut down reading, or one whose reading is held (a
  // paused channel sender), does not keep the session.
  timer_.expires_after(std::chrono::seconds(1));
  timer_.async_wait([self = shared_from_this()](const boost::system::error_code& error) {
    if (!error) self->close();
  });
}

void Session::wait_writable() {
  waiting_for_room_ = true;
  socket_.async_wait(StrandSocket::wait_write,
                     [self = shared_from_this()](const boost::system::error_code& error) {
                       self->waiting_for_room_ = false;
                       if (error) return;  // closed
                       self->do_write();
                     });
}

void Session::written(std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) pop_front_outgoing();
}

void Session::queue_outgoing(Outgoing outgoing) {
  if (write_queue_.full())
    write_queue_.set_capacity(std::max<std::size_t>(16, 2 * write_queue_.size()));
  write_queue_.push_back(std::move(outgoing));
}

void Session::pop_front_outgoing() {
  Outgoing& front = write_queue_.front();
  queued_.fetch_sub(front.weight, std::memory_order_relaxed);
  if (front.backlog != nullptr) front.backlog->release(front.frames);
  write_queue_.pop_front();
}

// Tells the client why, then closes once that message is written.
void Session::fail(proto::ErrorCode code, const std::string& text, std::uint32_t request_id) {
  const std::string who = name();
  log_client_event(spdlog::level::warn, "session {} ({}): {}; closing it", id_,
                   who.empty() ? "before HELLO" : who, text);
  closing_ = true;
  // The client may never read the error: it takes no more packets, its subscriptions go now,
  // and the connection closes within a second whatever it does.
  refusing_packets_ = true;
  manager_.drop_subscriptions(id_);
  timer_.expires_after(std::chrono::seconds(1));
  timer_.async_wait([self = shared_from_this()](const boost::system::error_code& error) {
    if (!error) self->close();
  });
  send(proto::Error{code, text}, request_id);
}

void Session::close_with(proto::ErrorCode code, std::string text) {
  boost::asio::post(socket_.get_executor(),
                    [self = shared_from_this(), code, text = std::move(text)] {
                      if (!self->closing_ && !self->closed_) self->fail(code, text);
                    });
}

void Session::close() {
  boost::asio::post(socket_.get_executor(), [self = shared_from_this()] {
    if (self->closed_.exchange(true)) return;
    boost::system::error_code ignored;
    self->timer_.cancel();
    self->socket_.close(ignored);
    while (!self->write_queue_.empty()) self->pop_front_outgoing();
    if (self->welcomed_)
      self->manager_.log_session_event("close", self->id_, self->name(), self->peer_);
    self->manager_.session_closed(self->id_);
  });
}

proto::SessionInfo Session::info() const {
  return proto::SessionInfo{id_,
                            name(),
                            static_cast<std::uint32_t>(peer_.pid),
                            peer_.uid,
                            peer_.gid,
                            roles(),
                            subscriptions_.load(),
                            static_cast<std::uint32_t>(outstanding_.load()),
                            delivered_.load(),
                            verdicts_.load(),
                            fallbacks_.load()};
}

}  // namespace pktbroker
