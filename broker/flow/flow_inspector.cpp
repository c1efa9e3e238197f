#include "broker/flow/flow_inspector.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include <netinet/in.h>

namespace pktbroker {
namespace {

constexpr std::uint32_t default_expectation_ms = 30'000;
constexpr std::uint32_t max_expectation_ms = 300'000;
constexpr std::size_t max_fields_per_flow = 8;

std::uint32_t tcp_sequence(const PacketView& view) noexcept {
  if (view.protocol != IPPROTO_TCP || view.bytes.size() < view.l4_offset + 8u) return 0;
  const std::uint8_t* p = view.bytes.data() + view.l4_offset + 4;
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         p[3];
}

// Conntrack's view: new until both directions have been seen (a TCP SYN is always new),
// related for a flow a plugin announced.
CtState state_of(const Flow& flow, const PacketView& view) {
  constexpr std::uint8_t syn = 0x02;
  constexpr std::uint8_t ack = 0x10;
  if (flow.parent_id != 0) return CtState::related;
  if (view.protocol == IPPROTO_TCP && (view.tcp_flags & (syn | ack)) == syn) return CtState::new_;
  return flow.seen_from_server ? CtState::established : CtState::new_;
}

}  // namespace

FlowInspector::FlowInspector(std::shared_ptr<const PluginSet> plugins, FlowLimits limits,
                             ReleaseHandler release, std::shared_ptr<NameCache> names)
    : plugins_(plugins ? std::move(plugins) : std::make_shared<const PluginSet>()),
      table_(limits, [this](Flow& flow) { close(flow); }),
      release_(std::move(release)),
      names_(names ? std::move(names) : std::make_shared<NameCache>()) {}

FlowInspector::~FlowInspector() {
  clear();
}

void FlowInspector::set_plugins(std::shared_ptr<const PluginSet> plugins) {
  plugins_ = plugins ? std::move(plugins) : std::make_shared<const PluginSet>();
}

void FlowInspector::remember_drop(const Inspection& inspection) const noexcept {
  if (inspection.flow == nullptr || inspection.tcp_data == 0) return;
  Flow& flow = *inspection.flow;
  if (flow.drop_generation != policy_generation_) flow.dropped = 0;
  flow.drop_generation = policy_generation_;
  const int side = inspection.direction == PKTB_FROM_CLIENT ? 0 : 1;
  const std::uint32_t end = inspection.tcp_seq + inspection.tcp_data;
  const bool known = (flow.dropped & (1u << side)) != 0;
  if (!known || static_cast<std::int32_t>(end - flow.dropped_end[side]) > 0) {
    flow.dropped_end[side] = end;
  }
  flow.dropped |= static_cast<std::uint8_t>(1u << side);
}

bool FlowInspector::dropped_before(const Inspection& inspection) const noexcept {
  if (inspection.flow == nullptr || inspection.tcp_data == 0) return false;
  const Flow& flow = *inspection.flow;
  if (flow.drop_generation != policy_generation_) return false;
  const int side = inspection.direction == PKTB_FROM_CLIENT ? 0 : 1;
  // Sequence numbers wrap: "before" is a signed difference.
  return (flow.dropped & (1u << side)) != 0 &&
         static_cast<std::int32_t>(inspection.tcp_seq - flow.dropped_end[side]) < 0;
}

Inspection FlowInspector::inspect(const PacketMeta& meta, const PacketView& view,
                                  std::uint64_t packet_id, Clock::time_point now) noexcept {
  Inspection result;
  if (!tracking()) return result;
  now_ = now;
  FlowTable::Lookup found;
  try {
    found = table_.lookup(view, meta.ct_state, now);
  } catch (...) {  // out of memory: decide without flow state
    return result;
  }
  Flow& flow = *found.flow;
  result.flow = &flow;
  if (found.created) {
    std::shared_ptr<const Plugin> plugin;
    if (found.expectation) {
      plugin = found.expectation->plugin;
      if (const Flow* parent = table_.find(found.expectation->parent_key);
          parent != nullptr && parent->id == found.expectation->parent_id) {
        flow.inherited = parent->last_verdict;
      }
    } else {
      plugin = plugins_->for_flow(view.protocol, FlowTable::tuple_of(flow).server_port);
    }
    if (plugin) attach_plugin(flow, std::move(plugin));
  }
  result.inherited = flow.inherited;
  result.state = state_of(flow, view);
  result.direction = found.direction;
  if (view.protocol == IPPROTO_TCP) {
    result.tcp_seq = tcp_sequence(view);
    result.tcp_data =
        view.ip_length > view.payload_offset ? view.ip_length - view.payload_offset : 0;
  }
  if (!flow.plugin) return result;

  PluginFlow& pf = *flow.plugin;
  const auto l4 = view.payload();
  pktb_packet packet{};
  packet.data = view.bytes.data();
  packet.len = view.bytes.size();
  packet.l4_data = l4.empty() ? nullptr : l4.data();
  packet.l4_len = l4.size();
  packet.tcp_seq = tcp_sequence(view);
  packet.tcp_flags = view.tcp_flags;
  packet.direction = static_cast<std::uint8_t>(found.direction);
  packet.mark = meta.mark;
  packet.id = packet_id;
  packet.in_ifindex = meta.in_ifindex;
  packet.out_ifindex = meta.out_ifindex;
  packet.timestamp_ns =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  current_ = &flow;
  ++plugin_calls_;
  result.plugin = pf.plugin.get();
  result.decision = pf.plugin->call_on_packet(*this, pf.abi, packet);
  current_ = nullptr;
  if (result.decision.action == PKTB_ACCEPT_MODIFIED) {
    replacement_.assign(result.decision.payload,
                        result.decision.payload + result.decision.payload_len);
    result.decision.payload = nullptr;  // the plugin's buffer is not ours to keep
    result.replacement = replacement_;
  }
  return result;
}

void FlowInspector::attach_plugin(Flow& flow, std::shared_ptr<const Plugin> plugin) {
  auto pf = std::make_unique<PluginFlow>();
  const std::size_t state_size = plugin->descriptor().flow_state_size;
  if (state_size > 0) pf->state = std::make_unique<std::uint8_t[]>(state_size);  // zeroed
  pf->abi.tuple = FlowTable::tuple_of(flow);
  pf->abi.state = pf->state.get();
  pf->abi.id = flow.id;
  pf->abi.parent_id = flow.parent_id;
  pf->plugin = std::move(plugin);
  flow.plugin = std::move(pf);
  current_ = &flow;
  const bool wanted = flow.plugin->plugin->call_flow_open(*this, flow.plugin->abi);
  current_ = nullptr;
  if (!wanted) {
    ++ignored_flows_;
    flow.plugin.reset();
  }
}

void FlowInspector::close(Flow& flow) noexcept {
  if (!flow.plugin) return;
  cancel_timer(flow);
  flow.plugin->plugin->call_flow_close(flow.plugin->abi);
  flow.plugin.reset();
}

void FlowInspector::cancel_timer(Flow& flow) noexcept {
  if (!flow.plugin->timer) return;
  const auto [first, last] = timers_.equal_range(*flow.plugin->timer);
  for (auto it = first; it != last; ++it) {
    if (it->second == *flow.key) {
      timers_.erase(it);
      break;
    }
  }
  flow.plugin->timer.reset();
}

void FlowInspector::maintain(Clock::time_point now) noexcept {
  now_ = now;
  while (!timers_.empty() && timers_.begin()->first <= now) {
    const FlowKey key = timers_.begin()->second;
    timers_.erase(timers_.begin());
    Flow* flow = table_.find(key);
    if (flow == nullptr || !flow->plugin) continue;
    flow->plugin->timer.reset();
    current_ = flow;
    flow->plugin->plugin->call_on_timer(*this, flow->plugin->abi);
    current_ = nullptr;
  }
  table_.expire(now);
}

void FlowInspector::fire_timers(const Plugin& plugin, Clock::time_point now) noexcept {
  for (auto it = timers_.upper_bound(now); it != timers_.end();) {
    Flow* flow = table_.find(it->second);
    if (flow == nullptr || !flow->plugin || flow->plugin->plugin.get() != &plugin) {
      ++it;
      continue;
    }
    // Due now: keyed again at `now`, before every timer still to come.
    auto node = timers_.extract(it++);
    node.key() = now;
    flow->plugin->timer = now;
    timers_.insert(std::move(node));
  }
  maintain(now);
}

std::optional<Clock::time_point> FlowInspector::next_timer() const noexcept {
  if (timers_.empty()) return std::nullopt;
  return timers_.begin()->first;
}

void FlowInspector::clear() noexcept {
  table_.clear();
}

InspectorCounters FlowInspector::counters() const noexcept {
  return {table_.counters(), table_.size(),  table_.expectations(),
          plugin_calls_,     ignored_flows_, names_refused_};
}

int FlowInspector::set_field(const Plugin& plugin, std::string_view field, std::string_view value) {
  if (current_ == nullptr || !current_->plugin) return -1;
  auto& fields = current_->plugin->fields;
  try {
    std::string name = plugin.name() + "." + std::string(field);
    for (auto& [key, existing] : fields) {
      if (key == name) {
        existing.assign(value);
        return 0;
      }
    }
    if (fields.size() >= max_fields_per_flow) return -1;
    fields.emplace_back(std::move(name), std::string(value));
    return 0;
  } catch (...) {
    return -1;
  }
}

int FlowInspector::expect(const Plugin& /*plugin*/, const pktb_tuple& pattern,
                          std::uint32_t wildcards, std::uint32_t timeout_ms) {
  if (current_ == nullptr || (pattern.family != 4 && pattern.family != 6)) return -1;
  const std::uint32_t ms =
      timeout_ms == 0 ? default_expectation_ms : std::min(timeout_ms, max_expectation_ms);
  Expectation expectation;
  expectation.pattern = pattern;
  expectation.wildcards = wildcards;
  expectation.deadline = now_ + std::chrono::milliseconds(ms);
  expectation.parent_id = current_->id;
  expectation.parent_key = *current_->key;
  expectation.plugin = current_->plugin->plugin;
  try {
    return table_.expect(std::move(expectation)) ? 0 : -1;
  } catch (...) {
    return -1;
  }
}

std::vector<std::string> FlowInspector::names_of(const IpAddress& address,
                                                 Clock::time_point now) const {
  return names_->lookup(address, now);
}

int FlowInspector::remember_name(const Plugin& /*plugin*/, const IpAddress& address,
                                 std::string_view name, std::uint32_t ttl_s) {
  try {
    if (!names_->remember(address, name, ttl_s, now_)) ++names_refused_;
    return 0;
  } catch (...) {
    return -1;
  }
}

int FlowInspector::release(const Plugin& plugin, std::uint64_t packet_id,
                           const pktb_decision& decision) {
  if (!plugin.check(decision)) return -1;  // the held packet keeps waiting for its deadline
  return release_ ? release_(packet_id, decision) : -1;
}

int FlowInspector::set_timer(const Plugin& /*plugin*/, std::uint32_t ms) {
  if (current_ == nullptr || !current_->plugin) return -1;
  PluginFlow& pf = *current_->plugin;
  try {
    cancel_timer(*current_);
    pf.timer = now_ + std::chrono::milliseconds(ms);
    timers_.emplace(*pf.timer, *current_->key);
    return 0;
  } catch (...) {
    return -1;
  }
}

}  // namespace pktbroker
