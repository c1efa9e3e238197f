// Reloads the policy when its file or a drop-in in policy.d/ changes (inotify), as SIGHUP does.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <array>
#include <filesystem>
#include <functional>
#include <string>

namespace pktbroker {

class PolicyWatcher {
 public:
  /// Changes settle for this long before `reload` runs: an editor's save is several events,
  /// a package's upgrade several files.
  static constexpr std::chrono::milliseconds settle{200};

  /// Watches `config` and the `policy.d/` beside it (also once it is created). Throws
  /// std::system_error when inotify cannot be set up.
  PolicyWatcher(boost::asio::io_context& io, std::filesystem::path config,
                std::function<void()> reload);
  void stop();

  /// What the policy files are now (names, sizes, times, inodes): equal strings, same files.
  /// A reload that SIGHUP already made is not made again when the watcher sees the same save.
  static std::string fingerprint(const std::filesystem::path& config);

 private:
  void read();
  void on_events(std::size_t length);
  void watch_drop_ins();

  std::filesystem::path config_;
  std::filesystem::path drop_ins_;
  std::function<void()> reload_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::posix::stream_descriptor inotify_;
  boost::asio::steady_timer settle_timer_;
  int config_dir_watch_ = -1;
  int drop_ins_watch_ = -1;
  alignas(8) std::array<char, 8192> buffer_{};
};

}  // namespace pktbroker
