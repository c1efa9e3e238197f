#include "broker/stats_report.hpp"

#include <fmt/format.h>

namespace pktbroker {

std::vector<std::string> format_stats(const QueueSnapshot& s) {
  const QueueCounters& c = s.counters;
  const KernelQueueStats kernel = s.kernel.value_or(KernelQueueStats{});
  std::vector<std::string> lines;
  lines.push_back(fmt::format(
      "stats queue={} packets={} bytes={} accepted={} dropped={} repeated={} default={} "
      "malformed={} netlink_errors={} kernel_queue_total={} kernel_queue_dropped={} "
      "kernel_user_dropped={} outstanding={} verdict_sends={} verdict_messages={} "
      "verdict_batches={} batched_packets={} delivered={} observed={} client_datagrams={} "
      "client_verdicts={} "
      "passes={} rejected_verdicts={} timeouts={} disconnect_fallbacks={} overflows={} "
      "observer_overflows={}",
      s.queue, c.received.packets, c.received.bytes, c.accepted, c.dropped, c.repeated,
      c.default_verdicts, c.malformed, c.netlink_error_total(), kernel.queue_total,
      kernel.queue_dropped, kernel.user_dropped, s.outstanding, s.writer.sends, s.writer.messages,
      s.writer.batch_messages, s.writer.batched_packets, c.delivered, c.observed,
      c.client_datagrams, c.client_verdicts, c.passes, c.rejected_verdicts, c.timeouts,
      c.disconnect_fallbacks, c.overflows, c.observer_overflows));
  if (s.flows.flows.created != 0) {
    const InspectorCounters& f = s.flows;
    lines.push_back(fmt::format(
        "stats queue={} flows={} flows_created={} flows_expired={} flows_evicted={} "
        "flows_ignored={} plugin_calls={} plugin_verdicts={} expectations={} "
        "expectations_matched={} expectations_expired={} expectations_refused={} "
        "expected_flow_packets={} redropped={} held={} hold_overflows={} hold_timeouts={} "
        "plugin_releases={}",
        s.queue, f.active_flows, f.flows.created, f.flows.expired, f.flows.evicted, f.ignored_flows,
        f.plugin_calls, c.plugin_verdicts, f.pending_expectations, f.flows.expectations_matched,
        f.flows.expectations_expired, f.flows.expectations_refused, c.expected_flows, c.redropped,
        c.held, c.hold_overflows, c.hold_timeouts, c.plugin_releases));
  }
  for (const RuleStats& rule : s.rules) {
    lines.push_back(fmt::format("stats queue={} rule={} packets={} bytes={}", s.queue, rule.name,
                                rule.counters.packets, rule.counters.bytes));
  }
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
  const KernelQueueStats kernel = s.kernel.value_or(KernelQueueStats{});
  add("packets", c.received.packets);
  add("bytes", c.received.bytes);
  add("accepted", c.accepted);
  add("dropped", c.dropped);
  add("repeated", c.repeated);
  add("default", c.default_verdicts);
  add("malformed", c.malformed);
  add("netlink_errors", c.netlink_error_total());
  add("kernel_queue_total", kernel.queue_total);
  add("kernel_queue_dropped", kernel.queue_dropped);
  add("kernel_user_dropped", kernel.user_dropped);
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
  if (s.flows.flows.created != 0) {
    const InspectorCounters& f = s.flows;
    add("flows", f.active_flows);
    add("flows_created", f.flows.created);
    add("flows_expired", f.flows.expired);
    add("flows_evicted", f.flows.evicted);
    add("flows_ignored", f.ignored_flows);
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
  for (const RuleStats& rule : s.rules) {
    entries.push_back({"rule " + rule.name, "packets", rule.counters.packets});
    entries.push_back({"rule " + rule.name, "bytes", rule.counters.bytes});
  }
}

}  // namespace pktbroker
