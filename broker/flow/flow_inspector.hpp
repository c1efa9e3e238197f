// Runs the plugins of one queue: finds each packet's flow, hands it to the flow's plugin, and
// gives the plugin its host services (fields, expectations, releases, timers).
#pragma once

#include "broker/flow/flow_table.hpp"
#include "broker/flow/name_cache.hpp"
#include "plugins/host/plugin_set.hpp"

#include <functional>
#include <map>
#include <memory>
#include <optional>

namespace pktbroker {

/// What inspecting one packet produced.
struct Inspection {
  Flow* flow = nullptr;              ///< null when no plugin is loaded
  const Plugin* plugin = nullptr;    ///< the flow's plugin, if any
  pktb_decision decision{};          ///< the plugin's (checked) decision; pass without one
  std::optional<Verdict> inherited;  ///< an expected flow's parent verdict
  /// The connection state by the flow table's own reckoning, for kernels that send none.
  CtState state = CtState::none;
  pktb_direction direction = PKTB_FROM_CLIENT;
  std::uint32_t tcp_seq = 0;   ///< TCP: the first sequence number of the segment's data
  std::uint32_t tcp_data = 0;  ///< TCP: bytes of data the segment carries
  std::span<const std::uint8_t> replacement;  ///< accept-modified payload, valid until next call
};

struct InspectorCounters {
  FlowTable::Counters flows;
  std::size_t active_flows = 0;
  std::size_t pending_expectations = 0;
  std::uint64_t plugin_calls = 0;
  std::uint64_t ignored_flows = 0;  ///< flow_open declined
  std::uint64_t names_refused = 0;  ///< DNS names not kept: the address had max_names live
};

/// Lives on its queue's executor.
class FlowInspector final : private CallSink {
 public:
  /// A plugin decided a packet it held (pktb_host::release): returns 0, or -1 if not held.
  using ReleaseHandler = std::function<int(std::uint64_t packet_id, const pktb_decision&)>;

  /// `names` (shared by the queues) receives what plugins learn from DNS answers.
  FlowInspector(std::shared_ptr<const PluginSet> plugins, FlowLimits limits, ReleaseHandler release,
                std::shared_ptr<NameCache> names = nullptr);
  ~FlowInspector() override;

  [[nodiscard]] bool active() const noexcept { return !plugins_->empty(); }
  /// Plugins are loaded, or flows of earlier ones are still open: packets need inspecting.
  [[nodiscard]] bool tracking() const noexcept { return active() || table_.size() != 0; }
  /// Replaces the plugins for new flows; flows already open keep theirs.
  void set_plugins(std::shared_ptr<const PluginSet> plugins);

  /// Looks up the packet's flow and runs its plugin. `packet_id` is the handle a plugin may
  /// later release (pktb_packet::id).
  Inspection inspect(const PacketMeta& meta, const PacketView& view, std::uint64_t packet_id,
                     Clock::time_point now) noexcept;

  /// Records the verdict a flow's packet left with (expected flows inherit it).
  static void record(Flow* flow, const Verdict& verdict) noexcept {
    if (flow != nullptr) flow->last_verdict = verdict;
  }

  /// A rule dropped this TCP data: the same bytes sent again must be dropped again, whatever
  /// the flow's plugin has published since (a request after it must not carry it through).
  void remember_drop(const Inspection& inspection) const noexcept;
  /// Whether the segment carries bytes a rule of this policy dropped before (a retransmission).
  [[nodiscard]] bool dropped_before(const Inspection& inspection) const noexcept;
  /// A new policy judges every packet anew: drops remembered under the old one are forgotten.
  void policy_changed() noexcept { ++policy_generation_; }

  /// Idle flows, stale expectations, due plugin timers.
  void maintain(Clock::time_point now) noexcept;
  [[nodiscard]] std::optional<Clock::time_point> next_timer() const noexcept;
  /// The timers set by `plugin`'s flows fire now (pktb_host::wake).
  void fire_timers(const Plugin& plugin, Clock::time_point now) noexcept;
  /// Closes every flow (shutdown).
  void clear() noexcept;

  [[nodiscard]] InspectorCounters counters() const noexcept;
  /// The live names DNS gave `address` out for.
  [[nodiscard]] std::vector<std::string> names_of(const IpAddress& address,
                                                  Clock::time_point now) const;

 private:
  int set_field(const Plugin& plugin, std::string_view field, std::string_view value) override;
  int expect(const Plugin& plugin, const pktb_tuple& pattern, std::uint32_t wildcards,
             std::uint32_t timeout_ms) override;
  int release(const Plugin& plugin, std::uint64_t packet_id,
              const pktb_decision& decision) override;
  int set_timer(const Plugin& plugin, std::uint32_t ms) override;
  int remember_name(const Plugin& plugin, const IpAddress& address, std::string_view name,
                    std::uint32_t ttl_s) override;

  void attach_plugin(Flow& flow, std::shared_ptr<const Plugin> plugin);
  void close(Flow& flow) noexcept;
  void cancel_timer(Flow& flow) noexcept;

  std::shared_ptr<const PluginSet> plugins_;
  std::uint16_t policy_generation_ = 0;  ///< Flow::drop_generation of drops still remembered
  FlowTable table_;
  ReleaseHandler release_;
  std::shared_ptr<NameCache> names_;
  std::multimap<Clock::time_point, FlowKey> timers_;
  Flow* current_ = nullptr;  ///< the flow whose hook is running
  Clock::time_point now_{};
  std::vector<std::uint8_t> replacement_;
  std::uint64_t plugin_calls_ = 0;
  std::uint64_t ignored_flows_ = 0;
  std::uint64_t names_refused_ = 0;
};

}  // namespace pktbroker
