// The flows of one queue: both directions of a 5-tuple in one entry, idle expiry by protocol
// and TCP state, a capacity limit, and expectations (related flows announced by plugins).
#pragma once

#include "broker/packet_meta.hpp"
#include "broker/verdict.hpp"
#include "broker/verdict_tracker.hpp"
#include "pktbroker/packet_view.hpp"
#include "pktbroker/plugin.h"
#include "plugins/host/tuple_match.hpp"

#include <boost/intrusive/list.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace pktbroker {

class Plugin;

/// Both directions of a flow give the same key: the lower (address, port) endpoint comes first.
struct FlowKey {
  std::array<std::uint8_t, 16> addr_lo{};
  std::array<std::uint8_t, 16> addr_hi{};
  std::uint16_t port_lo = 0;
  std::uint16_t port_hi = 0;
  std::uint8_t protocol = 0;
  std::uint8_t family = 0;

  friend bool operator==(const FlowKey&, const FlowKey&) = default;
};

struct FlowKeyHash {
  std::size_t operator()(const FlowKey& key) const noexcept;
};

/// Idle timeouts; a flow's class follows its protocol and, for TCP, what it has seen.
enum class FlowClass : std::uint8_t { udp, tcp_opening, tcp_established, tcp_closing, other };
inline constexpr std::size_t flow_class_count = 5;

struct FlowLimits {
  std::size_t capacity = 65536;  ///< flows; the least recently seen are evicted beyond it
  std::array<std::chrono::seconds, flow_class_count> idle{
      std::chrono::seconds(30), std::chrono::seconds(30), std::chrono::seconds(300),
      std::chrono::seconds(10), std::chrono::seconds(30)};
  std::size_t max_expectations = 256;
};

/// What a plugin keeps for a flow it handles (allocated only for such flows).
struct PluginFlow {
  std::shared_ptr<const Plugin> plugin;
  pktb_flow abi{};  ///< what the plugin sees; abi.state points into `state`
  std::unique_ptr<std::uint8_t[]> state;
  std::vector<std::pair<std::string, std::string>> fields;  ///< "dns.qname" -> value
  std::optional<Clock::time_point> timer;
};

struct Flow {
  boost::intrusive::list_member_hook<> idle_hook;  ///< position in its class's idle list
  const FlowKey* key = nullptr;                    ///< the table's key of this entry
  std::uint64_t id = 0;
  std::uint64_t parent_id = 0;
  Clock::time_point last_seen;
  FlowClass idle_class = FlowClass::other;
  bool client_is_lo = true;  ///< the first packet came from the key's lower endpoint
  std::uint8_t fins = 0;     ///< bit per direction that sent a FIN
  bool seen_from_server = false;
  std::uint8_t dropped = 0;           ///< bit per direction: a rule dropped TCP data
  std::uint16_t drop_generation = 0;  ///< the policy those drops were decided under
  std::uint32_t dropped_end[2] = {};  ///< per direction: the end of the last data dropped
  std::optional<Verdict> inherited;   ///< an expected flow takes its parent's verdict
  std::optional<Verdict> last_verdict;
  std::unique_ptr<PluginFlow> plugin;
};

/// A related flow a plugin announced: the next new flow matching `pattern` becomes its child.
struct Expectation {
  pktb_tuple pattern{};
  std::uint32_t wildcards = 0;  ///< PKTB_ANY_* bits
  Clock::time_point deadline;
  std::uint64_t parent_id = 0;
  FlowKey parent_key;
  std::shared_ptr<const Plugin> plugin;
};

/// Lives on its queue's executor: no locks.
class FlowTable {
 public:
  struct Counters {
    std::uint64_t created = 0;
    std::uint64_t expired = 0;  ///< idle
    std::uint64_t evicted = 0;  ///< for room, at capacity
    std::uint64_t expectations_added = 0;
    std::uint64_t expectations_matched = 0;
    std::uint64_t expectations_expired = 0;
    std::uint64_t expectations_refused = 0;  ///< over max_expectations
  };
  struct Lookup {
    Flow* flow = nullptr;
    pktb_direction direction = PKTB_FROM_CLIENT;
    bool created = false;
    std::optional<Expectation> expectation;  ///< the one a new flow fulfilled
  };
  /// Called for every flow that leaves the table (idle, evicted, cleared), before it goes.
  using CloseHandler = std::function<void(Flow&)>;

  explicit FlowTable(FlowLimits limits = {}, CloseHandler on_close = {});
  ~FlowTable();
  FlowTable(const FlowTable&) = delete;
  FlowTable& operator=(const FlowTable&) = delete;

  /// The packet's flow, created when new (evicting the least recently seen at capacity).
  /// `view` must have parsed; packets without ports use port 0.
  Lookup lookup(const PacketView& view, CtState ct_state, Clock::time_point now);

  /// Announces a related flow; false (counted) when too many are pending.
  bool expect(Expectation expectation);

  /// Removes idle flows and stale expectations.
  void expire(Clock::time_point now);
  /// Removes every flow (shutdown, or a plugin set being replaced).
  void clear();

  [[nodiscard]] Flow* find(const FlowKey& key) noexcept;
  [[nodiscard]] std::size_t size() const noexcept { return flows_.size(); }
  [[nodiscard]] std::size_t expectations() const noexcept { return expectations_.size(); }
  [[nodiscard]] const Counters& counters() const noexcept { return counters_; }
  /// The tuple of a flow as client -> server.
  [[nodiscard]] static pktb_tuple tuple_of(const Flow& flow) noexcept;

 private:
  using IdleList = boost::intrusive::list<
      Flow,
      boost::intrusive::member_hook<Flow, boost::intrusive::list_member_hook<>, &Flow::idle_hook>>;

  void touch(Flow& flow, const PacketView& view, pktb_direction direction, CtState ct_state,
             Clock::time_point now);
  void remove(Flow& flow);
  std::optional<Expectation> take_expectation(const pktb_tuple& tuple, Clock::time_point now);

  FlowLimits limits_;
  CloseHandler on_close_;
  std::unordered_map<FlowKey, Flow, FlowKeyHash> flows_;
  std::array<IdleList, flow_class_count> idle_;  ///< each in last-seen order, oldest first
  std::vector<Expectation> expectations_;
  std::uint64_t next_id_ = 1;
  Counters counters_;
};

}  // namespace pktbroker
