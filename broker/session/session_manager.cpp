#include "broker/session/session_manager.hpp"

#include "broker/policy/matcher.hpp"
#include "broker/stats_report.hpp"

#include "broker/logging.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <mutex>
#include <system_error>

#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace pktbroker {
namespace {

std::uint8_t all_roles =
    proto::role_observe | proto::role_verdict | proto::role_manage | proto::role_prompt;

struct Grant {
  std::uint8_t roles = 0;
  std::shared_ptr<const Matcher> allowed;
  std::string key;  // identifies the grant across reloads
};

/// Roles and limit the policy gives this peer: root always gets everything; otherwise the first
/// grant naming its uid, else the first naming its primary or a supplementary group.
std::optional<Grant> grant_for(const Policy& policy, const ucred& peer,
                               const std::vector<gid_t>& groups) {
  if (peer.uid == 0) return Grant{all_roles, nullptr, "root"};
  const auto in_group = [&](std::uint32_t gid) {
    return gid == peer.gid || std::find(groups.begin(), groups.end(), gid) != groups.end();
  };
  for (const auto kind : {ClientGrant::Kind::uid, ClientGrant::Kind::gid}) {
    for (const ClientGrant& grant : policy.broker().clients) {
      if (grant.kind != kind) continue;
      if (kind == ClientGrant::Kind::uid ? grant.id == peer.uid : in_group(grant.id)) {
        return Grant{grant.roles, grant.allowed,
                     std::to_string(grant.roles) + "\n" + grant.allowed_text};
      }
    }
  }
  return std::nullopt;
}

/// grant_for, plus the channel role: every peer that may open the socket may join channels;
/// one that no clients: grant names gets in only when a channel's access list names it, and
/// then for channels alone.
std::optional<Grant> grant_of(const Policy& policy, const ChannelHub* channels, const ucred& peer,
                              const std::vector<gid_t>& groups) {
  auto grant = grant_for(policy, peer, groups);
  if (grant) {
    grant->roles |= proto::role_channel;
  } else if (channels != nullptr && channels->names(peer, groups)) {
    grant = Grant{proto::role_channel, nullptr, "channels"};
  }
  return grant;
}

std::vector<gid_t> peer_groups(int fd) {
  std::vector<gid_t> groups(64);
  socklen_t size = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
  if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &size) != 0) {
    if (errno != ERANGE) return {};
    groups.resize(size / sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &size) != 0) return {};
  }
  groups.resize(size / sizeof(gid_t));
  return groups;
}

/// Conservative overlap test for exclusive subscriptions: same name, or selectors that could
/// both hold (marks compatible under both masks, or either one without a mark).
bool may_overlap(const Subscription& a, const Subscription& b) {
  if (a.name == b.name) return true;
  const auto ma = a.selector_mark;
  const auto mb = b.selector_mark;
  if (!ma || !mb) return true;
  const std::uint32_t mask = ma->second & mb->second;
  return (ma->first & mask) == (mb->first & mask);
}

}  // namespace

SessionManager::SessionManager(boost::asio::io_context& io, std::vector<BrokerQueue*> queues,
                               std::shared_ptr<const Policy> policy, ControlHandler control)
    : io_(io),
      strand_(boost::asio::make_strand(io)),
      queues_(std::move(queues)),
      policy_(std::move(policy)),
      control_(std::move(control)),
      acceptor_(strand_),
      accept_timer_(strand_) {}

void SessionManager::start() {
  const SocketConfig& config = policy_->broker().socket;
  path_ = config.path;
  std::error_code ignored;
  std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ignored);
  ::unlink(path_.c_str());  // a stale socket from an earlier run
  const SeqPacketProtocol::endpoint endpoint(path_);
  acceptor_.open(endpoint.protocol());
  // The socket file is made with its final mode (no chmod by path afterwards, which would
  // follow a symlink put in its place), and only its group is changed, without following one.
  const mode_t previous_mask = ::umask(~config.mode & 0777);
  boost::system::error_code bind_error;
  acceptor_.bind(endpoint, bind_error);
  ::umask(previous_mask);
  if (bind_error) throw boost::system::system_error(bind_error, "bind " + path_);
  acceptor_.listen();
  if (!config.group.empty()) {
    const group* entry = getgrnam(config.group.c_str());
    if (entry == nullptr || ::lchown(path_.c_str(), static_cast<uid_t>(-1), entry->gr_gid) != 0) {
      throw std::system_error(errno, std::generic_category(), "chown " + path_);
    }
  }
  spdlog::info("clients: listening on {} (mode {:04o})", path_, config.mode);
  boost::asio::post(strand_, [this] { do_accept(); });
}

void SessionManager::stop() {
  boost::asio::post(strand_, [this] {
    stopping_ = true;
    boost::system::error_code ignored;
    accept_timer_.cancel();
    acceptor_.close(ignored);
    for (auto& [id, weak] : refused_sessions_) {
      if (auto session = weak.lock()) session->close();
    }
    ::unlink(path_.c_str());
    for (auto& [id, weak] : sessions_) {
      if (auto session = weak.lock()) session->close();
    }
  });
}

void SessionManager::set_policy(std::shared_ptr<const Policy> policy) {
  boost::asio::post(strand_, [this, policy = std::move(policy)]() mutable {
    policy_ = std::move(policy);
    for (const auto& [id, weak] : sessions_) {
      const auto session = weak.lock();
      if (!session) continue;
      const auto grant =
          grant_of(*policy_, channels_.get(), session->peer(), session->limits().groups);
      if (grant && grant->key == session->limits().grant_key) continue;
      spdlog::info("session {} ({}): the reloaded policy {} its grant; closing it", id,
                   session->name(), grant ? "changes" : "removes");
      session->close_with(proto::ErrorCode::not_permitted,
                          "the reloaded policy changed this session's grant; reconnect");
    }
  });
}

void SessionManager::do_accept() {
  acceptor_.async_accept(boost::asio::make_strand(io_),
                         [this](const boost::system::error_code& error, StrandSocket socket) {
                           on_accept(error, std::move(socket));
                         });
}

void SessionManager::accept_later(const boost::system::error_code& error) {
  if (stopping_) return;
  // One line per second at most: a client that keeps the broker out of descriptors must not
  // flood the log as well.
  if (accept_failures_++ == 0) {
    spdlog::warn("clients: accept failed: {}; retrying in 100 ms", error.message());
  }
  accept_timer_.expires_after(std::chrono::milliseconds(100));
  accept_timer_.async_wait([this](const boost::system::error_code& timer_error) {
    if (timer_error || stopping_) return;
    if (accept_failures_ >= 10) {
      spdlog::warn("clients: accept failed {} more times", accept_failures_ - 1);
      accept_failures_ = 0;
    }
    do_accept();
  });
}

std::string SessionManager::session_bound(const ucred& peer) const {
  const SocketConfig& config = policy_->broker().socket;
  if (sessions_.size() >= config.max_sessions) {
    return "the broker has " + std::to_string(sessions_.size()) +
           " sessions, its bound (socket.max_sessions)";
  }
  if (peer.uid == 0) return {};
  std::size_t same_uid = 0;
  for (const auto& [id, weak] : sessions_) {
    if (const auto session = weak.lock(); session && session->peer().uid == peer.uid) ++same_uid;
  }
  if (same_uid >= config.max_sessions_per_uid) {
    return "uid " + std::to_string(peer.uid) + " has " + std::to_string(same_uid) +
           " sessions, its bound (socket.max_sessions_per_uid)";
  }
  return {};
}

std::shared_ptr<std::atomic<std::size_t>> SessionManager::uid_outstanding(std::uint32_t uid) {
  if (uid == 0) return nullptr;
  std::erase_if(uid_outstanding_, [](const auto& entry) { return entry.second.expired(); });
  auto& weak = uid_outstanding_[uid];
  auto counter = weak.lock();
  if (!counter) {
    counter = std::make_shared<std::atomic<std::size_t>>(0);
    weak = counter;
  }
  return counter;
}

void SessionManager::on_accept(const boost::system::error_code& error, StrandSocket socket) {
  if (error == boost::asio::error::operation_aborted || stopping_) return;
  if (error) {
    accept_later(error);
    return;
  }
  if (accept_failures_ > 1)
    spdlog::warn("clients: accept failed {} more times", accept_failures_ - 1);
  accept_failures_ = 0;
  ucred peer{};
  socklen_t size = sizeof peer;
  if (getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &peer, &size) != 0) {
    do_accept();
    return;
  }
  const SocketConfig& config = policy_->broker().socket;
  Session::Limits limits;
  limits.groups = peer_groups(socket.native_handle());
  const auto grant = grant_of(*policy_, channels_.get(), peer, limits.groups);
  const SessionId id = next_session_++;
  std::string refusal;
  if (!grant) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    log_client_event(
        spdlog::level::warn,
        "clients: refused pid {} uid {} gid {}: no grant in the policy's clients section", peer.pid,
        peer.uid, peer.gid);
    refusal = "no grant for uid " + std::to_string(peer.uid) + " (gid " + std::to_string(peer.gid) +
              ") in the policy's clients section";
    log_session_event("refused", id, {}, peer, refusal);
  } else if (refusal = session_bound(peer); !refusal.empty()) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    log_client_event(spdlog::level::warn, "clients: refused pid {} uid {}: {}", peer.pid, peer.uid,
                     refusal);
    log_session_event("refused", id, {}, peer, refusal);
  }
  if (refusal.empty()) {
    limits.grantable = grant->roles;
    limits.allowed = grant->allowed;
    limits.grant_key = grant->key;
    limits.uid_outstanding = uid_outstanding(peer.uid);
    limits.max_uid_outstanding = config.max_outstanding_per_uid;
  }
  limits.queue_limit = config.queue_limit;
  limits.max_outstanding = config.max_outstanding;
  limits.hello_timeout = std::chrono::milliseconds(config.hello_timeout_ms);
  auto session =
      std::make_shared<Session>(std::move(socket), id, peer, std::move(limits), *this, refusal);
  if (refusal.empty()) {
    sessions_.emplace(id, session);
  } else {
    // A refused peer hears why at its HELLO; so many waiting at once are closed at once.
    std::erase_if(refused_sessions_, [](const auto& entry) { return entry.second.expired(); });
    if (refused_sessions_.size() >= max_refused_waiting) {
      session->close();
      do_accept();
      return;
    }
    refused_sessions_.emplace(id, session);
  }
  session->start();
  do_accept();
}

void SessionManager::subscribe(std::shared_ptr<Session> session, proto::Subscribe request,
                               std::uint32_t id) {
  boost::asio::post(strand_, [this, session = std::move(session), request = std::move(request),
                              id] {
    Subscription s;
    s.name = request.name.empty() ? session->name() : request.name;
    s.mode = request.mode;
    s.clash = request.clash;
    s.priority = request.priority;
    s.snaplen = request.snaplen;
    s.timeout = std::chrono::milliseconds(std::max<std::uint32_t>(request.timeout_ms, 1));
    s.fallback = Verdict{static_cast<VerdictKind>(request.fallback), std::nullopt};
    s.selector_text = request.selector;
    s.allowed = session->allowed();
    s.untrusted = session->peer().uid != 0;
    s.port = session;
    // A SUBSCRIBE read just before the session closed must not outlive it.
    if (!sessions_.contains(session->id()) || session->closed()) return;
    try {
      s.selector = compile_match(request.selector, "selector");
    } catch (const PolicyError& error) {
      session->send(
          proto::Error{proto::ErrorCode::bad_selector, error.diagnostics()[0].to_string()}, id);
      return;
    }
    if (auto refused = admit(*session, s, request)) {
      session->send(*refused, id);
      return;
    }
    s.selector_mark = selector_mark(*s.selector);
    if (s.mode == proto::SubscriptionMode::verdict) {
      for (const Subscription& other : subscriptions_) {
        if (other.mode != proto::SubscriptionMode::verdict || other.port == s.port) continue;
        // A limited session's exclusive claim does not refuse an unlimited one: that one
        // goes first (publish) and the limited one keeps what is left.
        if (other.allowed && !s.allowed) continue;
        const bool clash =
            other.clash == proto::Clash::exclusive || s.clash == proto::Clash::exclusive;
        if (clash && may_overlap(s, other)) {
          session->send(proto::Error{proto::ErrorCode::busy,
                                     "selector overlaps exclusive subscription '" + other.name +
                                         "' (id " + std::to_string(other.id) + ") of session " +
                                         std::to_string(other.port->id())},
                        id);
          return;
        }
      }
    }
    s.id = next_subscription_++;
    subscriptions_.push_back(s);
    session->subscriptions_.fetch_add(1);
    log_client_event(spdlog::level::info, "session {} ({}): subscription {} '{}' {} selector {}",
                     session->id(), session->name(), s.id, s.name,
                     s.mode == proto::SubscriptionMode::verdict ? "verdict" : "observe",
                     s.selector_text.empty() ? "(all)" : s.selector_text);
    publish();
    session->send(proto::Subscribed{s.id}, id);
  });
}

std::optional<proto::Error> SessionManager::admit(const Session& session, Subscription& s,
                                                  const proto::Subscribe& request) const {
  const SocketConfig& config = policy_->broker().socket;
  if (session.subscriptions_.load() >= config.max_subscriptions) {
    return proto::Error{proto::ErrorCode::not_permitted,
                        "this session has " + std::to_string(config.max_subscriptions) +
                            " subscriptions, its bound (socket.max_subscriptions)"};
  }
  if (request.timeout_ms > config.max_timeout_ms) {
    return proto::Error{proto::ErrorCode::not_permitted,
                        "timeout_ms " + std::to_string(request.timeout_ms) +
                            " exceeds the policy's bound (socket.max_timeout_ms " +
                            std::to_string(config.max_timeout_ms) + ")"};
  }
  if (s.selector->required().dst_name || s.selector->excluded().dst_name) {
    // Names are looked up only for policies that use them (a lookup per packet otherwise).
    return proto::Error{proto::ErrorCode::bad_selector,
                        "dst_name is not available to selectors: hand such packets over with a "
                        "rule's `verdict: {deliver: NAME}`"};
  }
  if (s.untrusted && request.fallback == proto::VerdictCode::repeat) {
    // A packet that falls back to repeat comes back to the same client: a client that never
    // answers would keep it looping through the kernel.
    return proto::Error{proto::ErrorCode::not_permitted,
                        "only root may choose repeat as a subscription's fallback"};
  }
  if (s.allowed) {
    // A limited session sees only packets inside its grant, and its selector says so: an
    // empty one means "all I may see"; any other must lie inside the grant.
    if (s.selector->required().empty() && s.selector->excluded().empty()) {
      s.selector = s.allowed;
    } else if (!s.selector->within(*s.allowed)) {
      return proto::Error{proto::ErrorCode::not_permitted,
                          "the selector is not inside this session's grant (allowed: in the "
                          "policy's clients section)"};
    }
  }
  return std::nullopt;
}

void SessionManager::unsubscribe(std::shared_ptr<Session> session, std::uint32_t subscription,
                                 std::uint32_t id) {
  boost::asio::post(strand_, [this, session = std::move(session), subscription, id] {
    const auto found =
        std::find_if(subscriptions_.begin(), subscriptions_.end(), [&](const auto& s) {
          return s.id == subscription && s.port == std::static_pointer_cast<SessionPort>(session);
        });
    if (found == subscriptions_.end()) {
      session->send(
          proto::Error{proto::ErrorCode::unknown_subscription,
                       "no subscription " + std::to_string(subscription) + " in this session"},
          id);
      return;
    }
    subscriptions_.erase(found);
    session->subscriptions_.fetch_sub(1);
    publish();
    session->send(proto::Subscribed{subscription}, id);
  });
}

void SessionManager::verdicts(const std::shared_ptr<Session>& session,
                              std::span<ClientVerdict> verdicts) {
  // One hand-over per queue for the whole batch: the queue then sends the kernel one verdict
  // message for all of them.
  for (BrokerQueue* q : queues_) q->client_verdicts(session->id(), session, verdicts);
  for (const ClientVerdict& verdict : verdicts) {
    const auto served = std::find_if(queues_.begin(), queues_.end(), [&](const BrokerQueue* q) {
      return q->number() == token_queue(verdict.token);
    });
    if (served != queues_.end()) continue;
    session->report_error(proto::ErrorCode::unknown_token,
                          "token " + std::to_string(verdict.token) + " names no served queue");
  }
}

void SessionManager::drop_subscriptions(SessionId session) {
  boost::asio::post(strand_, [this, session] {
    const auto before = subscriptions_.size();
    std::erase_if(subscriptions_, [&](const Subscription& s) { return s.port->id() == session; });
    if (subscriptions_.size() != before) publish();
  });
}

void SessionManager::session_closed(SessionId session) {
  boost::asio::post(strand_, [this, session] {
    sessions_.erase(session);
    refused_sessions_.erase(session);
    const auto before = subscriptions_.size();
    std::erase_if(subscriptions_, [&](const Subscription& s) { return s.port->id() == session; });
    if (subscriptions_.size() != before) publish();
    // After the new table: no new packet can reach the session once its old ones are released.
    for (BrokerQueue* q : queues_) q->release_session(session);
    if (channels_ != nullptr) channels_->session_closed(session);
    if (prompts_ != nullptr) prompts_->session_closed(session);
    log_client_event(spdlog::level::info, "session {} closed", session);
  });
}

void SessionManager::publish() {
  auto table = std::make_shared<SubscriptionTable>();
  for (const Subscription& s : subscriptions_) {
    (s.mode == proto::SubscriptionMode::verdict ? table->deciders : table->observers).push_back(s);
  }
  // By priority; at equal priority an unlimited subscription before a limited one.
  std::stable_sort(table->deciders.begin(), table->deciders.end(),
                   [](const auto& a, const auto& b) {
                     return std::pair(a.priority, a.allowed != nullptr) <
                            std::pair(b.priority, b.allowed != nullptr);
                   });
  for (BrokerQueue* q : queues_) q->set_subscriptions(table);
}

void SessionManager::stats(std::shared_ptr<Session> session, std::uint32_t id) {
  control_.collect_stats(
      [this, session = std::move(session), id](const std::vector<QueueSnapshot>& all) {
        proto::StatsReply reply;
        for (const QueueSnapshot& s : all) add_stats_entries(s, reply.entries);
        reply.entries.push_back({"clients", "malformed_frames", malformed()});
        reply.entries.push_back({"clients", "refused", refused()});
        if (events_ != nullptr) {
          const EventLog::Counters events = events_->counters();
          reply.entries.push_back({"events", "written", events.written});
          reply.entries.push_back({"events", "suppressed", events.suppressed});
          reply.entries.push_back({"events", "lost", events.lost});
          reply.entries.push_back({"events", "write_errors", events.write_errors});
        }
        if (prompts_ != nullptr) {
          const PromptCounters p = prompts_->counters();
          for (const auto& [name, value] : {std::pair{"prompts", p.prompts},
                                            {"merged", p.merged},
                                            {"answered", p.answered},
                                            {"timed_out", p.timed_out},
                                            {"unwatched", p.unwatched},
                                            {"overflows", p.overflows},
                                            {"rules_written", p.rules_written},
                                            {"rule_errors", p.rule_errors}}) {
            reply.entries.push_back({"prompts", name, value});
          }
        }
        for (const PluginCounters& plugin : control_.plugin_counters()) {
          for (const auto& [name, value] : plugin.counters) {
            reply.entries.push_back({"plugin " + plugin.name, name, value});
          }
        }
        session->send(reply, id);
      });
}

void SessionManager::rules(std::shared_ptr<Session> session, std::uint32_t id) {
  boost::asio::post(strand_, [this, session = std::move(session), id]() mutable {
    control_.collect_stats([policy = policy_, session = std::move(session),
                            id](const std::vector<QueueSnapshot>& all) {
      std::unordered_map<std::string, PacketCounters> hits;
      for (const QueueSnapshot& queue : all) {
        for (const RuleStats& rule : queue.rules) {
          PacketCounters& sum = hits[rule.name];
          sum.packets += rule.counters.packets;
          sum.bytes += rule.counters.bytes;
        }
      }
      proto::RulesReply reply;
      for (const Rule& rule : policy->rules()) {
        const PacketCounters& counted = hits[rule.name];
        reply.rules.push_back({rule.name, rule.file + ":" + std::to_string(rule.line),
                               rule.priority, rule.match_text, rule.verdict_text, counted.packets,
                               counted.bytes});
      }
      session->send(reply, id);
    });
  });
}

void SessionManager::apps(std::shared_ptr<Session> session, std::uint32_t id) {
  const bool all = session->peer().uid == 0 || (session->roles() & proto::role_manage) != 0;
  struct Gathered {
    std::mutex mutex;
    proto::AppsReply reply;
    std::size_t left;
  };
  auto gathered = std::make_shared<Gathered>();
  gathered->left = queues_.size();
  const auto finish = [session, id, all, uid = session->peer().uid](proto::AppsReply& reply) {
    std::erase_if(reply.apps, [&](const proto::AppSeen& app) { return !all && app.uid != uid; });
    std::stable_sort(reply.apps.begin(), reply.apps.end(),
                     [](const auto& a, const auto& b) { return a.idle_ms < b.idle_ms; });
    if (reply.apps.size() > 256) reply.apps.resize(256);
    session->send(reply, id);
  };
  if (queues_.empty()) {
    finish(gathered->reply);
    return;
  }
  for (BrokerQueue* queue : queues_) {
    queue->apps([gathered, finish](std::vector<proto::AppSeen> apps) {
      const std::lock_guard lock(gathered->mutex);
      for (auto& app : apps) gathered->reply.apps.push_back(std::move(app));
      if (--gathered->left == 0) finish(gathered->reply);
    });
  }
}

void SessionManager::sessions(std::shared_ptr<Session> session, std::uint32_t id) {
  session_infos([session = std::move(session), id](std::vector<proto::SessionInfo> infos) {
    session->send(proto::SessionsReply{std::move(infos)}, id);
  });
}

void SessionManager::log_session_event(std::string_view action, SessionId id,
                                       const std::string& name, const ucred& peer,
                                       std::string_view reason) {
  if (events_ == nullptr || !events_->wants(EventType::session)) return;
  try {
    std::string body =
        fmt::format(R"("pktbroker":{{"session":{{"action":{},"id":{},"pid":{},"uid":{},"gid":{})",
                    json_string(action), id, peer.pid, peer.uid, peer.gid);
    if (!name.empty()) body += ",\"name\":" + json_string(name);
    if (!reason.empty()) body += ",\"reason\":" + json_string(reason);
    events_->other(EventType::session, "session", body + "}}");
  } catch (...) {  // allocation failure: the event is lost
  }
}

void SessionManager::session_infos(std::function<void(std::vector<proto::SessionInfo>)> done) {
  boost::asio::post(strand_, [this, done = std::move(done)] {
    std::vector<proto::SessionInfo> infos;
    for (const auto& [sid, weak] : sessions_) {
      if (auto s = weak.lock()) infos.push_back(s->info());
    }
    done(std::move(infos));
  });
}

void SessionManager::reload(std::shared_ptr<Session> session, std::uint32_t id) {
  boost::asio::post(strand_, [this, session = std::move(session), id] {
    const auto [ok, text] = control_.reload();
    session->send(proto::ReloadReply{ok, text}, id);
  });
}

void SessionManager::plugin_command(std::shared_ptr<Session> session, proto::PluginCommand request,
                                    std::uint32_t id) {
  boost::asio::post(strand_, [this, session = std::move(session), request = std::move(request),
                              id] {
    proto::PluginCommandReply reply{false, "this broker runs no plugin commands"};
    if (control_.plugin_command) {
      // A plugin's failure is its reply's, not the manager's: nothing escapes into the strand.
      try {
        auto [ok, text] = control_.plugin_command(request.plugin, request.args);
        reply = {ok, std::move(text)};
      } catch (const std::exception& error) {
        reply = {false, std::string("the command failed: ") + error.what()};
      }
    }
    if (reply.text.size() > proto::max_plugin_reply_text) {
      log_client_event(
          spdlog::level::warn, "session {} ({}): a plugin command's reply of {} bytes cut to {}",
          session->id(), session->name(), reply.text.size(), proto::max_plugin_reply_text);
      reply.text.resize(utf8_prefix(reply.text, proto::max_plugin_reply_text));
    }
    session->send(reply, id);
  });
}

}  // namespace pktbroker
