// Process-wide spdlog set-up: concise lines on stderr, or syslog.
#pragma once

#include <spdlog/common.h>

namespace pktbroker {

void setup_logging(bool use_syslog, spdlog::level::level_enum level);

}  // namespace pktbroker
