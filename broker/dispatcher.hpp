// Decides each packet of one queue: parse, match the policy, count.
#pragma once

#include "broker/counters.hpp"
#include "broker/packet_meta.hpp"
#include "broker/policy/policy.hpp"
#include "broker/verdict.hpp"

#include <memory>
#include <string>
#include <vector>

namespace pktbroker {

struct RuleStats {
  std::string name;
  PacketCounters counters;
};

/// Lives on its queue's executor; never throws on the packet path.
class Dispatcher {
 public:
  Dispatcher(std::uint16_t queue, std::shared_ptr<const Policy> policy);

  /// The verdict for one packet.
  [[nodiscard]] Verdict decide(const PacketMeta& meta) noexcept;

  /// Replaces the policy for the next packet. Rule counters carry over by rule name.
  void set_policy(std::shared_ptr<const Policy> policy);

  [[nodiscard]] const QueueCounters& counters() const noexcept { return counters_; }
  [[nodiscard]] QueueCounters& counters() noexcept { return counters_; }
  [[nodiscard]] const std::vector<RuleStats>& rule_stats() const noexcept { return rules_; }

 private:
  void count(const Verdict& verdict) noexcept;
  void log_verdict(const PacketMeta& meta, const PacketView* view, std::string_view rule,
                   const Verdict& verdict) const;

  std::uint16_t queue_;
  std::shared_ptr<const Policy> policy_;
  QueueCounters counters_;
  std::vector<RuleStats> rules_;  // parallel to policy_->rules()
};

}  // namespace pktbroker
