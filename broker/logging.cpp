#include "broker/logging.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>

#include <syslog.h>

#include <utility>

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

bool LogLimiter::allow(std::uint64_t& suppressed) noexcept {
  const auto now = std::chrono::steady_clock::now();
  const std::lock_guard lock(mutex_);
  if (now - window_ >= std::chrono::seconds(1)) {
    window_ = now;
    written_ = 0;
  }
  if (written_ >= per_second_) {
    ++suppressed_;
    return false;
  }
  ++written_;
  suppressed = std::exchange(suppressed_, 0);
  return true;
}

LogLimiter& client_log_limiter() noexcept {
  static LogLimiter limiter(100);
  return limiter;
}

std::size_t utf8_prefix(std::string_view text, std::size_t limit) noexcept {
  if (text.size() <= limit) return text.size();
  std::size_t size = limit;
  while (size > 0 && (static_cast<unsigned char>(text[size]) & 0xc0) == 0x80) --size;
  return size;
}

std::string printable(std::string_view text) {
  std::string shown;
  shown.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f || c == '\\') {
      shown += fmt::format("\\x{:02x}", byte);
    } else {
      shown += c;
    }
  }
  return shown;
}

}  // namespace pktbroker
