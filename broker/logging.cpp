#include "broker/logging.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>

#include <syslog.h>

namespace pktbroker {

void setup_logging(bool use_syslog, spdlog::level::level_enum level) {
  std::shared_ptr<spdlog::logger> logger;
  if (use_syslog) {
    logger = std::make_shared<spdlog::logger>(
        "pktbrokerd",
        std::make_shared<spdlog::sinks::syslog_sink_mt>("pktbrokerd", LOG_PID, LOG_DAEMON, true));
    logger->set_pattern("%v");
  } else {
    logger = std::make_shared<spdlog::logger>("pktbrokerd",
                                              std::make_shared<spdlog::sinks::stderr_sink_mt>());
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %l %v");
  }
  logger->set_level(level);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
}

}  // namespace pktbroker
