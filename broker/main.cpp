// pktbrokerd: command line, policy check, start-up.
#include "broker/daemon.hpp"
#include "broker/logging.hpp"
#include "broker/policy/policy.hpp"
#include "broker/policy_plugins.hpp"
#include "broker/privileges.hpp"

#include <spdlog/spdlog.h>
#include <boost/program_options.hpp>
#include <boost/system/system_error.hpp>

#include <sched.h>
#include <cstdlib>
#include <iostream>
#include <system_error>
#include <thread>

#include <unistd.h>

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace {

constexpr int exit_ok = 0;
constexpr int exit_failure = 1;
constexpr int exit_usage = 2;

constexpr const char* description = R"(pktbrokerd - packet-policy broker for netfilter NFQUEUE

Usage: pktbrokerd [OPTIONS]

pktbrokerd binds the NFQUEUE queues named in its policy and gives every queued
packet exactly one verdict (accept, drop or repeat, optionally with a new mark),
decided by the first matching rule of a YAML policy or by the protocol
plugins the policy loads (dns, http, tls, ftp). Packets reach a queue
through iptables rules, for example:

  iptables -A OUTPUT -p tcp --dport 23 -j NFQUEUE --queue-num 0 --queue-bypass

(--queue-bypass lets traffic pass while no pktbrokerd is running.)

Options)";

constexpr const char* epilogue = R"(
Signals:
  SIGHUP    reload the policy; a policy with errors is rejected and the old
            one stays in force
  SIGUSR1   log counters per queue and rule as "stats key=value ..." lines
  SIGTERM, SIGINT
            stop reading, verdict every packet already received, unbind the
            queues and exit 0

Files:
  )" PKTBROKER_SYSCONFDIR R"(/pktbroker/policy.yaml
                               the policy (config/policy.yaml in a build tree)
  )" PKTBROKER_SYSCONFDIR R"(/pktbroker/policy.d/
                               drop-ins merged after the policy, in name order
  )" PKTBROKER_PLUGIN_DIR R"(
                               plugins the policy names without a path (NAME.so);
                               a binary run from its build tree looks in its plugins/
                               first, an installed one in the plugin directory of its
                               own prefix

Environment:
  PKTBROKER_PLUGIN_PATH   colon-separated directories searched for NAME.so
                          before the installed plugin directory

Exit status:
  0  success (--check: the policy is valid and its plugins load)
  1  the policy is invalid, a plugin cannot be loaded, or a queue could not
     be bound
  2  bad command line
)";

fs::path default_config() {
  // A binary run from its build tree uses the source tree's example policy.
  std::error_code ignored;
  const fs::path self = fs::read_symlink("/proc/self/exe", ignored);
  const fs::path build_dir = PKTBROKER_BINARY_DIR;
  if (!self.empty() && self.string().starts_with(build_dir.string() + "/")) {
    return fs::path(PKTBROKER_SOURCE_DIR) / "config" / "policy.yaml";
  }
  return fs::path(PKTBROKER_SYSCONFDIR) / "pktbroker" / "policy.yaml";
}

struct Options {
  fs::path config;
  bool check = false;
  bool foreground = false;
  bool syslog = false;
  std::string log_level = "info";
  unsigned threads = 0;
  std::string user;
};

// The CPUs this process may run on (taskset, cgroup cpusets), not all the machine's: a broker
// pinned to one CPU runs one io thread.
unsigned usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1U, std::thread::hardware_concurrency());
}

int check_policy(const fs::path& config) {
  try {
    const auto policy = pktbroker::load_policy(config);
    const auto plugins = pktbroker::load_policy_plugins(*policy);
    std::cout << config.string() << ": OK: " << policy->broker().queues.size() << " queue(s), "
              << policy->rules().size() << " rule(s), " << plugins->plugins().size()
              << " plugin(s)\n";
    return exit_ok;
  } catch (const pktbroker::PolicyError& error) {
    for (const auto& diagnostic : error.diagnostics()) std::cerr << diagnostic.to_string() << '\n';
    return exit_failure;
  } catch (const pktbroker::PluginError& error) {
    std::cerr << "error: " << error.what() << '\n';
    return exit_failure;
  }
}

int serve(const Options& options) {
  std::shared_ptr<const pktbroker::Policy> policy;
  try {
    policy = pktbroker::load_policy(options.config);
  } catch (const pktbroker::PolicyError& error) {
    for (const auto& diagnostic : error.diagnostics()) spdlog::error("{}", diagnostic.to_string());
    spdlog::error("not starting: the policy has errors");
    return exit_failure;
  }
  if (!options.foreground) {
    if (daemon(0, 0) != 0) {
      spdlog::error("cannot detach from the terminal: {}", std::strerror(errno));
      return exit_failure;
    }
    pktbroker::setup_logging(true, spdlog::get_level());
  }
  // Loaded after detaching, so a plugin's init may start threads.
  std::shared_ptr<const pktbroker::PluginSet> plugins;
  try {
    plugins = pktbroker::load_policy_plugins(*policy);
  } catch (const pktbroker::PluginError& error) {
    spdlog::error("{}", error.what());
    spdlog::error("not starting: a plugin could not be loaded");
    return exit_failure;
  }
  for (const auto& plugin : plugins->plugins()) {
    spdlog::info("plugin {} {} loaded from {}", plugin->name(), plugin->version(),
                 plugin->path().string());
  }
  try {
    const unsigned threads = options.threads != 0 ? options.threads : usable_cpus();
    pktbroker::Daemon daemon(options.config, policy, std::move(plugins), threads);
    if (!options.user.empty()) {
      pktbroker::drop_privileges(options.user);
      spdlog::info("running as user {}, with CAP_NET_ADMIN only", options.user);
    }
    return daemon.run();
  } catch (const std::system_error& error) {
    spdlog::error("{}", error.what());
    const std::string_view what = error.what();
    if (error.code().value() == EPERM && what.starts_with("queue ") &&
        what.find("already") == std::string_view::npos) {
      spdlog::error("binding NFQUEUE queues needs CAP_NET_ADMIN (run as root)");
    }
    return exit_failure;
  } catch (const boost::system::system_error& error) {  // the client socket (Asio)
    spdlog::error("{}", error.what());
    return exit_failure;
  } catch (const std::runtime_error& error) {  // the metrics endpoint
    spdlog::error("{}", error.what());
    return exit_failure;
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  po::options_description visible(description, 80);
  visible.add_options()("config,c", po::value<fs::path>(&options.config)->value_name("FILE"),
                        "policy file to load (default: " PKTBROKER_SYSCONFDIR
                        "/pktbroker/policy.yaml, or config/policy.yaml of the "
                        "source tree when run from a build tree)")(
      "check", po::bool_switch(&options.check),
      "validate the policy and its drop-ins, print problems as file:line:column, and exit")(
      "log-level,l", po::value<std::string>(&options.log_level)->value_name("LEVEL"),
      "trace, debug, info (default), warn, error or off; debug logs every verdict")(
      "threads,t", po::value<unsigned>(&options.threads)->value_name("N"),
      "io threads serving the queues (default: one per CPU this process may run on)")(
      "foreground,f", po::bool_switch(&options.foreground),
      "stay in the foreground and log to stderr (default: detach and log to syslog)")(
      "syslog", po::bool_switch(&options.syslog), "log to syslog even in the foreground")(
      "user,u", po::value<std::string>(&options.user)->value_name("USER"),
      "once the queues and the client socket are bound, become USER (its uid and groups) "
      "keeping only CAP_NET_ADMIN; the policy and plugins must then be readable by USER for "
      "reloads")("help,h", "show this help and exit")("version,V", "show the version and exit");

  po::variables_map values;
  try {
    po::store(po::command_line_parser(argc, argv).options(visible).run(), values);
    po::notify(values);
  } catch (const po::error& error) {
    std::cerr << "pktbrokerd: " << error.what() << "\nTry 'pktbrokerd --help'.\n";
    return exit_usage;
  }
  if (values.count("help") != 0) {
    std::cout << visible << epilogue;
    return exit_ok;
  }
  if (values.count("version") != 0) {
    std::cout << "pktbrokerd " << PKTBROKER_VERSION << '\n';
    return exit_ok;
  }
  const auto level = spdlog::level::from_str(options.log_level);
  if (level == spdlog::level::off && options.log_level != "off") {
    std::cerr << "pktbrokerd: unknown log level '" << options.log_level
              << "' (expected trace, debug, info, warn, error or off)\n";
    return exit_usage;
  }
  if (options.config.empty()) options.config = default_config();
  if (options.check) return check_policy(options.config);
  // Absolute: a detached daemon runs in /, and reloads the policy and resolves a plugin's
  // relative path (relative to the policy's directory) from there.
  std::error_code ignored;
  options.config = fs::absolute(options.config, ignored);

  pktbroker::setup_logging(options.syslog, level);
  return serve(options);
}
