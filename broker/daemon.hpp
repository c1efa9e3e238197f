// pktbrokerd's runtime: the io_context pool, the served queues and the signals that steer them.
#pragma once

#include "broker/broker_queue.hpp"
#include "broker/identity/identity_resolver.hpp"
#include "broker/policy/policy.hpp"
#include "broker/policy_watcher.hpp"
#include "broker/prompt/prompt_board.hpp"
#include "broker/session/session_manager.hpp"
#include "broker/systemd_notify.hpp"
#include "broker/telemetry/metrics.hpp"
#include "plugins/host/plugin_set.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/system_timer.hpp>

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace pktbroker {

class Daemon {
 public:
  /// Binds every queue of `policy` (throws std::system_error when one cannot be bound).
  Daemon(std::filesystem::path config_file, std::shared_ptr<const Policy> policy,
         std::shared_ptr<const PluginSet> plugins, unsigned threads);

  /// Starts the event log's writer and the metrics endpoint (throws std::runtime_error when it
  /// cannot listen), then serves until SIGTERM or SIGINT; returns the process exit code.
  int run();

 private:
  void do_wait_signal();
  void on_signal(const boost::system::error_code& error, int signal);
  /// Loads the policy file again; true, or false with the diagnostics.
  std::pair<bool, std::string> reload();
  std::pair<bool, std::string> load_and_apply();  ///< reload()'s work, under its lock
  /// The watcher saw a change: reloads unless the files are those last loaded (or tried).
  void reload_if_changed();
  void report_stats();
  std::vector<PluginCounters> plugin_counters();
  /// An operator's command for a loaded plugin (`pktbrokerctl plugin`).
  std::pair<bool, std::string> plugin_command(const std::string& name,
                                              const std::vector<std::string>& args);
  /// Makes pktb_host::wake of each plugin fire its flows' timers on every queue.
  void set_wakers(const PluginSet& plugins);
  void collect_stats(std::size_t index, std::vector<QueueSnapshot> collected,
                     std::function<void(std::vector<QueueSnapshot>)> done);
  void shutdown();
  /// The resolver, made if `policy` has app.* rules and none exists yet; may be null.
  IdentityResolver* identity_for(const Policy& policy);
  /// One scrape's sample, gathered on the io_context; nullopt when it takes over 2 s.
  std::optional<MetricsSample> gather_metrics();

  std::filesystem::path config_file_;
  // Before the plugins and queues: a plugin's own thread may call wake until it is unloaded.
  std::mutex wake_mutex_;
  bool wakes_stopped_ = false;
  std::shared_ptr<const Policy> policy_;      // touched only under reload_mutex_
  std::shared_ptr<const PluginSet> plugins_;  // outlives the queues (declared before them)
  std::shared_ptr<NameCache> names_ = std::make_shared<NameCache>();  // DNS answers, all queues
  unsigned threads_;
  boost::asio::io_context io_;
  boost::asio::signal_set signals_;
  std::shared_ptr<EventLog> events_;  // before the queues that log to it; null without `events:`
  SystemdNotifier systemd_{io_};
  std::vector<std::unique_ptr<BrokerQueue>> queues_;
  std::shared_ptr<ChannelHub> channels_;  // before the queues that mirror into it
  std::unique_ptr<SessionManager> sessions_;
  std::unique_ptr<MetricsEndpoint> metrics_;  // off unless the policy says where to listen
  std::unique_ptr<PolicyWatcher> watcher_;
  boost::asio::system_timer expiry_timer_{io_};  // the next rule's until: reloads then
  /// Logs the rules past their until:, and arms expiry_timer_ for the next one.
  void schedule_expiry(const Policy& policy);
  void watch_app_exits(const Policy& policy);
  static constexpr std::size_t max_exit_watches = 512;
  std::vector<std::unique_ptr<boost::asio::posix::stream_descriptor>> exit_watches_;
  std::shared_ptr<PromptBoard> prompts_;
  // After the queues, so destroyed before them: its thread posts answers to their strands.
  // Made when a policy first has app.* rules (the eBPF program is loaded only then).
  std::unique_ptr<IdentityResolver> identity_;
  std::mutex reload_mutex_;   // SIGHUP and a client's RELOAD may arrive together
  std::string loaded_files_;  // PolicyWatcher::fingerprint, under reload_mutex_
  bool stopping_ = false;
};

}  // namespace pktbroker
