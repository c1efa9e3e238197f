#include "broker/dispatcher.hpp"

#include "broker/logging.hpp"
#include "broker/policy/matcher.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <unordered_map>

#include <netinet/in.h>

namespace pktbroker {
namespace {

std::string_view protocol_name(std::uint8_t protocol) noexcept {
  switch (protocol) {
    case IPPROTO_TCP: return "tcp";
    case IPPROTO_UDP: return "udp";
    case IPPROTO_ICMP: return "icmp";
    case IPPROTO_ICMPV6: return "icmpv6";
    default: return "ip";
  }
}

std::string describe(const PacketView& view) {
  const bool v6 = view.ip_version == 6;
  const auto endpoint = [&](const IpAddress& address, std::uint16_t port) {
    if (!view.has_ports) return address.to_string();
    return v6 ? fmt::format("[{}]:{}", address.to_string(), port)
              : fmt::format("{}:{}", address.to_string(), port);
  };
  std::string text =
      fmt::format("{} {} -> {}", protocol_name(view.protocol), endpoint(view.src, view.src_port),
                  endpoint(view.dst, view.dst_port));
  if (view.has_icmp) text += fmt::format(" type={}", view.icmp_type);
  return text;
}

}  // namespace

Dispatcher::Dispatcher(std::uint16_t queue, std::shared_ptr<const Policy> policy,
                       FlowInspector* inspector)
    : queue_(queue), inspector_(inspector) {
  set_policy(std::move(policy));
}

void Dispatcher::set_policy(std::shared_ptr<const Policy> policy) {
  std::unordered_map<std::string, PacketCounters> previous;
  for (auto& rule : rules_) previous.emplace(std::move(rule.name), rule.counters);
  rules_.clear();
  for (const Rule& rule : policy->rules()) {
    const auto found = previous.find(rule.name);
    rules_.push_back({rule.name, found == previous.end() ? PacketCounters{} : found->second});
  }
  policy_ = std::move(policy);
}

Decision Dispatcher::decide(const PacketMeta& meta, bool again) noexcept {
  if (!again) {
    ++counters_.received.packets;
    counters_.received.bytes += meta.wire_length;
  }

  Decision decision;
  decision.meta = meta;
  if (const ParseError error = parse_packet(meta.payload, decision.view);
      error != ParseError::none) {
    ++counters_.malformed;
    ++counters_.malformed_by_reason[static_cast<std::size_t>(error)];
    decision.verdict = policy_->broker().malformed_verdict;
    decision.decided_by = "malformed";
    if (spdlog::should_log(spdlog::level::debug)) {
      log_verdict(meta, nullptr, to_string(error), decision.verdict);
    }
    return decision;
  }
  decision.parsed = true;

  std::optional<SocketLookup> lookup;
  if (policy_->uses_app()) lookup = socket_key_of(decision.view, meta.hook);
  // With plugins, a packet waits for its process before its flow's plugin sees it, so that
  // the plugin sees it once.
  if (lookup && lookup->outgoing && !again && inspector_ != nullptr && inspector_->tracking() &&
      find_identity(lookup->key, false, decision) == Identity::ask) {
    decision.verdict = policy_->broker().identity.fallback;
    decision.identity_wait = lookup->key;
    decision.decided_by = "identity_wait";
    return decision;
  }

  Inspection& inspection = decision.inspection;
  PacketMeta& inspected = decision.meta;
  if (inspector_ != nullptr && inspector_->tracking()) {  // no clock read without plugins
    const auto now = Clock::now();
    inspection = inspector_->inspect(meta, decision.view, packet_handle(meta.packet_id), now);
    decision.flow = inspection.flow;
    if (inspection.inherited) {  // a related flow a plugin announced: its parent's verdict
      ++counters_.expected_flows;
      decision.verdict = *inspection.inherited;
      decision.decided_by = "expected_flow";
      if (spdlog::should_log(spdlog::level::debug)) {
        log_verdict(meta, &decision.view, "(expected flow)", decision.verdict);
      }
      return decision;
    }
    if (inspector_->dropped_before(inspection)) {  // what a rule dropped stays dropped
      ++counters_.redropped;
      decision.verdict = {VerdictKind::drop, std::nullopt};
      decision.decided_by = "dropped_before";
      if (spdlog::should_log(spdlog::level::debug)) {
        log_verdict(meta, &decision.view, "(dropped before)", decision.verdict);
      }
      return decision;
    }
    if (inspection.flow != nullptr && inspection.flow->plugin) {
      inspected.fields = inspection.flow->plugin->fields;
    }
    if (inspected.ct_state == CtState::none) inspected.ct_state = inspection.state;
    if (policy_->uses_dst_name()) {
      try {
        dst_names_ = inspector_->names_of(decision.view.dst, now);
      } catch (...) {  // allocation failure: the names are unknown
        dst_names_.clear();
      }
      inspected.dst_names = dst_names_;
    }
  }

  std::size_t index = Policy::no_match;
  Identity identity = Identity::known;
  if (lookup && !decision.app) identity = find_identity(lookup->key, again, decision);
  // A packet received for a local socket is looked up only as far as that is cheap: when its
  // process is unknown, app.* rules just do not match it (local servers keep working).
  if (identity != Identity::known && !lookup->outgoing) identity = Identity::known;
  if (identity != Identity::known) {
    // Unknown: rules before the first app rule may still decide without it.
    index = policy_->match(inspected, decision.view);
    if (index >= policy_->first_app_rule()) {
      decision.verdict = policy_->broker().identity.fallback;
      if (identity == Identity::not_found || again) {  // looked for, not found: the fallback
        ++counters_.identity_unknown;
        decision.decided_by = "identity_unknown";
      } else {
        decision.identity_wait = lookup->key;
        decision.decided_by = "identity_wait";
      }
      if (spdlog::should_log(spdlog::level::debug)) {
        log_verdict(meta, &decision.view, decision.decided_by, decision.verdict);
      }
      return decision;
    }
  } else {
    index = policy_->match(inspected, decision.view);
  }
  std::string_view rule_name = "-";
  if (index == Policy::no_match) {
    ++counters_.default_verdicts;
    decision.verdict = policy_->broker().default_verdict;
    decision.unmatched = true;
  } else {
    if (policy_->rules()[index].ask) {
      if (const Verdict* answer = connection_answer(lookup, inspected)) {
        ++counters_.answer_rules;
        ++rules_[index].counters.packets;
        rules_[index].counters.bytes += meta.wire_length;
        decision.verdict = *answer;
        decision.decided_by = "answer";
        decision.rule = policy_->rules()[index].name;
        if (spdlog::should_log(spdlog::level::debug)) {
          log_verdict(meta, &decision.view, "(answered)", decision.verdict);
        }
        return decision;
      }
      index = answer_rule(index, inspected, decision.view);
    }
    const Rule& rule = policy_->rules()[index];
    decision.verdict = rule.verdict;
    decision.deliver = rule.deliver ? &*rule.deliver : nullptr;
    rule_name = rule.name;
    decision.decided_by = "rule";
    decision.rule = rule.name;
    decision.mirror = rule.mirror;
    ++rules_[index].counters.packets;
    rules_[index].counters.bytes += meta.wire_length;
    if (rule.inspect) apply_plugin(rule, inspection, decision);
    if (!rule.answers.empty()) {
      ++counters_.answer_rules;
      decision.decided_by = "answer";
    } else if (rule.ask && decision.decided_by == "rule") {
      // A person answers for the connection's user about its process, once per connection
      // (its first packet: a TCP SYN, a UDP datagram of a flow not answered yet). Without
      // them, nobody can be asked and the fallback applies.
      const bool first = lookup && (lookup->key.raw.protocol != IPPROTO_TCP ||
                                    (decision.view.tcp_flags & 0x12) == 0x02);
      if (decision.app && first && lookup->outgoing && inspected.uid) {
        decision.ask = &*rule.ask;
        decision.flow_key = lookup->key;
      }
      decision.decided_by = "ask";
    }
  }
  // A plugin that needs more of its flow holds the packet whatever rule matched: the rule's
  // verdict applies at the deadline (e.g. a Host header split across segments).
  if (inspection.decision.action == PKTB_HOLD && !decision.hold_ms) {
    decision.hold_ms =
        inspection.decision.hold_ms != 0 ? inspection.decision.hold_ms : Inspect{}.hold_timeout_ms;
  }
  // A drop clients may still overturn is remembered only if none takes the packet; an ask's
  // fallback only if nobody answers otherwise.
  if (decision.verdict.kind == VerdictKind::drop && !decision.hold_ms &&
      !decision.offered_to_clients() && decision.ask == nullptr) {
    remember_drop(decision);
  }
  if (spdlog::should_log(spdlog::level::debug)) {
    log_verdict(meta, &decision.view, rule_name, decision.verdict);
  }
  return decision;
}

const Verdict* Dispatcher::connection_answer(const std::optional<SocketLookup>& lookup,
                                             const PacketMeta& meta) noexcept {
  if (!lookup || connection_answers_.empty()) return nullptr;
  const auto found = connection_answers_.find(lookup->key);
  const auto now = Clock::now();
  if (found == connection_answers_.end() || found->second.uid != meta.uid ||
      now - found->second.at >= connection_answer_age) {
    return nullptr;
  }
  found->second.at = now;  // kept while the connection goes on
  return &found->second.verdict;
}

std::size_t Dispatcher::answer_rule(std::size_t ask_rule, const PacketMeta& meta,
                                    const PacketView& view) const noexcept {
  const auto rules = policy_->rules();
  if (!meta.uid) return ask_rule;  // answer rules match their user's uid
  for (std::size_t i = ask_rule - rules[ask_rule].answer_rules; i < ask_rule; ++i) {
    if (rules[i].answer_uid == *meta.uid && rules[i].matcher->matches(meta, view)) return i;
  }
  return ask_rule;
}

void Dispatcher::learn_answer(const SocketKey& key, std::optional<std::uint32_t> uid,
                              Verdict verdict) {
  if (connection_answers_.size() >= max_connection_answers) connection_answers_.clear();
  connection_answers_[key] = {verdict, uid, Clock::now()};
}

Dispatcher::Identity Dispatcher::find_identity(const SocketKey& key, bool again,
                                               Decision& decision) noexcept {
  const auto now = Clock::now();
  // A SYN may open a new socket on old addresses: asked afresh, unless it waited for that.
  const bool syn =
      !again && key.raw.protocol == IPPROTO_TCP && (decision.view.tcp_flags & 0x12) == 0x02;
  auto [known, stale] = identities_.find(key, syn, decision.meta.uid, now);
  const bool new_flow = known == nullptr || again;  // its first packet (or one that waited)
  if ((known == nullptr || stale) && identity_ != nullptr) {
    if (auto found = identity_->find(key)) {
      try {
        learn_identity(key, std::move(*found));
        known = identities_.find(key, false, decision.meta.uid, now).app;
        stale = false;
      } catch (...) {  // allocation failure: looked up the slow way
      }
    }
  }
  if (stale) decision.identity_refresh = key;  // checked again while the flow goes on
  if (known == nullptr) return Identity::ask;
  if (*known == nullptr || !(*known)->complete()) return Identity::not_found;
  ++counters_.identity_known;
  decision.app = *known;
  decision.meta.app = decision.app.get();
  if (new_flow) note_app(key, decision.app);
  return Identity::known;
}

void Dispatcher::note_app(const SocketKey& key, const AppRef& app) noexcept {
  const auto now = Clock::now();
  auto found = std::find_if(apps_.begin(), apps_.end(), [&](const AppConnections& seen) {
    return seen.app->pid == app->pid && seen.app->start_ticks == app->start_ticks;
  });
  if (found == apps_.end()) {
    if (apps_.size() < max_apps_seen) {
      try {
        found = apps_.insert(apps_.end(), AppConnections{});
      } catch (...) {  // allocation failure: not listed
        return;
      }
    } else {  // the longest idle makes room
      found = std::min_element(apps_.begin(), apps_.end(),
                               [](const auto& a, const auto& b) { return a.last < b.last; });
      *found = AppConnections{};
    }
  }
  AppConnections& seen = *found;
  seen.app = app;  // the newest lookup (a later exec shows)
  seen.recent[seen.connections % seen.recent.size()] = key;
  ++seen.connections;
  seen.last = now;
}

std::vector<proto::AppSeen> Dispatcher::apps_seen() const {
  std::vector<const AppConnections*> newest;
  for (const AppConnections& seen : apps_) newest.push_back(&seen);
  std::sort(newest.begin(), newest.end(), [](auto a, auto b) { return a->last > b->last; });
  std::vector<proto::AppSeen> apps;
  const auto now = Clock::now();
  for (const AppConnections* it : newest) {
    proto::AppSeen app{
        it->app->uid,
        it->app->pid,
        it->app->path.substr(0, utf8_prefix(it->app->path, 256)),
        it->app->name,
        it->connections,
        static_cast<std::uint32_t>(std::min<std::int64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(now - it->last).count(),
            UINT32_MAX)),
        {}};
    const std::size_t kept = std::min<std::uint64_t>(it->connections, it->recent.size());
    for (std::size_t i = 1; i <= kept; ++i) {
      app.destinations.push_back(
          destination_text(it->recent[(it->connections - i) % it->recent.size()]));
    }
    apps.push_back(std::move(app));
  }
  return apps;
}

void Dispatcher::learn_identity(const SocketKey& key, AppRef app) {
  identities_.store(key, std::move(app), Clock::now());
}

void Dispatcher::apply_plugin(const Rule& rule, const Inspection& inspection,
                              Decision& decision) noexcept {
  const auto& names = rule.inspect->plugins;
  if (inspection.plugin == nullptr ||
      std::find(names.begin(), names.end(), inspection.plugin->name()) == names.end()) {
    return;  // not a flow these plugins handle: the rule's fallback
  }
  decision.plugin_decides = true;
  const pktb_decision& d = inspection.decision;
  const std::optional<std::uint32_t> mark =
      (d.flags & PKTB_DECISION_SET_MARK) != 0 ? std::optional(d.set_mark) : std::nullopt;
  switch (d.action) {
    case PKTB_ACCEPT: decision.verdict = {VerdictKind::accept, mark}; break;
    case PKTB_DROP: decision.verdict = {VerdictKind::drop, mark}; break;
    case PKTB_ACCEPT_MODIFIED:
      decision.verdict = {VerdictKind::accept, mark};
      decision.replacement = inspection.replacement;
      break;
    case PKTB_HOLD:
      decision.hold_ms = d.hold_ms != 0 ? d.hold_ms : rule.inspect->hold_timeout_ms;
      return;
    default: return;  // pass: the fallback
  }
  decision.decided_by = "plugin";
  ++counters_.plugin_verdicts;
}

void Dispatcher::record(const Verdict& verdict) noexcept {
  switch (verdict.kind) {
    case VerdictKind::accept: ++counters_.accepted; break;
    case VerdictKind::drop: ++counters_.dropped; break;
    case VerdictKind::repeat: ++counters_.repeated; break;
  }
}

// Only called when debug logging is on, so the formatting cost stays off the normal path.
void Dispatcher::log_verdict(const PacketMeta& meta, const PacketView* view, std::string_view rule,
                             const Verdict& verdict) const {
  try {
    const std::string mark =
        verdict.set_mark ? fmt::format(" set_mark={:#x}", *verdict.set_mark) : std::string();
    if (view == nullptr) {
      spdlog::debug("verdict queue={} id={} malformed={} verdict={}{} len={}", queue_,
                    meta.packet_id, rule, to_string(verdict.kind), mark, meta.wire_length);
    } else {
      spdlog::debug("verdict queue={} id={} rule={} verdict={}{} {} mark={:#x} len={}", queue_,
                    meta.packet_id, rule, to_string(verdict.kind), mark, describe(*view), meta.mark,
                    meta.wire_length);
    }
  } catch (...) {  // logging must never cost a verdict
  }
}

}  // namespace pktbroker
