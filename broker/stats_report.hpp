// Renders queue snapshots as `stats key=value ...` log lines (one fact per line, grep-friendly).
#pragma once

#include "broker/broker_queue.hpp"

#include <string>
#include <vector>

namespace pktbroker {

std::vector<std::string> format_stats(const QueueSnapshot& snapshot);

}  // namespace pktbroker
