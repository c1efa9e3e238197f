#include "broker/systemd_notify.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include <systemd/sd-daemon.h>

#include <cstring>
#include <ctime>

namespace pktbroker {

SystemdNotifier::SystemdNotifier(boost::asio::io_context& io)
    : strand_(boost::asio::make_strand(io)), watchdog_(strand_) {
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0) watchdog_interval_ = std::chrono::microseconds(usec / 2);
}

void SystemdNotifier::notify(const std::string& state) {
  const int result = sd_notify(0, state.c_str());
  if (result < 0) spdlog::warn("systemd notify failed: {}", std::strerror(-result));
}

void SystemdNotifier::ready(std::string_view status) {
  notify("READY=1\nSTATUS=" + std::string(status));
  if (watchdog_interval_.count() == 0) return;
  boost::asio::post(strand_, [this] {
    if (pinging_) return;
    pinging_ = true;
    ping();
  });
}

void SystemdNotifier::reloading() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  const auto usec = static_cast<std::uint64_t>(now.tv_sec) * 1'000'000 +
                    static_cast<std::uint64_t>(now.tv_nsec) / 1'000;
  notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

void SystemdNotifier::stopping() {
  notify("STOPPING=1");
  boost::asio::post(strand_, [this] {
    pinging_ = false;
    watchdog_.cancel();
  });
}

// From the event loop: a loop that stalls stops the pings, and systemd restarts the daemon.
void SystemdNotifier::ping() {
  if (!pinging_) return;
  notify("WATCHDOG=1");
  watchdog_.expires_after(watchdog_interval_);
  watchdog_.async_wait([this](const boost::system::error_code& error) {
    if (!error) ping();
  });
}

}  // namespace pktbroker
