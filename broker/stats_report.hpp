// Renders queue snapshots: as `stats key=value ...` log lines (one fact per line, grep-friendly)
// for SIGUSR1, and as the entries of pktbrokerctl's STATS_REPLY. Both list every counter.
#pragma once

#include "broker/broker_queue.hpp"
#include "pktbroker/protocol.hpp"

#include <string>
#include <vector>

namespace pktbroker {

std::vector<std::string> format_stats(const QueueSnapshot& snapshot);

/// Appends the snapshot's counters: scope "queue N" (flow counters too, once a flow was seen),
/// "rule NAME" for each rule.
void add_stats_entries(const QueueSnapshot& snapshot, std::vector<proto::StatsEntry>& entries);

}  // namespace pktbroker
