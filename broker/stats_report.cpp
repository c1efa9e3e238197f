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
      c.client_datagrams, c.client_verdicts,
      c.passes, c.rejected_verdicts, c.timeouts, c.disconnect_fallbacks, c.overflows,
      c.observer_overflows));
  if (s.flows.flows.created != 0) {
    const InspectorCounters& f = s.flows;
    lines.push_back(fmt::format(
        "stats queue={} flows={} flows_created={} flows_expired={} flows_evicted={} "
        "flows_ignored={} plugin_calls={} plugin_verdicts={} expectations={} "
        "expectations_matched={} expectations_expired={} expectations_refused={} "
        "expected_flow_packets={} held={} hold_overflows={} hold_timeouts={} plugin_releases={}",
        s.queue, f.active_flows, f.flows.created, f.flows.expired, f.flows.evicted, f.ignored_flows,
        f.plugin_calls, c.plugin_verdicts, f.pending_expectations, f.flows.expectations_matched,
        f.flows.expectations_expired, f.flows.expectations_refused, c.expected_flows, c.held,
        c.hold_overflows, c.hold_timeouts, c.plugin_releases));
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

}  // namespace pktbroker
