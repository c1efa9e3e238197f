// pktbrokerctl: asks a running pktbrokerd for its status, sessions and counters, to reload, or
// to run a command of a loaded plugin.
#include "pktbroker/client.hpp"
#include "tools/json_string.hpp"

#include <boost/program_options.hpp>

#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <vector>

namespace po = boost::program_options;
using pktbroker::json_string;

namespace {

constexpr int exit_ok = 0;
constexpr int exit_refused = 1;  // the broker answered with an error, a reload or plugin failed
constexpr int exit_usage = 2;
constexpr int exit_unreachable = 3;

constexpr const char* usage = R"(pktbrokerctl - control a running pktbrokerd

Usage: pktbrokerctl [OPTIONS] COMMAND
       pktbrokerctl [OPTIONS] plugin NAME [ARGS...]

Commands:
  status     one line per queue: packets, verdicts, how many clients decided,
             how many wait for a client now
  sessions   connected clients: id, name, pid, uid, roles, subscriptions, counters
  stats      every counter, per queue, rule, client and plugin
  reload     make pktbrokerd load its policy again (as SIGHUP does); prints the
             problems when the new policy is rejected
  plugin NAME [ARGS...]
             run a command of the loaded plugin NAME and print its answer.
             Everything after NAME goes to the plugin as it is, options too:
             pktbrokerctl's own options (-s, --json) go before 'plugin'.
             The commands are the plugin's own: see its documentation.
             At most 16 ARGS of up to 256 bytes each; NAME has 1 to 32 bytes.
             With --json, prints {"ok": true|false, "text": "..."}

Options)";

constexpr const char* epilogue = R"(
Examples:
  pktbrokerctl status
  pktbrokerctl --json stats
  pktbrokerctl plugin resend wakeup --iface ppp0 --addr 192.0.2.7

Exit status:
  0  success
  1  the broker refused the request (no manage role), rejected the policy, or
     the plugin refused or failed the command
  2  bad command line
  3  the broker could not be reached
)";

std::string roles_text(std::uint8_t roles) {
  std::string text;
  if (roles & pktbroker::proto::role_observe) text += "observe,";
  if (roles & pktbroker::proto::role_verdict) text += "verdict,";
  if (roles & pktbroker::proto::role_manage) text += "manage,";
  if (!text.empty()) text.pop_back();
  return text;
}

int fail(pktbroker::Client& client, std::error_code error) {
  if (error == pktbroker::ClientError::broker_error) {
    std::cerr << "pktbrokerctl: " << client.last_error().text << '\n';
    return exit_refused;
  }
  std::cerr << "pktbrokerctl: " << error.message() << '\n';
  return exit_unreachable;
}

int show_stats(pktbroker::Client& client, bool json, bool summary) {
  pktbroker::proto::StatsReply reply;
  if (const auto error = client.stats(reply)) return fail(client, error);
  // scope -> name -> value, in the order the broker sent them
  std::vector<std::string> scopes;
  std::map<std::string, std::vector<std::pair<std::string, std::uint64_t>>> by_scope;
  for (const auto& e : reply.entries) {
    if (!by_scope.contains(e.scope)) scopes.push_back(e.scope);
    by_scope[e.scope].emplace_back(e.name, e.value);
  }
  if (json) {
    std::cout << "{";
    for (std::size_t i = 0; i < scopes.size(); ++i) {
      std::cout << (i ? "," : "") << json_string(scopes[i]) << ":{";
      const auto& values = by_scope[scopes[i]];
      for (std::size_t j = 0; j < values.size(); ++j) {
        std::cout << (j ? "," : "") << json_string(values[j].first) << ":" << values[j].second;
      }
      std::cout << "}";
    }
    std::cout << "}\n";
    return exit_ok;
  }
  if (summary) {
    std::printf("%-10s %12s %12s %12s %11s %12s\n", "QUEUE", "PACKETS", "ACCEPTED", "DROPPED",
                "BY_CLIENTS", "OUTSTANDING");
  }
  for (const auto& scope : scopes) {
    std::map<std::string, std::uint64_t> v(by_scope[scope].begin(), by_scope[scope].end());
    if (summary) {
      if (!scope.starts_with("queue ")) continue;
      std::printf("%-10s %12llu %12llu %12llu %11llu %12llu\n", scope.substr(6).c_str(),
                  static_cast<unsigned long long>(v["packets"]),
                  static_cast<unsigned long long>(v["accepted"]),
                  static_cast<unsigned long long>(v["dropped"]),
                  static_cast<unsigned long long>(v["client_verdicts"]),
                  static_cast<unsigned long long>(v["outstanding"]));
      continue;
    }
    std::printf("%s\n", scope.c_str());
    for (const auto& [name, value] : by_scope[scope]) {
      std::printf("  %-22s %llu\n", name.c_str(), static_cast<unsigned long long>(value));
    }
  }
  return exit_ok;
}

int show_sessions(pktbroker::Client& client, bool json) {
  pktbroker::proto::SessionsReply reply;
  if (const auto error = client.sessions(reply)) return fail(client, error);
  if (json) {
    std::cout << "[";
    for (std::size_t i = 0; i < reply.sessions.size(); ++i) {
      const auto& s = reply.sessions[i];
      std::cout << (i ? "," : "") << "{\"id\":" << s.id << ",\"name\":" << json_string(s.name)
                << ",\"pid\":" << s.pid << ",\"uid\":" << s.uid << ",\"gid\":" << s.gid
                << ",\"roles\":" << json_string(roles_text(s.roles))
                << ",\"subscriptions\":" << s.subscriptions << ",\"delivered\":" << s.delivered
                << ",\"verdicts\":" << s.verdicts << ",\"fallbacks\":" << s.fallbacks << "}";
    }
    std::cout << "]\n";
    return exit_ok;
  }
  std::printf("%-5s %-20s %-8s %-6s %-22s %5s %10s %10s %10s\n", "ID", "NAME", "PID", "UID",
              "ROLES", "SUBS", "DELIVERED", "VERDICTS", "FALLBACKS");
  for (const auto& s : reply.sessions) {
    std::printf(
        "%-5u %-20s %-8u %-6u %-22s %5u %10llu %10llu %10llu\n", s.id, s.name.c_str(), s.pid, s.uid,
        roles_text(s.roles).c_str(), s.subscriptions, static_cast<unsigned long long>(s.delivered),
        static_cast<unsigned long long>(s.verdicts), static_cast<unsigned long long>(s.fallbacks));
  }
  return exit_ok;
}

int reload(pktbroker::Client& client, bool json) {
  pktbroker::proto::ReloadReply reply;
  if (const auto error = client.reload(reply)) return fail(client, error);
  if (json) {
    std::cout << "{\"ok\":" << (reply.ok ? "true" : "false")
              << ",\"problems\":" << json_string(reply.text) << "}\n";
  } else if (reply.ok) {
    std::cout << "policy reloaded\n";
  } else {
    std::cerr << "policy rejected; the old one stays in force:\n" << reply.text;
  }
  return reply.ok ? exit_ok : exit_refused;
}

/// Ends option parsing at the `plugin` command: it and every token after it are positionals, so
/// a plugin's own options (`--json`, `-s`) reach the plugin instead of being taken for ours.
std::vector<po::option> stop_at_plugin(std::vector<std::string>& args) {
  if (args.front() != "plugin") return {};
  std::vector<po::option> positionals;
  for (const std::string& arg : args) {
    po::option positional;
    positional.value = {arg};
    positional.original_tokens = {arg};
    positionals.push_back(std::move(positional));
  }
  args.clear();
  return positionals;
}

/// Why `name` and `args` cannot be sent (the protocol's limits), or "".
std::string plugin_usage_error(const std::string& name, const std::vector<std::string>& args) {
  namespace proto = pktbroker::proto;
  if (name.empty()) return "plugin: no plugin NAME";
  if (name.starts_with('-')) {
    return "plugin: '" + name +
           "' is not a plugin NAME (pktbrokerctl's options go before 'plugin')";
  }
  if (name.size() > proto::max_plugin_name) {
    return "plugin: a plugin NAME has at most " + std::to_string(proto::max_plugin_name) + " bytes";
  }
  if (args.size() > proto::max_plugin_args) {
    return "plugin " + name + ": at most " + std::to_string(proto::max_plugin_args) +
           " arguments, not " + std::to_string(args.size());
  }
  for (const std::string& arg : args) {
    if (arg.size() > proto::max_plugin_arg) {
      return "plugin " + name + ": an argument has at most " +
             std::to_string(proto::max_plugin_arg) + " bytes, not " + std::to_string(arg.size());
    }
  }
  return {};
}

int plugin_command(pktbroker::Client& client, const std::string& name,
                   const std::vector<std::string>& args, bool json) {
  pktbroker::proto::PluginCommandReply reply;
  if (const auto error = client.plugin_command(name, args, reply)) return fail(client, error);
  const char* line_end = reply.text.empty() || reply.text.ends_with('\n') ? "" : "\n";
  if (json) {
    std::cout << "{\"ok\":" << (reply.ok ? "true" : "false")
              << ",\"text\":" << json_string(reply.text) << "}\n";
  } else if (reply.ok) {
    std::cout << reply.text << line_end;
  } else {
    std::cerr << "pktbrokerctl: plugin " << name << ": "
              << (reply.text.empty() ? "failed, no reason given\n" : reply.text) << line_end;
  }
  return reply.ok ? exit_ok : exit_refused;
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket_path = pktbroker::proto::default_socket_path;
  std::string command;
  bool json = false;
  po::options_description visible(usage, 80);
  visible.add_options()("socket,s", po::value(&socket_path)->value_name("PATH"),
                        "the broker's socket (default /run/pktbroker/broker.sock)")(
      "json", po::bool_switch(&json), "print JSON for scripts instead of tables")(
      "help,h", "show this help and exit");
  std::string plugin;
  std::vector<std::string> plugin_args;
  po::options_description hidden;
  hidden.add_options()("command", po::value(&command))("name", po::value(&plugin))(
      "args", po::value(&plugin_args));
  po::options_description all;
  all.add(visible).add(hidden);
  po::positional_options_description positional;
  positional.add("command", 1).add("name", 1).add("args", -1);
  po::variables_map values;
  try {
    po::store(po::command_line_parser(argc, argv)
                  .options(all)
                  .positional(positional)
                  .extra_style_parser(stop_at_plugin)
                  .run(),
              values);
    po::notify(values);
  } catch (const po::error& error) {
    std::cerr << "pktbrokerctl: " << error.what() << "\nTry 'pktbrokerctl --help'.\n";
    return exit_usage;
  }
  if (values.count("help") != 0) {
    std::cout << visible << epilogue;
    return exit_ok;
  }
  if (command != "status" && command != "sessions" && command != "stats" && command != "reload" &&
      command != "plugin") {
    std::cerr << "pktbrokerctl: "
              << (command.empty() ? "no command" : "unknown command '" + command + "'")
              << "; expected status, sessions, stats, reload or plugin\n";
    return exit_usage;
  }
  if (command != "plugin" && values.count("name") != 0) {
    std::cerr << "pktbrokerctl: " << command << " takes no arguments\n";
    return exit_usage;
  }
  if (command == "plugin") {
    if (const std::string error = plugin_usage_error(plugin, plugin_args); !error.empty()) {
      std::cerr << "pktbrokerctl: " << error << "\nTry 'pktbrokerctl --help'.\n";
      return exit_usage;
    }
  }
  pktbroker::Client client;
  if (const auto error =
          client.connect(socket_path, "pktbrokerctl", pktbroker::proto::role_manage)) {
    if (error == pktbroker::ClientError::broker_error) return fail(client, error);
    std::cerr << "pktbrokerctl: cannot reach the broker at " << socket_path << ": "
              << error.message() << '\n';
    return exit_unreachable;
  }
  if (command == "sessions") return show_sessions(client, json);
  if (command == "reload") return reload(client, json);
  if (command == "plugin") return plugin_command(client, plugin, plugin_args, json);
  return show_stats(client, json, command == "status");
}
