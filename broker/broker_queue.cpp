#include "broker/broker_queue.hpp"

#include "broker/prompt/prompt_board.hpp"

#include "broker/channel/channel_hub.hpp"
#include "broker/flow_hash.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <cstring>
#include <limits>

namespace pktbroker {

/// A delivered packet's hand-over state: who holds it, and who may take it after a `pass`.
struct ChainState {
  std::shared_ptr<SessionPort> port;               ///< the current owner
  std::shared_ptr<const SubscriptionTable> table;  ///< keeps the subscriptions below alive
  const Subscription* subscription = nullptr;      ///< the current owner's subscription
  std::vector<const Subscription*> remaining;      ///< chain subscribers after the current one
  proto::Packet packet;                            ///< the message (its payload is set per offer)
  std::span<const std::uint8_t> bytes;             ///< the packet while it is being offered
  std::vector<std::uint8_t> copy;  ///< for a chain: the receive buffer is reused before a `pass`
  std::uint32_t packet_id = 0;
  Verdict fallback;  ///< on timeout, overflow, disconnect
  Verdict on_pass;   ///< when the last subscriber passes: the policy's answer
  std::optional<std::chrono::milliseconds> rule_timeout;  ///< a deliver rule's timeout
  std::optional<Verdict> rule_fallback;                   ///< a deliver rule's fallback
  bool untrusted_claim = false;  ///< the owner is not root: counted in untrusted_outstanding_
};

namespace {

// At shutdown, read at most this many packets that are already waiting for us.
constexpr std::size_t drain_limit = 1'000'000;
// Packets plugins may hold at once per queue, and per flow.
constexpr std::size_t max_held = 1024;
constexpr std::size_t max_held_per_flow = 16;
constexpr std::size_t max_asking = 1024;         // packets waiting for prompts, per queue
constexpr std::size_t max_kept_verdicts = 4096;  // room the inbox keeps between rounds
// The board ends a prompt at its deadline; the tracker's is a safety net just after it.
constexpr std::chrono::milliseconds ask_slack{500};
// Held packets are tracked with this owner: sessions are numbered from 1.
constexpr SessionId plugin_owner = 0;
// Packets waiting for their process are tracked with this one.
constexpr SessionId identity_owner = std::numeric_limits<SessionId>::max();
// Packets waiting for a prompt's answer.
constexpr SessionId ask_owner = std::numeric_limits<SessionId>::max() - 1;
constexpr auto flow_maintenance_period = std::chrono::seconds(1);

proto::CtStateCode ct_code(CtState state) noexcept {
  switch (state) {
    case CtState::new_: return proto::CtStateCode::new_;
    case CtState::established: return proto::CtStateCode::established;
    case CtState::related: return proto::CtStateCode::related;
    case CtState::none: break;
  }
  return proto::CtStateCode::none;
}

std::uint64_t realtime_ns() noexcept {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000'000ULL +
         static_cast<std::uint64_t>(now.tv_nsec);
}

std::size_t flow_hash(const PacketView& view) noexcept {
  return static_cast<std::size_t>(
      symmetric_flow_hash(view.src, view.src_port, view.dst, view.dst_port, view.protocol));
}

proto::Packet packet_message(const PacketMeta& meta) {
  proto::Packet packet;
  packet.queue = meta.queue;
  packet.hook = meta.hook;
  packet.ct_state = ct_code(meta.ct_state);
  packet.mark = meta.mark;
  packet.in_ifindex = meta.in_ifindex;
  packet.out_ifindex = meta.out_ifindex;
  packet.uid = meta.uid;
  packet.gid = meta.gid;
  packet.timestamp_ns = realtime_ns();
  packet.wire_length = meta.wire_length;
  return packet;
}

std::span<const std::uint8_t> first_bytes(std::span<const std::uint8_t> bytes, std::uint32_t n) {
  return bytes.first(std::min<std::size_t>({bytes.size(), n, proto::max_payload}));
}

}  // namespace

BrokerQueue::BrokerQueue(boost::asio::io_context& io, const QueueConfig& config,
                         std::shared_ptr<const Policy> policy,
                         std::shared_ptr<const PluginSet> plugins, std::shared_ptr<NameCache> names,
                         std::shared_ptr<EventLog> events)
    : config_(config),
      strand_(boost::asio::make_strand(io)),
      socket_(config),
      inspector_(
          std::move(plugins), FlowLimits{.capacity = policy->broker().max_flows},
          [this](std::uint64_t handle, const pktb_decision& decision) {
            return release_held(handle, decision);
          },
          std::move(names)),
      dispatcher_(config.num, std::move(policy), &inspector_),
      reader_(strand_, socket_, config.copy_range, dispatcher_.counters()),
      writer_(config.num,
              [this](std::span<const std::uint8_t> messages) { return socket_.send(messages); }),
      tracker_(config.num),
      batcher_(dispatcher_.counters().client_datagrams),
      subscriptions_(std::make_shared<SubscriptionTable>()),
      expiry_timer_(strand_),
      events_(std::move(events)),
      flow_timer_(strand_) {}

void BrokerQueue::start() {
  boost::asio::post(strand_, [this] {
    reader_.start([this](const PacketMeta& meta) { on_packet(meta); },
                  [this](std::uint32_t packet_id) { on_unreadable(packet_id); },
                  [this] { flush(); });
    schedule_flow_maintenance();
  });
}

void BrokerQueue::on_packet(const PacketMeta& meta) {
  decide(meta, false);
}

void BrokerQueue::decide(const PacketMeta& meta, bool again) {
  open_batch();
  const Decision decision = dispatcher_.decide(meta, again);
  if (decision.identity_wait && !stopped_ && identity_ != nullptr) {
    wait_for_identity(meta, decision);
    return;
  }
  if (decision.identity_refresh && identity_ != nullptr) ask_identity(*decision.identity_refresh);
  const SubscriptionTable& table = *subscriptions_;
  const bool to_clients = decision.parsed && !stopped_;  // packets drained at stop: policy alone
  if (to_clients && !table.observers.empty()) {
    copy_to_observers(decision.meta, decision.view);
  }
  if (decision.ask != nullptr && !stopped_ && prompts_ != nullptr) {
    wait_for_answer(meta, decision);
    return;
  }
  if (decision.hold_ms && hold(meta.packet_id, decision)) return;
  if (to_clients && decision.offered_to_clients() && !table.deciders.empty()) {
    // Scratch vectors reused from packet to packet: no allocation once they have grown.
    candidates_.clear();
    for (const Subscription& s : table.deciders) {
      if (decision.deliver != nullptr && s.name != decision.deliver->subscription) continue;
      if (s.selects(decision.meta, decision.view)) candidates_.push_back(&s);
    }
    if (!candidates_.empty()) {
      chain_.clear();
      const Subscription& first = *candidates_.front();
      if (first.clash == proto::Clash::balance) {
        for (const Subscription* s : candidates_) {
          if (s->clash == proto::Clash::balance && s->name == first.name) chain_.push_back(s);
        }
        chain_ = {chain_[flow_hash(decision.view) % chain_.size()]};
      } else if (first.clash == proto::Clash::chain) {
        for (const Subscription* s : candidates_) {
          if (s->clash == proto::Clash::chain) chain_.push_back(s);
        }
      } else {
        chain_.push_back(&first);
      }
      offer(decision.meta, chain_, decision);
      return;
    }
  }
  if (decision.offered_to_clients() && decision.verdict.kind == VerdictKind::drop) {
    dispatcher_.remember_drop(decision);
  }
  if ((decision.inspection.decision.flags & PKTB_DECISION_LEAVE_HELD) != 0) {
    FlowInspector::record(decision.flow, decision.verdict);
  } else {
    settle(decision.flow, decision.verdict);
  }
  ++decided_in_batch_;
  finish(meta.packet_id, decision.verdict, decision.replacement,
         {.decided_by = decision.decided_by, .decision = &decision});
  // After the verdict: a copy never delays the packet (ChannelHub::mirror only posts).
  if (!decision.mirror.empty() && mirror_ != nullptr) {
    mirror_->mirror(std::string(decision.mirror), meta.payload);
  }
}

void BrokerQueue::open_batch() noexcept {
  if (batch_open_) return;
  batch_open_ = true;
  batch_started_ = Clock::now();
}

// A packet whose message could not be parsed: it is malformed to us.
void BrokerQueue::on_unreadable(std::uint32_t packet_id) {
  ++dispatcher_.counters().received.packets;
  ++dispatcher_.counters().malformed;
  open_batch();
  ++decided_in_batch_;
  finish(packet_id, dispatcher_.malformed_verdict(), {}, {.decided_by = "malformed"});
}

void BrokerQueue::wait_for_identity(const PacketMeta& meta, const Decision& decision) {
  const IdentityConfig& config = dispatcher_.identity_config();
  const Why why{.decided_by = "identity_overflow", .decision = &decision};
  if (identity_waits_.size() >= config.max_waiting) {
    ++dispatcher_.counters().identity_overflows;
    ++decided_in_batch_;
    finish(meta.packet_id, decision.verdict, {}, why);
    return;
  }
  const SocketKey& key = *decision.identity_wait;
  try {
    IdentityWait& wait = identity_waits_[meta.packet_id];
    wait.key = key;
    wait.meta = meta;
    wait.bytes.assign(meta.payload.begin(), meta.payload.end());
    wait.meta.payload = wait.bytes;
    wait.meta.fields = {};  // views into the flow table and the last decision: found again
    wait.meta.dst_names = {};
    wait.meta.app = nullptr;
    identity_waits_by_key_.emplace(key, meta.packet_id);
    const auto deadline = Clock::now() + std::chrono::milliseconds(config.timeout_ms);
    // Last: once tracked, the packet leaves through the tracker and nowhere else.
    wait.token =
        tracker_.track({meta.packet_id, identity_owner, decision.verdict, deadline, nullptr});
  } catch (...) {  // allocation failure: the fallback now
    forget_wait(meta.packet_id);
    ++dispatcher_.counters().identity_overflows;
    ++decided_in_batch_;
    finish(meta.packet_id, decision.verdict, {}, why);
    return;
  }
  ++dispatcher_.counters().identity_waits;
  ask_identity(key);
  note_waiting(meta.packet_id, decision);
  schedule_expiry();
}

void BrokerQueue::wait_for_answer(const PacketMeta& meta, const Decision& decision) {
  // At most half the kernel queue waits for people: the rest keeps flowing.
  const std::size_t bound = std::min<std::size_t>(max_asking, config_.max_len / 2);
  PacketToken token = 0;
  if (ask_waits_.size() < bound) {
    try {
      AskWait& wait = ask_waits_[meta.packet_id];
      wait.flow = decision.flow_key;
      wait.uid = decision.meta.uid;
      // Last: once tracked, the packet leaves through the tracker and nowhere else.
      const auto deadline = Clock::now() + std::chrono::milliseconds(decision.ask->timeout_ms);
      token = tracker_.track(
          {meta.packet_id, ask_owner, decision.verdict, deadline + ask_slack, nullptr});
      wait.token = token;
      prompts_->ask({this, token, decision.app, *decision.meta.uid, decision.flow_key,
                     std::string(decision.rule), decision.verdict, deadline});
    } catch (...) {  // allocation failure: tracked, it takes the fallback at its deadline
      if (token == 0) ask_waits_.erase(meta.packet_id);
    }
  }
  if (token == 0) {  // too many waiting, or no room for one more: the fallback now
    ++dispatcher_.counters().ask_overflows;
    ++dispatcher_.counters().ask_fallbacks;
    ++decided_in_batch_;
    finish(meta.packet_id, decision.verdict, {},
           {.decided_by = "ask_overflow", .decision = &decision});
    return;
  }
  ++dispatcher_.counters().ask_waits;
  note_waiting(meta.packet_id, decision);
  schedule_expiry();
}

void BrokerQueue::answered(std::vector<PacketToken> tokens, Verdict verdict, AskOutcome outcome) {
  boost::asio::post(strand_, [this, tokens = std::move(tokens), verdict, outcome] {
    static constexpr std::string_view decided_by[] = {"answer", "ask_timeout", "ask_unwatched",
                                                      "ask_overflow"};
    for (const PacketToken token : tokens) {
      VerdictTracker::Pending pending;
      if (tracker_.take(token, ask_owner, pending) != VerdictTracker::ResolveResult::resolved) {
        continue;  // decided already: its deadline passed, or the queue stopped
      }
      if (const auto wait = ask_waits_.find(pending.packet_id); wait != ask_waits_.end()) {
        try {
          dispatcher_.learn_answer(wait->second.flow, wait->second.uid, verdict);
        } catch (...) {  // allocation failure: a SYN sent again is asked again
        }
        ask_waits_.erase(wait);
      }
      ++(outcome == AskOutcome::answer ? dispatcher_.counters().ask_answered
                                       : dispatcher_.counters().ask_fallbacks);
      finish(pending.packet_id, verdict, {},
             {.decided_by = decided_by[static_cast<std::size_t>(outcome)]});
    }
    flush();
  });
}

void BrokerQueue::forget_wait(std::uint32_t packet_id) noexcept {
  const auto found = identity_waits_.find(packet_id);
  if (found == identity_waits_.end()) return;
  const auto [first, last] = identity_waits_by_key_.equal_range(found->second.key);
  for (auto it = first; it != last; ++it) {
    if (it->second == packet_id) {
      identity_waits_by_key_.erase(it);
      break;
    }
  }
  identity_waits_.erase(found);
}

void BrokerQueue::ask_identity(const SocketKey& key) {
  try {
    if (!identity_asked_.insert(key).second) return;  // asked already
    identity_->resolve(key, [this, key](AppRef app) {
      boost::asio::post(strand_, [this, key, app = std::move(app)]() mutable {
        on_identity(key, std::move(app));
      });
    });
  } catch (...) {  // allocation failure: the waiting packets take the fallback at their deadline
    identity_asked_.erase(key);
  }
}

// The resolver's answer for a flow: its waiting packets are decided again, in arrival order.
void BrokerQueue::on_identity(const SocketKey& key, AppRef app) {
  identity_asked_.erase(key);
  if (stopped_) return;
  try {
    dispatcher_.learn_identity(key, std::move(app));
    std::vector<std::pair<PacketToken, std::uint32_t>> waiting;  // token order: arrival order
    const auto [first, last] = identity_waits_by_key_.equal_range(key);
    for (auto it = first; it != last; ++it) {
      waiting.emplace_back(identity_waits_.at(it->second).token, it->second);
    }
    std::sort(waiting.begin(), waiting.end());
    for (const auto& [token, packet_id] : waiting) {
      VerdictTracker::Pending pending;
      if (tracker_.take(token, identity_owner, pending) !=
          VerdictTracker::ResolveResult::resolved) {
        continue;
      }
      IdentityWait wait = std::move(identity_waits_.at(packet_id));  // bytes move with it
      forget_wait(packet_id);
      waiting_.erase(packet_id);
      decide(wait.meta, true);
    }
  } catch (...) {  // allocation failure: what still waits takes the fallback at its deadline
  }
  flush();
}

bool BrokerQueue::hold(std::uint32_t packet_id, const Decision& decision) {
  const std::uint64_t flow_id = decision.flow != nullptr ? decision.flow->id : 0;
  if (held_.size() >= max_held || held_by_flow_.count(flow_id) >= max_held_per_flow) {
    ++dispatcher_.counters().hold_overflows;
    return false;
  }
  const auto deadline = Clock::now() + std::chrono::milliseconds(*decision.hold_ms);
  const PacketToken token =
      tracker_.track({packet_id, plugin_owner, decision.verdict, deadline, nullptr});
  const std::uint64_t handle = dispatcher_.packet_handle(packet_id);
  held_[handle] = {token, flow_id, decision.plugin_decides};
  held_by_flow_.emplace(flow_id, handle);
  ++dispatcher_.counters().held;
  if (events_ != nullptr) {
    note_waiting(packet_id, decision);
    if (events_->wants(EventType::hold)) {
      try {
        PacketEvent event = event_of(decision);
        event.type = "hold";
        event.decided_by = "plugin";
        event.hold_ms = *decision.hold_ms;
        events_->packet(std::move(event));
      } catch (...) {  // allocation failure: the event is lost, the packet is held
      }
    }
  }
  schedule_expiry();
  return true;
}

void BrokerQueue::settle(Flow* flow, const Verdict& verdict) {
  FlowInspector::record(flow, verdict);
  if (flow == nullptr || held_.empty()) return;
  const auto [first, last] = held_by_flow_.equal_range(flow->id);
  // In arrival (token) order, so that the flow leaves in the order it came.
  std::vector<std::pair<PacketToken, std::uint64_t>> held;
  for (auto it = first; it != last; ++it) held.emplace_back(held_.at(it->second).token, it->second);
  std::sort(held.begin(), held.end());
  for (const auto& [token, handle] : held) {
    forget_held(handle);
    VerdictTracker::Pending pending;
    if (tracker_.take(token, plugin_owner, pending) == VerdictTracker::ResolveResult::resolved) {
      ++dispatcher_.counters().plugin_releases;
      finish(pending.packet_id, verdict, {}, {.decided_by = "flow_verdict"});
    }
  }
}

int BrokerQueue::release_held(std::uint64_t handle, const pktb_decision& decision) {
  const auto found = held_.find(handle);
  if (found == held_.end() || decision.action == PKTB_HOLD) return -1;
  const PacketToken token = found->second.token;
  const bool plugin_decides = found->second.plugin_decides;
  forget_held(handle);
  VerdictTracker::Pending pending;
  if (tracker_.take(token, plugin_owner, pending) != VerdictTracker::ResolveResult::resolved) {
    return -1;
  }
  ++dispatcher_.counters().plugin_releases;
  if (!plugin_decides) {  // the rule did not hand this plugin the decision: its verdict stands
    finish(pending.packet_id, pending.fallback, {}, {.decided_by = "hold_released"});
    return 0;
  }
  const Why plugin{.decided_by = "plugin"};
  const std::optional<std::uint32_t> mark = (decision.flags & PKTB_DECISION_SET_MARK) != 0
                                                ? std::optional(decision.set_mark)
                                                : std::nullopt;
  switch (decision.action) {
    case PKTB_ACCEPT: finish(pending.packet_id, {VerdictKind::accept, mark}, {}, plugin); break;
    case PKTB_DROP: finish(pending.packet_id, {VerdictKind::drop, mark}, {}, plugin); break;
    case PKTB_ACCEPT_MODIFIED:
      finish(pending.packet_id, {VerdictKind::accept, mark},
             {decision.payload, decision.payload_len}, plugin);
      break;
    default:  // pass
      finish(pending.packet_id, pending.fallback, {}, {.decided_by = "hold_fallback"});
      break;
  }
  return 0;
}

bool BrokerQueue::forget_held(std::uint64_t handle) {
  const auto found = held_.find(handle);
  if (found == held_.end()) return false;
  const auto [first, last] = held_by_flow_.equal_range(found->second.flow_id);
  for (auto it = first; it != last; ++it) {
    if (it->second == handle) {
      held_by_flow_.erase(it);
      break;
    }
  }
  held_.erase(found);
  return true;
}

void BrokerQueue::wake_plugin(std::weak_ptr<const Plugin> plugin) {
  // A weak pointer: the plugin's own thread, which calls wake, must never end up holding the
  // last reference (it would unload the plugin from inside it).
  boost::asio::post(strand_, [this, weak = std::move(plugin)] {
    const auto plugin = weak.lock();
    if (stopped_ || !plugin) return;
    inspector_.fire_timers(*plugin, Clock::now());
    flush();
  });
}

// Idle flows, stale expectations and plugin timers, once a second or at the next timer.
void BrokerQueue::schedule_flow_maintenance() {
  // While flows are tracked (also those of plugins a reload removed), so that they expire.
  if (stopped_ || !inspector_.tracking() || flow_timer_armed_) return;
  auto at = Clock::now() + flow_maintenance_period;
  if (const auto timer = inspector_.next_timer()) at = std::min(at, *timer);
  flow_timer_armed_ = true;
  flow_timer_.expires_at(at);
  flow_timer_.async_wait([this](const boost::system::error_code& error) {
    flow_timer_armed_ = false;
    if (error == boost::asio::error::operation_aborted) return;
    inspector_.maintain(Clock::now());
    flush();
    schedule_flow_maintenance();
  });
}

void BrokerQueue::copy_to_observers(const PacketMeta& meta, const PacketView& view) {
  for (const Subscription& s : subscriptions_->observers) {
    if (!s.selects(meta, view)) continue;
    proto::Packet packet = packet_message(meta);
    packet.subscription_id = s.id;
    packet.payload = first_bytes(meta.payload, s.snaplen);
    if (batcher_.add(s.port, packet)) {
      ++dispatcher_.counters().observed;
    } else {
      ++dispatcher_.counters().observer_overflows;
    }
  }
}

void BrokerQueue::offer(const PacketMeta& meta, std::span<const Subscription* const> chain,
                        const Decision& decision) {
  auto state = std::allocate_shared<ChainState>(std::pmr::polymorphic_allocator<>(&chain_memory_));
  state->table = subscriptions_;
  state->subscription = chain.front();
  state->remaining.assign(chain.begin() + 1, chain.end());
  state->packet = packet_message(meta);
  state->packet.needs_verdict = true;
  if (state->remaining.empty()) {
    state->bytes = meta.payload;  // encoded at once and never offered again: no copy
  } else {
    state->copy.assign(meta.payload.begin(), meta.payload.end());
    state->bytes = state->copy;
  }
  state->packet_id = meta.packet_id;
  state->on_pass = decision.verdict;
  if (decision.deliver != nullptr) {
    state->rule_timeout = std::chrono::milliseconds(decision.deliver->timeout_ms);
    state->rule_fallback = decision.verdict;
  }
  if (!offer_to(state)) {
    finish(meta.packet_id, state->fallback, {}, {.decided_by = "overflow", .decision = &decision});
  } else {
    note_waiting(meta.packet_id, decision);
  }
  if (state->remaining.empty()) state->bytes = state->packet.payload = {};  // the receive buffer's
}

// Tracks the packet for state->subscription and sends it; on overflow counts it and returns
// false (the caller applies the fallback).
bool BrokerQueue::offer_to(const std::shared_ptr<ChainState>& state) {
  const Subscription& s = *state->subscription;
  state->port = s.port;
  // A deliver rule's timeout and fallback govern its packets; otherwise the subscriber's.
  const auto timeout = state->rule_timeout.value_or(s.timeout);
  state->fallback = state->rule_fallback.value_or(s.fallback);
  // Clients other than root together hold at most half the kernel queue: the rest stays
  // for the policy, so they cannot fill it (and push a fail-open queue into bypass).
  const bool untrusted_full = s.untrusted && untrusted_outstanding_ >= config_.max_len / 2;
  if (stopped_ || untrusted_full || !s.port->claim_outstanding()) {
    ++dispatcher_.counters().outstanding_overflows;
    s.port->count_fallback();
    return false;
  }
  state->untrusted_claim = s.untrusted;
  untrusted_outstanding_ += s.untrusted ? 1 : 0;
  const PacketToken token = tracker_.track(
      {state->packet_id, s.port->id(), state->fallback, Clock::now() + timeout, state});
  state->packet.token = token;
  state->packet.subscription_id = s.id;
  state->packet.payload = first_bytes(state->bytes, s.snaplen);
  if (batcher_.add(s.port, state->packet)) {
    ++dispatcher_.counters().delivered;
    schedule_expiry();
    return true;
  }
  VerdictTracker::Pending dropped;
  tracker_.take(token, s.port->id(), dropped);
  settled(dropped);
  ++dispatcher_.counters().overflows;
  s.port->count_fallback();
  return false;
}

// Dispatched: when the queue's strand is free the verdicts go to the kernel at once, from the
// session's read handler, instead of after another turn of the event loop.
void BrokerQueue::client_verdicts(SessionId session, const std::shared_ptr<SessionPort>& port,
                                  std::span<ClientVerdict> verdicts) {
  bool schedule = false;
  {
    const std::lock_guard lock(inbox_mutex_);
    for (ClientVerdict& verdict : verdicts) {
      if (token_queue(verdict.token) != config_.num) continue;
      inbox_.push_back({session, port, std::move(verdict)});
      schedule = !inbox_scheduled_;
    }
    inbox_scheduled_ = inbox_scheduled_ || schedule;
  }
  if (schedule) boost::asio::dispatch(strand_, [this] { take_inbox(); });
}

void BrokerQueue::take_inbox() {
  {
    const std::lock_guard lock(inbox_mutex_);
    std::swap(inbox_, taken_inbox_);
    inbox_scheduled_ = false;
  }
  for (InboxEntry& entry : taken_inbox_) {
    on_client_verdict(entry.session, entry.port, std::move(entry.verdict));
  }
  taken_inbox_.clear();
  if (taken_inbox_.capacity() > 4 * max_kept_verdicts) {  // after a flood of sessions
    taken_inbox_ = {};
    taken_inbox_.reserve(max_kept_verdicts);
  }
  flush();
}

void BrokerQueue::on_client_verdict(SessionId session, const std::shared_ptr<SessionPort>& port,
                                    ClientVerdict verdict) {
  ++dispatcher_.counters().client_verdicts;
  if (!verdict.replacement.empty()) {
    PacketView view;
    const ParseError error = parse_packet(verdict.replacement, view);
    if (error != ParseError::none || view.captured_truncated) {
      ++dispatcher_.counters().rejected_verdicts;
      port->report_error(
          proto::ErrorCode::bad_payload,
          "replacement payload for token " + std::to_string(verdict.token) +
              " is not a well-formed IP packet (" +
              std::string(to_string(error == ParseError::none ? ParseError::ipv4_bad_total_length
                                                              : error)) +
              "); the packet keeps waiting for a verdict");
      return;
    }
  }
  VerdictTracker::Pending pending;
  if (stopped_ ||
      tracker_.take(verdict.token, session, pending) != VerdictTracker::ResolveResult::resolved) {
    ++dispatcher_.counters().rejected_verdicts;
    port->report_error(proto::ErrorCode::unknown_token,
                       "token " + std::to_string(verdict.token) +
                           " is not a packet this session holds (foreign, decided or expired)");
    return;
  }
  settled(pending);
  if (pending.chain && !inside_grant(*pending.chain, pending.chain->packet, verdict)) {
    // A limited session may not move a packet outside its grant (spoofing, marks it may not
    // set): the packet takes the fallback, and the client hears why.
    ++dispatcher_.counters().rejected_verdicts;
    ++dispatcher_.counters().fallbacks_outside_grant;
    port->report_error(proto::ErrorCode::not_permitted,
                       "the verdict for token " + std::to_string(verdict.token) +
                           " sets a mark or bytes outside this session's grant; the packet "
                           "took its fallback");
    finish(pending.packet_id, pending.fallback, {}, {.decided_by = "outside_grant"});
    return;
  }
  if (verdict.code == proto::VerdictCode::pass) {
    ++dispatcher_.counters().passes;
    auto& state = pending.chain;
    while (state && !state->remaining.empty()) {
      state->subscription = state->remaining.front();
      state->remaining.erase(state->remaining.begin());
      if (offer_to(state)) return;
    }
    finish(pending.packet_id, state ? state->on_pass : pending.fallback, {},
           {.decided_by = "passed"});
    return;
  }
  const Verdict final{static_cast<VerdictKind>(verdict.code), verdict.mark};
  finish(pending.packet_id, final, verdict.replacement,
         {.decided_by = "client",
          .subscription = pending.chain ? pending.chain->subscription->name : std::string_view()});
}

void BrokerQueue::settled(const VerdictTracker::Pending& pending) noexcept {
  if (pending.owner == plugin_owner || !pending.chain || !pending.chain->port) return;
  pending.chain->port->release_outstanding();
  if (pending.chain->untrusted_claim) --untrusted_outstanding_;
  pending.chain->untrusted_claim = false;
}

bool BrokerQueue::inside_grant(const ChainState& state, const proto::Packet& packet,
                               const ClientVerdict& verdict) noexcept {
  const Matcher* allowed = state.subscription->allowed.get();
  if (allowed == nullptr) return true;
  // The packet was inside the grant when it was offered; a new mark must keep it there.
  const std::uint32_t mark = verdict.mark.value_or(packet.mark);
  if (verdict.replacement.empty()) return allowed->allows_mark(mark);
  // New bytes are judged again as they would leave. What only the broker knew of the old
  // bytes (their flow's ct_state, plugin fields, DNS name) says nothing of new ones: a grant
  // naming those allows no rewrite.
  if (allowed->uses_broker_fields()) return false;
  PacketMeta meta;
  meta.queue = packet.queue;
  meta.hook = packet.hook;
  meta.mark = mark;
  meta.in_ifindex = packet.in_ifindex;
  meta.out_ifindex = packet.out_ifindex;
  meta.uid = packet.uid;
  meta.gid = packet.gid;
  meta.wire_length = static_cast<std::uint32_t>(verdict.replacement.size());
  PacketView view;
  return parse_packet(verdict.replacement, view) == ParseError::none &&
         allowed->matches(meta, view);
}

void BrokerQueue::release_session(SessionId session) {
  boost::asio::post(strand_, [this, session] {
    if (stopped_) return;
    tracker_.release_session(session, [this](const VerdictTracker::Pending& pending) {
      ++dispatcher_.counters().disconnect_fallbacks;
      settled(pending);
      finish(pending.packet_id, pending.fallback, {}, {.decided_by = "disconnect"});
    });
    flush();
  });
}

void BrokerQueue::finish(std::uint32_t packet_id, const Verdict& verdict,
                         std::span<const std::uint8_t> replacement, const Why& why) {
  dispatcher_.record(verdict);
  if (events_ != nullptr) log_verdict(packet_id, verdict, why);
  if (replacement.empty()) {
    writer_.add(packet_id, verdict);
  } else {
    writer_.add(packet_id, verdict, replacement);
  }
}

// Who the packet is, what matched it and what its plugin saw: the part of its event known
// when it arrives.
PacketEvent BrokerQueue::event_of(const Decision& decision) {
  PacketEvent event;
  event.packet = PacketSummary::of(decision.meta, decision.parsed ? &decision.view : nullptr);
  event.rule = decision.rule;
  if (decision.inspection.plugin != nullptr) event.plugin = decision.inspection.plugin->name();
  event.fields.assign(decision.meta.fields.begin(), decision.meta.fields.end());
  return event;
}

void BrokerQueue::note_waiting(std::uint32_t packet_id, const Decision& decision) noexcept {
  if (events_ == nullptr ||
      !(events_->wants(EventType::drop) || events_->wants(EventType::accept))) {
    return;
  }
  try {
    waiting_.insert_or_assign(packet_id, event_of(decision));
  } catch (...) {  // allocation failure: its verdict's event will lack the context
  }
}

void BrokerQueue::log_verdict(std::uint32_t packet_id, const Verdict& verdict,
                              const Why& why) noexcept {
  const bool drop = verdict.kind == VerdictKind::drop;
  const auto found = waiting_.find(packet_id);
  if (events_->wants(drop ? EventType::drop : EventType::accept)) {
    try {
      PacketEvent event;
      if (why.decision != nullptr) {
        event = event_of(*why.decision);
      } else if (found != waiting_.end()) {
        event = std::move(found->second);
      } else {
        event.packet.queue = config_.num;
        event.packet.packet_id = packet_id;
      }
      event.type = drop ? "drop" : to_string(verdict.kind);
      event.decided_by = why.decided_by;
      event.subscription = why.subscription;
      event.set_mark = verdict.set_mark;
      events_->packet(std::move(event));
    } catch (...) {  // allocation failure: the event is lost, the verdict is not
    }
  }
  if (found != waiting_.end()) waiting_.erase(found);
}

void BrokerQueue::flush() {
  batcher_.flush();
  if (!writer_.empty()) {
    if (const int error = writer_.flush(tracker_.oldest_packet_id()); error != 0) {
      dispatcher_.counters().count(NetlinkError::verdict_send_failed);
      spdlog::error("queue {}: sending verdicts failed: {}", config_.num, std::strerror(error));
    }
  }
  if (batch_open_) {
    if (decided_in_batch_ != 0) {
      batch_latency_.observe(Clock::now() - batch_started_, decided_in_batch_);
    }
    batch_open_ = false;
    decided_in_batch_ = 0;
  }
}

// Keeps one timer armed for the earliest client deadline.
void BrokerQueue::schedule_expiry() {
  if (stopped_) return;
  const auto next = tracker_.next_deadline();
  if (!next || (expiry_armed_ && *next >= expiry_at_)) return;
  expiry_armed_ = true;
  expiry_at_ = *next;
  expiry_timer_.expires_at(*next);
  expiry_timer_.async_wait([this](const boost::system::error_code& error) {
    if (error == boost::asio::error::operation_aborted) return;  // re-armed earlier, or stopping
    expiry_armed_ = false;
    expire_now();
  });
}

void BrokerQueue::expire_now() {
  tracker_.expire(Clock::now(), [this](const VerdictTracker::Pending& pending) {
    if (pending.owner == identity_owner) {
      forget_wait(pending.packet_id);
      ++dispatcher_.counters().identity_timeouts;
      finish(pending.packet_id, pending.fallback, {}, {.decided_by = "identity_timeout"});
      return;
    }
    if (pending.owner == ask_owner) {  // the board's timer normally comes first
      ask_waits_.erase(pending.packet_id);
      ++dispatcher_.counters().ask_fallbacks;
      finish(pending.packet_id, pending.fallback, {}, {.decided_by = "ask_timeout"});
      return;
    }
    const bool held = forget_held(dispatcher_.packet_handle(pending.packet_id));
    if (held) {
      ++dispatcher_.counters().hold_timeouts;
    } else {
      ++dispatcher_.counters().timeouts;
      settled(pending);
    }
    finish(pending.packet_id, pending.fallback, {},
           {.decided_by = held ? "hold_timeout" : "timeout"});
  });
  flush();
  schedule_expiry();
}

void BrokerQueue::set_policy(std::shared_ptr<const Policy> policy,
                             std::shared_ptr<const PluginSet> plugins, IdentityResolver* identity) {
  boost::asio::post(strand_, [this, policy = std::move(policy), plugins = std::move(plugins),
                              identity]() mutable {
    if (stopped_) return;
    set_identity(identity);
    inspector_.set_plugins(std::move(plugins));
    inspector_.policy_changed();
    dispatcher_.set_policy(std::move(policy));
    schedule_flow_maintenance();
  });
}

void BrokerQueue::set_subscriptions(std::shared_ptr<const SubscriptionTable> table) {
  boost::asio::post(
      strand_, [this, table = std::move(table)]() mutable { subscriptions_ = std::move(table); });
}

void BrokerQueue::snapshot(std::function<void(QueueSnapshot)> done) {
  boost::asio::post(strand_, [this, done = std::move(done)] {
    LatencyHistogram latency = batch_latency_;
    latency += tracker_.waits();
    done(QueueSnapshot{config_.num, dispatcher_.counters(), writer_.counters(),
                       dispatcher_.rule_stats(), read_kernel_queue_stats(config_.num),
                       tracker_.size(), inspector_.counters(), latency});
  });
}

void BrokerQueue::apps(std::function<void(std::vector<proto::AppSeen>)> done) {
  boost::asio::post(strand_, [this, done = std::move(done)] { done(dispatcher_.apps_seen()); });
}

void BrokerQueue::stop(std::function<void()> done) {
  boost::asio::post(strand_, [this, done = std::move(done)] {
    stopped_ = true;
    reader_.stop();
    socket_.close_door(config_.fail_open);
    reader_.drain(drain_limit);
    tracker_.release_all([this](const VerdictTracker::Pending& pending) {
      settled(pending);
      finish(pending.packet_id, pending.fallback, {}, {.decided_by = "shutdown"});
    });
    held_.clear();
    held_by_flow_.clear();
    identity_waits_.clear();
    identity_waits_by_key_.clear();
    ask_waits_.clear();
    expiry_timer_.cancel();
    flow_timer_.cancel();
    inspector_.clear();
    flush();
    socket_.unbind();
    done();
  });
}

}  // namespace pktbroker
