#include "broker/flow/flow_table.hpp"

#include <algorithm>
#include <cstring>

#include <netinet/in.h>

namespace pktbroker {
namespace {

constexpr std::uint8_t tcp_fin = 0x01;
constexpr std::uint8_t tcp_syn = 0x02;
constexpr std::uint8_t tcp_rst = 0x04;
constexpr std::uint8_t tcp_ack = 0x10;

std::size_t index_of(FlowClass c) {
  return static_cast<std::size_t>(c);
}

}  // namespace

std::size_t FlowKeyHash::operator()(const FlowKey& key) const noexcept {
  std::uint64_t hash = 1469598103934665603ULL;
  const auto mix = [&hash](std::uint64_t value) { hash = (hash ^ value) * 1099511628211ULL; };
  std::uint64_t words[4];
  std::memcpy(words, key.addr_lo.data(), 16);
  std::memcpy(words + 2, key.addr_hi.data(), 16);
  for (const std::uint64_t word : words) mix(word);
  mix((std::uint64_t{key.port_lo} << 32) | (std::uint64_t{key.port_hi} << 16) |
      (std::uint64_t{key.protocol} << 8) | key.family);
  return static_cast<std::size_t>(hash ^ (hash >> 29));
}

FlowTable::FlowTable(FlowLimits limits, CloseHandler on_close)
    : limits_(limits), on_close_(std::move(on_close)) {
  flows_.reserve(std::min<std::size_t>(limits_.capacity, 4096));
}

FlowTable::~FlowTable() {
  clear();
}

pktb_tuple FlowTable::tuple_of(const Flow& flow) noexcept {
  pktb_tuple tuple{};
  const FlowKey& key = *flow.key;
  tuple.family = key.family == 4 ? 4 : 6;
  tuple.protocol = key.protocol;
  const bool lo = flow.client_is_lo;
  std::memcpy(tuple.client_addr, (lo ? key.addr_lo : key.addr_hi).data(), 16);
  std::memcpy(tuple.server_addr, (lo ? key.addr_hi : key.addr_lo).data(), 16);
  tuple.client_port = lo ? key.port_lo : key.port_hi;
  tuple.server_port = lo ? key.port_hi : key.port_lo;
  return tuple;
}

FlowTable::Lookup FlowTable::lookup(const PacketView& view, CtState ct_state,
                                    Clock::time_point now) {
  FlowKey key;
  key.protocol = view.protocol;
  key.family = view.ip_version;
  const std::uint16_t src_port = view.has_ports ? view.src_port : 0;
  const std::uint16_t dst_port = view.has_ports ? view.dst_port : 0;
  const bool src_is_lo = std::tie(view.src.bytes, src_port) <= std::tie(view.dst.bytes, dst_port);
  key.addr_lo = src_is_lo ? view.src.bytes : view.dst.bytes;
  key.addr_hi = src_is_lo ? view.dst.bytes : view.src.bytes;
  key.port_lo = src_is_lo ? src_port : dst_port;
  key.port_hi = src_is_lo ? dst_port : src_port;

  Lookup result;
  if (const auto found = flows_.find(key); found != flows_.end()) {
    Flow& flow = found->second;
    result.flow = &flow;
    result.direction = flow.client_is_lo == src_is_lo ? PKTB_FROM_CLIENT : PKTB_FROM_SERVER;
    touch(flow, view, result.direction, ct_state, now);
    return result;
  }

  if (flows_.size() >= limits_.capacity) {
    IdleList* oldest = nullptr;
    for (IdleList& list : idle_) {
      if (!list.empty() &&
          (oldest == nullptr || list.front().last_seen < oldest->front().last_seen))
        oldest = &list;
    }
    if (oldest != nullptr) {
      ++counters_.evicted;
      remove(oldest->front());
    }
  }
  const auto [it, inserted] = flows_.try_emplace(key);
  Flow& flow = it->second;
  flow.key = &it->first;
  flow.id = next_id_++;
  flow.client_is_lo = src_is_lo;
  flow.last_seen = now;
  ++counters_.created;
  result.flow = &flow;
  result.created = true;
  result.expectation = take_expectation(tuple_of(flow), now);
  if (result.expectation) flow.parent_id = result.expectation->parent_id;
  flow.idle_class = view.protocol == IPPROTO_UDP   ? FlowClass::udp
                    : view.protocol == IPPROTO_TCP ? FlowClass::tcp_opening
                                                   : FlowClass::other;
  idle_[index_of(flow.idle_class)].push_back(flow);
  touch(flow, view, PKTB_FROM_CLIENT, ct_state, now);
  return result;
}

// Moves the flow to the back of its (possibly new) class's idle list.
void FlowTable::touch(Flow& flow, const PacketView& view, pktb_direction direction,
                      CtState ct_state, Clock::time_point now) {
  flow.last_seen = now;
  FlowClass next = flow.idle_class;
  if (direction == PKTB_FROM_SERVER) flow.seen_from_server = true;
  if (view.protocol == IPPROTO_TCP) {
    if ((view.tcp_flags & tcp_fin) != 0) flow.fins |= 1U << direction;
    if ((view.tcp_flags & tcp_rst) != 0 || flow.fins == 3) {
      next = FlowClass::tcp_closing;
    } else if (next == FlowClass::tcp_opening &&
               (ct_state == CtState::established ||
                (flow.seen_from_server && (view.tcp_flags & (tcp_syn | tcp_ack)) == tcp_ack))) {
      next = FlowClass::tcp_established;
    }
  }
  IdleList& from = idle_[index_of(flow.idle_class)];
  from.erase(from.iterator_to(flow));
  flow.idle_class = next;
  idle_[index_of(next)].push_back(flow);
}

bool FlowTable::expect(Expectation expectation) {
  if (expectations_.size() >= limits_.max_expectations) {
    ++counters_.expectations_refused;
    return false;
  }
  ++counters_.expectations_added;
  expectations_.push_back(std::move(expectation));
  return true;
}

std::optional<Expectation> FlowTable::take_expectation(const pktb_tuple& tuple,
                                                       Clock::time_point now) {
  for (auto it = expectations_.begin(); it != expectations_.end(); ++it) {
    if (it->deadline < now || !tuple_matches(tuple, it->pattern, it->wildcards)) continue;
    Expectation taken = std::move(*it);
    expectations_.erase(it);
    ++counters_.expectations_matched;
    return taken;
  }
  return std::nullopt;
}

void FlowTable::expire(Clock::time_point now) {
  for (std::size_t c = 0; c < flow_class_count; ++c) {
    IdleList& list = idle_[c];
    while (!list.empty() && list.front().last_seen + limits_.idle[c] <= now) {
      ++counters_.expired;
      remove(list.front());
    }
  }
  const auto stale = std::remove_if(expectations_.begin(), expectations_.end(),
                                    [now](const Expectation& e) { return e.deadline < now; });
  counters_.expectations_expired += static_cast<std::uint64_t>(expectations_.end() - stale);
  expectations_.erase(stale, expectations_.end());
}

void FlowTable::remove(Flow& flow) {
  if (on_close_) on_close_(flow);
  IdleList& list = idle_[index_of(flow.idle_class)];
  list.erase(list.iterator_to(flow));
  const FlowKey key = *flow.key;  // erase() must not read the key of the node it frees
  flows_.erase(key);
}

void FlowTable::clear() {
  for (IdleList& list : idle_) {
    while (!list.empty()) remove(list.front());
  }
  expectations_.clear();
}

Flow* FlowTable::find(const FlowKey& key) noexcept {
  const auto found = flows_.find(key);
  return found == flows_.end() ? nullptr : &found->second;
}

}  // namespace pktbroker
