#include "broker/prompt/prompt_board.hpp"

#include "broker/broker_queue.hpp"
#include "broker/logging.hpp"
#include "broker/prompt/answer_file.hpp"
#include "broker/session/session.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <tuple>

namespace pktbroker {
namespace {

proto::VerdictCode code_of(const Verdict& verdict) noexcept {
  return verdict.kind == VerdictKind::accept ? proto::VerdictCode::accept
                                             : proto::VerdictCode::drop;
}

std::string_view span_text(proto::AnswerSpan span) noexcept {
  switch (span) {
    case proto::AnswerSpan::once: return "once";
    case proto::AnswerSpan::minutes: return "for a while";
    case proto::AnswerSpan::app_exit: return "until the program exits";
    case proto::AnswerSpan::always: return "always";
  }
  return "?";
}

// The rule an answer writes: this program, this destination (the user is added by the file).
// Built as a node and emitted, so that whatever the program's path holds stays one string.
std::string match_of(const SocketKey& flow, const AppInfo& app) {
  YAML::Node match;
  match["app.path"] = glob_literal(app.path);
  match["proto"] = flow.raw.protocol == IPPROTO_TCP ? "tcp" : "udp";
  match["dst"] = destination_of(flow).to_string();
  match["dport"] = destination_port(flow);
  YAML::Emitter out;
  out << YAML::Flow << match;
  return out.c_str();
}

std::string cut(const std::string& text, std::size_t limit) {
  return text.substr(0, utf8_prefix(text, limit));
}

}  // namespace

bool PromptBoard::KeyLess::operator()(const Key& a, const Key& b) const noexcept {
  const auto to = [](const SocketKey& flow) {
    return std::tuple(flow.raw.family, flow.raw.protocol, flow.raw.dst_port);
  };
  const auto named = [](const Key& key) {
    return std::tie(key.uid, key.path, key.cmdline, key.rule);
  };
  if (named(a) != named(b)) return named(a) < named(b);
  if (to(a.flow) != to(b.flow)) return to(a.flow) < to(b.flow);
  return std::memcmp(a.flow.raw.dst, b.flow.raw.dst, sizeof a.flow.raw.dst) < 0;
}

PromptBoard::PromptBoard(boost::asio::io_context& io, PromptHost host)
    : host_(std::move(host)), strand_(boost::asio::make_strand(io)), timer_(strand_) {}

void PromptBoard::set_policy(std::shared_ptr<const Policy> policy) {
  boost::asio::post(strand_,
                    [this, policy = std::move(policy)]() mutable { policy_ = std::move(policy); });
}

void PromptBoard::ask(AskRequest request) {
  boost::asio::post(strand_, [this, request = std::move(request)]() mutable {
    try {
      on_ask(request);
    } catch (...) {  // allocation failure: the fallback now
      overflows_.fetch_add(1, std::memory_order_relaxed);
      release({{request.queue, request.token}}, request.fallback,
              BrokerQueue::AskOutcome::overflow);
    }
  });
}

void PromptBoard::on_ask(AskRequest& request) {
  const Waiter waiter{request.queue, request.token};
  if (stopped_) return;  // the queue's stop gives the fallback
  if (!watched(request.uid)) {
    unwatched_.fetch_add(1, std::memory_order_relaxed);
    release({waiter}, request.fallback, BrokerQueue::AskOutcome::unwatched);
    return;
  }
  Key key{request.uid, request.app->path, request.app->cmdline, request.flow, request.rule};
  const auto found = by_key_.find(key);
  const bool merge = found != by_key_.end();
  const auto user = per_uid_.find(request.uid);
  const std::size_t waiting = user == per_uid_.end() ? 0 : user->second.waiting;
  const std::size_t asked = user == per_uid_.end() ? 0 : user->second.prompts;
  if (waiting >= max_waiting_per_uid ||
      (!merge && (prompts_.size() >= max_prompts || asked >= max_prompts_per_uid))) {
    overflows_.fetch_add(1, std::memory_order_relaxed);
    release({waiter}, request.fallback, BrokerQueue::AskOutcome::overflow);
    return;
  }
  if (merge) {
    prompts_.at(found->second).waiting.push_back(waiter);
    ++per_uid_[request.uid].waiting;
    merged_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const std::uint64_t id = next_id_++;
  UidState& state = per_uid_[request.uid];
  prompts_.emplace(id, Prompt{id, key, request.app, request.fallback, request.deadline, {waiter}});
  try {
    by_key_.emplace(std::move(key), id);
  } catch (...) {  // allocation failure: as if never asked
    prompts_.erase(id);
    throw;
  }
  ++state.prompts;
  ++state.waiting;
  asked_.fetch_add(1, std::memory_order_relaxed);
  try {
    log_client_event(spdlog::level::info, "prompt {}: uid {} {} ({} pid {}) -> {} (rule {})", id,
                     request.uid, printable(request.app->name), printable(request.app->path),
                     request.app->pid, destination_text(request.flow), printable(request.rule));
    send_to_watchers(request.uid, describe(prompts_.at(id)));
  } catch (...) {  // allocation failure: not shown now; listed by `pending`, or it times out
  }
  arm_timer();
}

bool PromptBoard::watched(std::uint32_t uid) const noexcept {
  return std::any_of(watchers_.begin(), watchers_.end(), [&](const Watcher& w) {
    return (w.all || w.uid == uid) && !w.session.expired();
  });
}

proto::Prompt PromptBoard::describe(const Prompt& prompt) const {
  const Key& key = prompt.key;
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(prompt.deadline - Clock::now());
  return {prompt.id,
          key.uid,
          prompt.app->pid,
          cut(key.path, 1024),
          prompt.app->name,
          cut(key.cmdline, proto::max_prompt_cmdline),
          key.flow.raw.protocol,
          destination_of(key.flow).to_string(),
          destination_port(key.flow),
          key.rule,
          static_cast<std::uint32_t>(prompt.waiting.size()),
          static_cast<std::uint32_t>(std::max<std::int64_t>(left.count(), 0)),
          code_of(prompt.fallback)};
}

void PromptBoard::send_to_watchers(std::uint32_t uid, const proto::Message& message) {
  for (const Watcher& watcher : watchers_) {
    if (!watcher.all && watcher.uid != uid) continue;
    if (auto session = watcher.session.lock()) session->send(message, 0);
  }
}

void PromptBoard::release(const std::vector<Waiter>& waiting, const Verdict& verdict,
                          BrokerQueue::AskOutcome outcome) {
  std::map<BrokerQueue*, std::vector<PacketToken>> by_queue;
  for (const Waiter& waiter : waiting) by_queue[waiter.queue].push_back(waiter.token);
  for (auto& [queue, tokens] : by_queue) queue->answered(std::move(tokens), verdict, outcome);
}

void PromptBoard::close(std::map<std::uint64_t, Prompt>::iterator it, const Verdict& verdict,
                        proto::PromptEnd how, const std::string& text) {
  Prompt prompt = std::move(it->second);
  prompts_.erase(it);
  by_key_.erase(prompt.key);
  const auto user = per_uid_.find(prompt.key.uid);
  if (user != per_uid_.end()) {
    --user->second.prompts;
    user->second.waiting -= prompt.waiting.size();
    if (user->second.prompts == 0 && user->second.writes == 0) per_uid_.erase(user);
  }
  release(prompt.waiting, verdict,
          how == proto::PromptEnd::answered ? BrokerQueue::AskOutcome::answer
                                            : BrokerQueue::AskOutcome::timeout);
  send_to_watchers(prompt.key.uid, proto::PromptClosed{prompt.id, how, code_of(verdict), text});
}

void PromptBoard::arm_timer() {
  if (prompts_.empty()) return;
  const auto next =
      std::min_element(prompts_.begin(), prompts_.end(), [](const auto& a, const auto& b) {
        return a.second.deadline < b.second.deadline;
      })->second.deadline;
  timer_.expires_at(next);
  timer_.async_wait([this](const boost::system::error_code& error) {
    if (!error) on_timer();
  });
}

void PromptBoard::on_timer() {
  const auto now = Clock::now();
  for (auto it = prompts_.begin(); it != prompts_.end();) {
    const auto next = std::next(it);
    if (it->second.deadline <= now) {
      timed_out_.fetch_add(1, std::memory_order_relaxed);
      const Verdict fallback = it->second.fallback;
      log_client_event(spdlog::level::info,
                       "prompt {}: not answered in time; {} connection(s) get {}", it->first,
                       it->second.waiting.size(), to_string(fallback.kind));
      close(it, fallback, proto::PromptEnd::timed_out,
            fmt::format("not answered in time: {}", to_string(fallback.kind)));
    }
    it = next;
  }
  arm_timer();
}

void PromptBoard::watch(std::shared_ptr<Session> session, proto::PromptScope scope,
                        std::uint32_t request) {
  boost::asio::post(strand_, [this, session = std::move(session), scope, request] {
    const std::uint32_t uid = session->peer().uid;
    if (scope == proto::PromptScope::all && uid != 0) {
      session->send(
          proto::Error{proto::ErrorCode::not_permitted, "only root watches every user's prompts"},
          request);
      return;
    }
    const bool all = scope == proto::PromptScope::all;
    std::erase_if(watchers_, [&](const Watcher& w) {
      return w.session_id == session->id() || w.session.expired();
    });
    watchers_.push_back({session->id(), session, uid, all});
    session->send(proto::Ok{"watching prompts"}, request);
    for (const auto& [id, prompt] : prompts_) {
      if (all || prompt.key.uid == uid) session->send(describe(prompt), 0);
    }
  });
}

void PromptBoard::pending(std::shared_ptr<Session> session, std::uint32_t request) {
  boost::asio::post(strand_, [this, session = std::move(session), request] {
    const std::uint32_t uid = session->peer().uid;
    const bool all = uid == 0 || (session->roles() & proto::role_manage) != 0;
    proto::PendingReply reply;
    std::size_t bytes = 0;  // the oldest that fit in one reply
    for (const auto& [id, prompt] : prompts_) {
      if (!all && prompt.key.uid != uid) continue;
      proto::Prompt shown = describe(prompt);
      bytes += 64 + shown.path.size() + shown.name.size() + shown.cmdline.size() +
               shown.destination.size() + shown.rule.size();
      if (bytes > proto::max_datagram / 2) break;
      reply.prompts.push_back(std::move(shown));
    }
    session->send(reply, request);
  });
}

void PromptBoard::answer(std::shared_ptr<Session> session, proto::PromptAnswer answer,
                         std::uint32_t request) {
  boost::asio::post(strand_, [this, session = std::move(session), answer, request] {
    const std::uint32_t by = session->peer().uid;
    const auto it = stopped_ ? prompts_.end() : prompts_.find(answer.id);
    // Another user's prompt is "unknown" too: its ids cannot be probed.
    if (it == prompts_.end() || (by != 0 && it->second.key.uid != by)) {
      session->send(proto::Error{proto::ErrorCode::unknown_prompt,
                                 "no pending prompt " + std::to_string(answer.id) +
                                     " of yours (answered, timed out, or never asked)"},
                    request);
      return;
    }
    const Key key = it->second.key;
    const AppRef app = it->second.app;
    const std::size_t released = it->second.waiting.size();
    const Verdict verdict{
        answer.decision == proto::AnswerDecision::allow ? VerdictKind::accept : VerdictKind::drop,
        std::nullopt};
    const std::string how = fmt::format(
        "{} {} by uid {}", answer.decision == proto::AnswerDecision::allow ? "allow" : "deny",
        span_text(answer.span), by);
    answered_.fetch_add(1, std::memory_order_relaxed);
    close(it, verdict, proto::PromptEnd::answered, how);  // first: the packets do not wait
    std::string rule_note;
    if (answer.span != proto::AnswerSpan::once) {
      AnswerRule rule;
      rule.answers = key.rule;
      rule.match = match_of(key.flow, *app);
      rule.verdict = verdict.kind;
      if (answer.span == proto::AnswerSpan::minutes) {
        rule.until = std::to_string(answer.minutes) + "m";
      } else if (answer.span == proto::AnswerSpan::app_exit) {
        rule.until_exit = ProcessRef{app->pid, app->start_ticks};
      }
      try {
        rule_note = "; rule " + write_rule(key.uid, rule, by);
      } catch (const AnswerFileError& error) {
        rule_errors_.fetch_add(1, std::memory_order_relaxed);
        rule_note = std::string("; no rule written (applied once): ") + error.what();
      }
    }
    log_client_event(spdlog::level::info, "prompt {}: {}; {} connection(s){}", answer.id, how,
                     released, printable(rule_note));
    session->send(proto::Ok{fmt::format("released {}{}", released, rule_note)}, request);
  });
}

void PromptBoard::charge_write(std::uint32_t uid) {
  if (uid == 0) return;
  UidState& user = per_uid_[uid];
  const auto now = Clock::now();
  if (now - user.writes_since >= std::chrono::minutes(1)) {
    user.writes_since = now;
    user.writes = 0;
  }
  if (user.writes >= max_rule_writes_per_minute) {
    throw AnswerFileError("more than " + std::to_string(max_rule_writes_per_minute) +
                          " rules written in a minute; try again later");
  }
  ++user.writes;
}

// Rejected reloads name their problems only to root: they may show other users' rules.
void PromptBoard::reload_or_restore(AnswerFile& file, std::uint32_t by) {
  const auto [loaded, problems] = host_.reload();
  if (loaded) return;
  file.restore();
  throw AnswerFileError(by == 0 ? "the policy did not load: " + problems
                                : "the policy did not load; see pktbrokerd's log");
}

std::string PromptBoard::write_rule(std::uint32_t uid, const AnswerRule& rule, std::uint32_t by) {
  const auto target = [&] {
    if (policy_ == nullptr) return false;
    const auto rules = policy_->rules();
    return std::any_of(rules.begin(), rules.end(),
                       [&](const Rule& r) { return r.name == rule.answers && r.ask; });
  };
  if (!target()) throw AnswerFileError("'" + rule.answers + "' is not an ask rule of the policy");
  charge_write(by);
  AnswerFile file(host_.config, uid);
  const std::string name = file.add(rule);
  reload_or_restore(file, by);
  rules_written_.fetch_add(1, std::memory_order_relaxed);
  return name + " (" + file.path().string() + ")";
}

void PromptBoard::add_rule(std::shared_ptr<Session> session, proto::RuleAdd request,
                           std::uint32_t id) {
  boost::asio::post(
      strand_, [this, session = std::move(session), request = std::move(request), id] {
        const std::uint32_t by = session->peer().uid;
        const std::uint32_t uid = request.uid == proto::own_uid ? by : request.uid;
        if (by != 0 && uid != by) {
          session->send(proto::Error{proto::ErrorCode::not_permitted,
                                     "only root adds rules for another user"},
                        id);
          return;
        }
        const AnswerRule rule{
            request.answers, request.match,
            request.verdict == proto::VerdictCode::accept ? VerdictKind::accept : VerdictKind::drop,
            request.until, std::nullopt};
        try {
          if (stopped_) throw AnswerFileError("pktbrokerd is stopping");
          const std::string written = write_rule(uid, rule, by);
          log_client_event(spdlog::level::info, "rule {} added by uid {}", printable(written), by);
          session->send(proto::Ok{written}, id);
        } catch (const AnswerFileError& error) {
          session->send(proto::Error{proto::ErrorCode::bad_rule, error.what()}, id);
        }
      });
}

void PromptBoard::delete_rule(std::shared_ptr<Session> session, proto::RuleDelete request,
                              std::uint32_t id) {
  boost::asio::post(
      strand_, [this, session = std::move(session), request = std::move(request), id] {
        const std::uint32_t by = session->peer().uid;
        // Names are ans-u<UID>-<N>: the file is in the name; non-root users touch only their own.
        std::uint32_t uid = by;
        if (by == 0 && request.name.starts_with("ans-u")) {
          uid = static_cast<std::uint32_t>(std::strtoul(request.name.c_str() + 5, nullptr, 10));
        }
        try {
          if (stopped_) throw AnswerFileError("pktbrokerd is stopping");
          charge_write(by);
          AnswerFile file(host_.config, uid);
          if (!file.remove(request.name)) {
            session->send(proto::Error{proto::ErrorCode::unknown_rule,
                                       "no answer rule '" + request.name + "' of yours"},
                          id);
            return;
          }
          reload_or_restore(file, by);
          log_client_event(spdlog::level::info, "rule {} deleted by uid {}",
                           printable(request.name), by);
          session->send(proto::Ok{"deleted " + request.name}, id);
        } catch (const AnswerFileError& error) {
          session->send(proto::Error{proto::ErrorCode::bad_rule, error.what()}, id);
        }
      });
}

void PromptBoard::session_closed(std::uint32_t session_id) {
  boost::asio::post(strand_, [this, session_id] {
    std::erase_if(watchers_, [&](const Watcher& w) { return w.session_id == session_id; });
  });
}

void PromptBoard::stop() {
  boost::asio::post(strand_, [this] {
    stopped_ = true;
    timer_.cancel();
    prompts_.clear();
    by_key_.clear();
    per_uid_.clear();
    watchers_.clear();
  });
}

PromptCounters PromptBoard::counters() const noexcept {
  return {asked_.load(),     merged_.load(),    answered_.load(),      timed_out_.load(),
          unwatched_.load(), overflows_.load(), rules_written_.load(), rule_errors_.load()};
}

}  // namespace pktbroker
