#include "broker/daemon.hpp"

#include "broker/identity/process_reader.hpp"
#include "broker/policy_plugins.hpp"
#include "broker/stats_report.hpp"

#include <spdlog/fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <boost/asio/executor_work_guard.hpp>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <future>
#include <thread>
#include <tuple>

#include <sys/syscall.h>
#include <unistd.h>

namespace pktbroker {

Daemon::Daemon(std::filesystem::path config_file, std::shared_ptr<const Policy> policy,
               std::shared_ptr<const PluginSet> plugins, unsigned threads)
    : config_file_(std::move(config_file)),
      policy_(std::move(policy)),
      plugins_(std::move(plugins)),
      threads_(threads == 0 ? 1 : threads),
      io_(static_cast<int>(threads_)),
      signals_(io_, SIGHUP, SIGUSR1, SIGTERM) {
  signals_.add(SIGINT);
  loaded_files_ = PolicyWatcher::fingerprint(config_file_);  // main() just loaded them
  if (!policy_->broker().events.file.empty()) {
    events_ = std::make_shared<EventLog>(policy_->broker().events);
    spdlog::info("events: logging to {}", policy_->broker().events.file);
  }
  channels_ = std::make_shared<ChannelHub>(io_, plugins_, events_);
  channels_->open(policy_->broker().channels);
  prompts_ =
      std::make_shared<PromptBoard>(io_, PromptHost{config_file_, [this] { return reload(); }});
  prompts_->set_policy(policy_);
  IdentityResolver* identity = identity_for(*policy_);
  for (const QueueConfig& config : policy_->broker().queues) {
    queues_.push_back(
        std::make_unique<BrokerQueue>(io_, config, policy_, plugins_, names_, events_));
    queues_.back()->set_mirror(channels_);
    queues_.back()->set_prompts(prompts_);
    queues_.back()->set_identity(identity);
  }
  std::vector<BrokerQueue*> queues;
  for (auto& queue : queues_) queues.push_back(queue.get());
  ControlHandler control{.collect_stats =
                             [this](std::function<void(std::vector<QueueSnapshot>)> done) {
                               collect_stats(0, {}, std::move(done));
                             },
                         .reload = [this] { return reload(); },
                         .plugin_counters = [this] { return plugin_counters(); },
                         .plugin_command =
                             [this](const std::string& name, const std::vector<std::string>& args) {
                               return plugin_command(name, args);
                             }};
  sessions_ = std::make_unique<SessionManager>(io_, std::move(queues), policy_, std::move(control));
  sessions_->set_event_log(events_);
  sessions_->set_channels(channels_);
  sessions_->set_prompts(prompts_);
  sessions_->start();
}

int Daemon::run() {
  // Threads start here, after main() gave up root (--user): each thread has its own
  // capabilities and no_new_privs, and these must not keep root's.
  if (events_ != nullptr) events_->start();
  if (!policy_->broker().metrics_listen.empty()) {
    metrics_ = std::make_unique<MetricsEndpoint>(policy_->broker().metrics_listen,
                                                 [this] { return gather_metrics(); });
  }
  auto work = boost::asio::make_work_guard(io_);
  schedule_expiry(*policy_);
  try {
    watcher_ = std::make_unique<PolicyWatcher>(io_, config_file_, [this] { reload_if_changed(); });
  } catch (const std::system_error& error) {  // not fatal: SIGHUP and RELOAD still work
    spdlog::warn("not watching the policy files ({}); reload with SIGHUP", error.what());
  }
  for (auto& queue : queues_) queue->start();
  set_wakers(*plugins_);
  do_wait_signal();
  std::string bound;
  for (const auto& queue : queues_)
    bound += (bound.empty() ? "" : ",") + std::to_string(queue->number());
  spdlog::info("pktbrokerd ready: serving queue {} with {} rules from {} ({} threads)", bound,
               policy_->rules().size(), config_file_.string(), threads_);
  systemd_.ready(fmt::format("serving queue {} with {} rules", bound, policy_->rules().size()));

  std::vector<std::jthread> pool;
  for (unsigned i = 1; i < threads_; ++i) pool.emplace_back([this] { io_.run(); });
  work.reset();  // run() returns once shutdown has released the signal wait and every queue
  io_.run();
  pool.clear();
  metrics_.reset();
  spdlog::info("pktbrokerd stopped");
  return 0;
}

void Daemon::do_wait_signal() {
  signals_.async_wait(
      [this](const boost::system::error_code& error, int signal) { on_signal(error, signal); });
}

void Daemon::on_signal(const boost::system::error_code& error, int signal) {
  if (error == boost::asio::error::operation_aborted) return;
  switch (signal) {
    case SIGHUP:
      if (events_ != nullptr) events_->reopen();  // after logrotate moved it
      (void)reload();
      break;
    case SIGUSR1: report_stats(); break;
    default: shutdown(); return;
  }
  do_wait_signal();
}

void Daemon::reload_if_changed() {
  {
    const std::lock_guard lock(reload_mutex_);
    if (PolicyWatcher::fingerprint(config_file_) == loaded_files_) return;
  }
  (void)reload();
}

std::pair<bool, std::string> Daemon::reload() {
  std::lock_guard lock(reload_mutex_);
  // A reload an answer or an exiting program asked for may come after shutdown began: it
  // would arm timers and watches again.
  if (stopping_) return {false, "pktbrokerd is stopping"};
  systemd_.reloading();
  auto result = load_and_apply();
  if (events_ != nullptr) {
    events_->other(EventType::reload, "reload",
                   fmt::format(R"("pktbroker":{{"reload":{{"ok":{},"rules":{}{}}}}})", result.first,
                               policy_->rules().size(),
                               result.first ? "" : ",\"problems\":" + json_string(result.second)));
  }
  systemd_.ready(result.first ? fmt::format("serving {} rules", policy_->rules().size())
                              : "reload failed: the old policy stays");
  return result;
}

std::pair<bool, std::string> Daemon::load_and_apply() {
  std::shared_ptr<const Policy> next;
  std::shared_ptr<const PluginSet> next_plugins;
  loaded_files_ = PolicyWatcher::fingerprint(config_file_);  // before reading: a later save counts
  try {
    next = load_policy(config_file_);
    next_plugins = load_policy_plugins(*next, policy_.get(), plugins_);
  } catch (const PolicyError& error) {
    spdlog::error("reload failed, keeping the old policy: {} problem(s) in {}",
                  error.diagnostics().size(), config_file_.string());
    std::string text;
    for (const auto& diagnostic : error.diagnostics()) {
      spdlog::error("  {}", diagnostic.to_string());
      text += diagnostic.to_string() + "\n";
    }
    return {false, text};
  } catch (const std::exception& error) {
    spdlog::error("reload failed, keeping the old policy: {}", error.what());
    return {false, error.what()};
  }
  if (next->broker().queues != policy_->broker().queues) {
    spdlog::warn("reload: queue settings changed; they take effect at the next restart");
  }
  if (next->broker().events != policy_->broker().events) {
    spdlog::warn("reload: the events settings changed; they take effect at the next restart");
  }
  if (next->broker().metrics_listen != policy_->broker().metrics_listen) {
    spdlog::warn("reload: the metrics endpoint moved; it takes effect at the next restart");
  }
  if (next->broker().socket.path != policy_->broker().socket.path) {
    spdlog::warn("reload: the client socket moved; it takes effect at the next restart");
  }
  if (next_plugins != plugins_) {
    spdlog::info("reload: {} plugin(s) loaded; open flows keep the plugins they started with",
                 next_plugins->plugins().size());
  }
  if (next->broker().identity.bpf != policy_->broker().identity.bpf && identity_) {
    spdlog::warn("reload: identity.bpf changed; it takes effect at the next restart");
  }
  schedule_expiry(*next);
  policy_ = next;
  if (next_plugins != plugins_) set_wakers(*next_plugins);
  plugins_ = next_plugins;
  IdentityResolver* identity = identity_for(*next);
  for (auto& queue : queues_) queue->set_policy(next, next_plugins, identity);
  prompts_->set_policy(next);
  channels_->set_plugins(next_plugins);
  channels_->apply(next->broker().channels);  // before the grants: they read its access lists
  sessions_->set_policy(next);
  spdlog::info("policy reloaded: {} rules from {}", next->rules().size(), config_file_.string());
  return {true, {}};
}

void Daemon::set_wakers(const PluginSet& plugins) {
  for (const auto& plugin : plugins.plugins()) {
    plugin->set_waker([this, weak = std::weak_ptr<const Plugin>(plugin)] {
      const std::lock_guard lock(wake_mutex_);
      if (wakes_stopped_) return;
      for (auto& queue : queues_) queue->wake_plugin(weak);
    });
  }
}

std::pair<bool, std::string> Daemon::plugin_command(const std::string& name,
                                                    const std::vector<std::string>& args) {
  std::shared_ptr<const PluginSet> plugins;
  {
    std::lock_guard lock(reload_mutex_);
    plugins = plugins_;
  }
  const auto printable = [](const std::string& text) {
    return std::all_of(text.begin(), text.end(), [](char c) {
      const auto byte = static_cast<unsigned char>(c);
      return byte >= 0x20 && byte < 0x7f;
    });
  };
  if (!printable(name) || !std::all_of(args.begin(), args.end(), printable)) {
    return {false, "a plugin command and its arguments must be printable ASCII"};
  }
  const auto plugin = plugins->find(name);
  if (!plugin) return {false, "no plugin named '" + name + "' is loaded"};
  auto [ok, text] = plugin->command(args);
  spdlog::info("plugin {} command '{}': {}", name, fmt::join(args, " "), ok ? "done" : "refused");
  return {ok, std::move(text)};
}

std::vector<PluginCounters> Daemon::plugin_counters() {
  std::shared_ptr<const PluginSet> plugins;
  {
    std::lock_guard lock(reload_mutex_);
    plugins = plugins_;
  }
  std::vector<PluginCounters> all;
  for (const auto& plugin : plugins->plugins()) all.push_back({plugin->name(), plugin->counters()});
  return all;
}

void Daemon::report_stats() {
  collect_stats(0, {}, [this](const std::vector<QueueSnapshot>& all) {
    for (const auto& snapshot : all) {
      for (const auto& line : format_stats(snapshot)) spdlog::info("{}", line);
    }
    spdlog::info("stats clients malformed_frames={} refused={}", sessions_->malformed(),
                 sessions_->refused());
    for (const PluginCounters& plugin : plugin_counters()) {
      std::string counters;
      for (const auto& [name, value] : plugin.counters) {
        counters += " " + name + "=" + std::to_string(value);
      }
      spdlog::info("stats plugin={}{}", plugin.name, counters);
    }
    const std::lock_guard lock(reload_mutex_);  // a reload may make the resolver
    if (identity_) {
      const IdentityCounters c = identity_->counters();
      spdlog::info(
          "stats identity bpf={} bpf_found={} bpf_missing={} process_reads={} "
          "process_gone={} socket_searches={} fds_scanned={} searches_given_up={} "
          "unknown={} cache_resets={} lookup_us={}",
          identity_->bpf(), c.bpf_found, c.bpf_missing, c.process_reads, c.process_gone,
          c.socket_searches, c.fds_scanned, c.searches_given_up, c.unknown, c.cache_resets,
          c.slow_nanoseconds / 1000);
    }
  });
}

// Visits the queues one after another, each on its own strand, carrying the snapshots along:
// no state is shared between threads.
void Daemon::collect_stats(std::size_t index, std::vector<QueueSnapshot> collected,
                           std::function<void(std::vector<QueueSnapshot>)> done) {
  if (index == queues_.size()) {
    done(std::move(collected));
    return;
  }
  queues_[index]->snapshot([this, index, collected = std::move(collected),
                            done = std::move(done)](QueueSnapshot snapshot) mutable {
    collected.push_back(std::move(snapshot));
    collect_stats(index + 1, std::move(collected), std::move(done));
  });
}

void Daemon::schedule_expiry(const Policy& policy) {
  for (const std::string& rule : policy.expired()) {
    spdlog::info("rule {} is past its until: left out", rule);
  }
  watch_app_exits(policy);
  const auto next = policy.next_expiry();
  if (!next) {
    expiry_timer_.cancel();
    return;
  }
  expiry_timer_.expires_at(*next);
  expiry_timer_.async_wait([this](const boost::system::error_code& error) {
    if (error) return;  // re-armed by a reload, or stopping
    spdlog::info("a rule's until: has come: reloading");
    (void)reload();
  });
}

// Rules `until: {app-exit: ...}` end when their process does: each process's pidfd becomes
// readable then, and the policy is loaded again without those rules.
void Daemon::watch_app_exits(const Policy& policy) {
  exit_watches_.clear();  // closing them cancels their waits
  std::vector<ProcessRef> processes = policy.app_exits();
  std::sort(processes.begin(), processes.end(), [](const ProcessRef& a, const ProcessRef& b) {
    return std::tie(a.pid, a.start_ticks) < std::tie(b.pid, b.start_ticks);
  });
  processes.erase(std::unique(processes.begin(), processes.end()), processes.end());
  for (const ProcessRef& process : processes) {
    if (exit_watches_.size() >= max_exit_watches) {
      spdlog::warn(
          "more than {} rules last until their program exits: the others end at the "
          "next reload after it",
          max_exit_watches);
      break;
    }
    const int fd = static_cast<int>(::syscall(SYS_pidfd_open, process.pid, 0));
    if (fd < 0) {
      if (errno == ESRCH) {  // gone since the policy was loaded: load it again without it
        boost::asio::post(io_, [this] { (void)reload(); });
        break;
      }
      spdlog::warn("cannot watch process {} for its until: app-exit rules: {}", process.pid,
                   std::strerror(errno));
      continue;
    }
    auto& watch = exit_watches_.emplace_back(
        std::make_unique<boost::asio::posix::stream_descriptor>(io_, fd));
    // Opened after a pid was reused: the rule's process is gone.
    const bool same = process_start_ticks(process.pid) == process.start_ticks;
    watch->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                      [this, pid = process.pid](const boost::system::error_code& error) {
                        if (error) return;  // closed by the next reload, or stopping
                        spdlog::info("process {} exited: its until: app-exit rules end", pid);
                        boost::asio::post(io_, [this] { (void)reload(); });
                      });
    if (!same) {
      boost::asio::post(io_, [this] { (void)reload(); });
      break;
    }
  }
}

IdentityResolver* Daemon::identity_for(const Policy& policy) {
  if (!identity_ && policy.uses_app()) {
    identity_ = std::make_unique<IdentityResolver>(policy.broker().identity.bpf);
  }
  return identity_.get();
}

void Daemon::shutdown() {
  {
    const std::lock_guard lock(reload_mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  spdlog::info("shutting down: verdicting packets in flight and unbinding");
  systemd_.stopping();
  {
    const std::lock_guard lock(wake_mutex_);  // a plugin's thread may wake it while queues stop
    wakes_stopped_ = true;
  }
  boost::system::error_code ignored;
  signals_.cancel(ignored);
  if (watcher_) watcher_->stop();
  {
    const std::lock_guard lock(reload_mutex_);  // reloads re-arm them
    expiry_timer_.cancel();
    exit_watches_.clear();
  }
  prompts_->stop();  // what waits for an answer takes its fallback as the queues stop
  sessions_->stop();
  channels_->stop();
  for (auto& queue : queues_) {
    queue->stop([number = queue->number()] { spdlog::info("queue {} unbound", number); });
  }
}

std::optional<MetricsSample> Daemon::gather_metrics() {
  auto promise = std::make_shared<std::promise<MetricsSample>>();
  auto sample = promise->get_future();
  boost::asio::post(io_, [this, promise] {
    collect_stats(0, {}, [this, promise](std::vector<QueueSnapshot> queues) {
      MetricsSample partial{
          std::move(queues), plugin_counters(), sessions_->malformed(), sessions_->refused(), {},
          std::nullopt};
      if (events_ != nullptr) partial.events = events_->counters();
      sessions_->session_infos(
          [promise, partial = std::move(partial)](std::vector<proto::SessionInfo> infos) mutable {
            partial.sessions = std::move(infos);
            promise->set_value(std::move(partial));
          });
    });
  });
  if (sample.wait_for(std::chrono::seconds(2)) != std::future_status::ready) return std::nullopt;
  return sample.get();
}

}  // namespace pktbroker
