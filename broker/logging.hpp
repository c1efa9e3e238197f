// Process-wide spdlog set-up: concise lines on stderr, or syslog; and a rate limit for lines a
// client can cause at will.
#pragma once

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

namespace pktbroker {

void setup_logging(bool use_syslog, spdlog::level::level_enum level);

/// The longest prefix of `text` of at most `limit` bytes that does not split a UTF-8 sequence.
std::size_t utf8_prefix(std::string_view text, std::size_t limit) noexcept;

/// `text` with control bytes as \xNN: what a process calls itself cannot forge log lines.
std::string printable(std::string_view text);

/// Lets at most `per_second` lines through each second (thread-safe). Lines a client can
/// cause at will (connections, sessions, refusals) go through one, so a client reconnecting
/// in a loop cannot flood the log.
class LogLimiter {
 public:
  explicit LogLimiter(unsigned per_second) noexcept : per_second_(per_second) {}

  /// Whether a line may be written now; `suppressed` is set to the lines held back since the
  /// last one written.
  bool allow(std::uint64_t& suppressed) noexcept;

 private:
  const unsigned per_second_;
  std::mutex mutex_;
  std::chrono::steady_clock::time_point window_{};
  unsigned written_ = 0;
  std::uint64_t suppressed_ = 0;
};

/// The limiter of client-caused lines: 100 a second.
LogLimiter& client_log_limiter() noexcept;

/// spdlog::log through client_log_limiter(); the first line after a quiet spell says how many
/// were held back.
template <typename... Args>
void log_client_event(spdlog::level::level_enum level, fmt::format_string<Args...> format,
                      Args&&... args) {
  if (!spdlog::should_log(level)) return;
  std::uint64_t suppressed = 0;
  if (!client_log_limiter().allow(suppressed)) return;
  if (suppressed != 0) {
    spdlog::warn("clients: {} log lines about clients held back (more than 100 a second)",
                 suppressed);
  }
  spdlog::log(level, format, std::forward<Args>(args)...);
}

}  // namespace pktbroker
