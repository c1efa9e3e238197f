#include "broker/stats_report.hpp"

#include <fmt/format.h>

namespace pktbroker {

// The log lines are the reply's entries, one line per scope: the queue's counters (its flow
// counters on a line of their own), then one line per rule.
std::vector<std::string> format_stats(const QueueSnapshot& s) {
  std::vector<proto::StatsEntry> entries;
  add_stats_entries(s, entries);
  std::vector<std::string> lines;
  const std::string head = fmt::format("stats queue={}", s.queue);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const proto::StatsEntry& e = entries[i];
    if (i == 0 || e.scope != entries[i - 1].scope || e.name == "flows") {
      lines.push_back(
          e.scope.starts_with("rule ") ? fmt::format("{} rule={}", head, e.scope.substr(5)) : head);
    }
    lines.back() += fmt::format(" {}={}", e.name, e.value);
  }
  const QueueCounters& c = s.counters;
  for (std::size_t i = 0; i < c.malformed_by_reason.size(); ++i) {
    if (c.malformed_by_reason[i] == 0) continue;
    lines.push_back(fmt::format("stats queue={} malformed={} count={}", s.queue,
                                to_string(static_cast<ParseError>(i)), c.malformed_by_reason[i]));
  }
  for (std::size_t i = 0; i < c.netlink_errors.size(); ++i) {
    if (c.netlink_errors[i] == 0) continue;
    lines.push_back(fmt::format("stats queue={} netlink_error={} count={}", s.queue,
                                to_string(static_cast<NetlinkError>(i)), c.netlink_errors[i]));
  }
  return lines;
}

void add_stats_entries(const QueueSnapshot& s, std::vector<proto::StatsEntry>& entries) {
  const std::string scope = "queue " + std::to_string(s.queue);
  const auto add = [&](const char* name, std::uint64_t value) {
    entries.push_back({scope, name, value});
  };
  const QueueCounters& c = s.counters;
  add("packets", c.received.packets);
  add("bytes", c.received.bytes);
  add("accepted", c.accepted);
  add("dropped", c.dropped);
  add("repeated", c.repeated);
  add("default", c.default_verdicts);
  add("malformed", c.malformed);
  add("netlink_errors", c.netlink_error_total());
  // Only root may read the kernel's queue table: without it these are unknown, not 0.
  if (s.kernel) {
    add("kernel_queue_total", s.kernel->queue_total);
    add("kernel_queue_dropped", s.kernel->queue_dropped);
    add("kernel_user_dropped", s.kernel->user_dropped);
  }
  add("outstanding", s.outstanding);
  add("verdict_sends", s.writer.sends);
  add("verdict_messages", s.writer.messages);
  add("verdict_batches", s.writer.batch_messages);
  add("batched_packets", s.writer.batched_packets);
  add("delivered", c.delivered);
  add("observed", c.observed);
  add("client_datagrams", c.client_datagrams);
  add("client_verdicts", c.client_verdicts);
  add("passes", c.passes);
  add("rejected_verdicts", c.rejected_verdicts);
  add("timeouts", c.timeouts);
  add("disconnect_fallbacks", c.disconnect_fallbacks);
  add("overflows", c.overflows);
  add("observer_overflows", c.observer_overflows);
  add("outstanding_overflows", c.outstanding_overflows);
  add("fallbacks_outside_grant", c.fallbacks_outside_grant);
  if (s.flows.flows.created != 0) {
    const InspectorCounters& f = s.flows;
    add("flows", f.active_flows);
    add("flows_created", f.flows.created);
    add("flows_expired", f.flows.expired);
    add("flows_evicted", f.flows.evicted);
    add("flows_ignored", f.ignored_flows);
    add("dns_names_refused", f.names_refused);
    add("plugin_calls", f.plugin_calls);
    add("plugin_verdicts", c.plugin_verdicts);
    add("expectations", f.pending_expectations);
    add("expectations_matched", f.flows.expectations_matched);
    add("expectations_expired", f.flows.expectations_expired);
    add("expectations_refused", f.flows.expectations_refused);
    add("expected_flow_packets", c.expected_flows);
    add("redropped", c.redropped);
    add("held", c.held);
    add("hold_overflows", c.hold_overflows);
    add("hold_timeouts", c.hold_timeouts);
    add("plugin_releases", c.plugin_releases);
  }
  if (c.identity_known + c.identity_waits + c.identity_overflows != 0) {
    add("identity_known", c.identity_known);
    add("identity_waits", c.identity_waits);
    add("identity_timeouts", c.identity_timeouts);
    add("identity_unknown", c.identity_unknown);
    add("identity_overflows", c.identity_overflows);
  }
  if (c.ask_waits + c.ask_overflows + c.answer_rules != 0) {
    add("ask_waits", c.ask_waits);
    add("ask_answered", c.ask_answered);
    add("ask_fallbacks", c.ask_fallbacks);
    add("ask_overflows", c.ask_overflows);
    add("answer_rules", c.answer_rules);
  }
  for (const RuleStats& rule : s.rules) {
    entries.push_back({"rule " + rule.name, "packets", rule.counters.packets});
    entries.push_back({"rule " + rule.name, "bytes", rule.counters.bytes});
  }
}

}  // namespace pktbroker
