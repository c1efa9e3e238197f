// Tells systemd what pktbrokerd is doing (Type=notify): ready once its queues are bound,
// reloading, stopping, and, when the unit sets WatchdogSec=, that its event loop still runs.
// Without NOTIFY_SOCKET (not started by systemd) every call does nothing.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <chrono>
#include <string>
#include <string_view>

namespace pktbroker {

class SystemdNotifier {
 public:
  explicit SystemdNotifier(boost::asio::io_context& io);

  /// READY=1 with a status line. Starts the watchdog pings when systemd asked for them.
  void ready(std::string_view status);
  /// RELOADING=1 (with the monotonic time, as Type=notify-reload wants); ready() follows.
  void reloading();
  /// STOPPING=1; the watchdog pings stop.
  void stopping();

 private:
  void notify(const std::string& state);
  void ping();

  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::steady_timer watchdog_;
  std::chrono::microseconds watchdog_interval_{};  ///< half of WatchdogSec; 0: none
  bool pinging_ = false;                           ///< on strand_
};

}  // namespace pktbroker
