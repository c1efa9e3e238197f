// pktbrokerctl: asks a running pktbrokerd for its status, sessions and counters, to reload, to
// run a command of a loaded plugin, or to show, create and police its channels.
#include "pktbroker/client.hpp"
#include "tools/json_string.hpp"
#include "tools/terminal_text.hpp"

#include <boost/program_options.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <grp.h>
#include <pwd.h>

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
  rules      the policy's rules in the order they are tried (by priority,
             then file by file): position, name, packets and bytes decided,
             priority, the file:line it came from, its match and verdict
  reload     make pktbrokerd load its policy again (as SIGHUP does); prints the
             problems when the new policy is rejected
  plugin NAME [ARGS...]
             run a command of the loaded plugin NAME and print its answer.
             Everything after NAME goes to the plugin as it is, options too:
             pktbrokerctl's own options (-s, --json) go before 'plugin'.
             The commands are the plugin's own: see its documentation.
             At most 16 ARGS of up to 256 bytes each; NAME has 1 to 32 bytes.
             With --json, prints {"ok": true|false, "text": "..."}
  channels   every channel you may manage: delivery policy, limits, counters,
             and each member (id, client, pid, uid, rights, frames received,
             sent and missed, frames queued now)
  kick CHANNEL MEMBER
             remove member MEMBER (its id, from 'channels') from CHANNEL; the
             client is told who kicked it. Needs the manage role or the
             channel's manage right
  channel-create NAME
             create a channel until pktbrokerd stops (manage role), with
             --delivery, --link, --max-members, --max-frame, --queue-length,
             --overflow and --access below; you get every right on it

Prompts and answer rules (the prompt role: your own user's; pending and apps
list everyone's for root and the manage role; only root acts for other users):
  pending    the questions of ask rules waiting for an answer: id, user, pid,
             program, destination, connections waiting, seconds left, what
             they get if nobody answers, the ask rule
  answer ID allow|deny [--for MINUTES | --until-exit | --always]
             answer question ID: its connections are released at once. With
             --for, --until-exit or --always the answer also becomes a rule in
             the user's answer file (policy.d/answers-uidUID.yaml), tried where
             the ask rule is, for that program, user and destination
  apps       programs seen opening connections lately: user, pid, program,
             connections, seconds since the last one, latest destinations
  add-rule --answers ASK_RULE --match YAML --verdict accept|drop
             [--until WHEN] [--uid UID]
             write a rule into an answer file (yours; root: --uid's). It is
             tried only where ASK_RULE matched, and only for that user's
             packets (uid: is added to the match)
  delete-rule NAME
             remove rule NAME (ans-uUID-N, from 'rules') from its answer file

Options)";

constexpr const char* epilogue = R"(
Examples:
  pktbrokerctl status
  pktbrokerctl --json stats
  pktbrokerctl rules
  pktbrokerctl plugin resend wakeup --iface ppp0 --addr 192.0.2.7
  pktbrokerctl channel-create lab --delivery switch --access group:lab=receive,send
  pktbrokerctl channels
  pktbrokerctl kick lab 3
  pktbrokerctl pending
  pktbrokerctl answer 7 allow --for 15
  pktbrokerctl add-rule --answers ask-outgoing --verdict accept \
      --match '{app.path: /usr/bin/curl, dport: 443}' --until 2h

Exit status:
  0  success
  1  the broker refused the request (no manage role), rejected the policy, or
     the plugin refused or failed the command; the channel request was refused
  2  bad command line
  3  the broker could not be reached
)";

std::string roles_text(std::uint8_t roles) {
  std::string text;
  if (roles & pktbroker::proto::role_observe) text += "observe,";
  if (roles & pktbroker::proto::role_verdict) text += "verdict,";
  if (roles & pktbroker::proto::role_manage) text += "manage,";
  if (roles & pktbroker::proto::role_prompt) text += "prompt,";
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

int show_rules(pktbroker::Client& client, bool json) {
  pktbroker::proto::RulesReply reply;
  if (const auto error = client.rules(reply)) return fail(client, error);
  if (json) {
    std::cout << "[";
    for (std::size_t i = 0; i < reply.rules.size(); ++i) {
      const auto& r = reply.rules[i];
      std::cout << (i ? "," : "") << "{\"position\":" << i + 1
                << ",\"name\":" << json_string(r.name) << ",\"origin\":" << json_string(r.origin)
                << ",\"priority\":" << r.priority << ",\"match\":" << json_string(r.match)
                << ",\"verdict\":" << json_string(r.verdict) << ",\"packets\":" << r.packets
                << ",\"bytes\":" << r.bytes << "}";
    }
    std::cout << "]\n";
    return exit_ok;
  }
  std::printf("%-4s %-24s %12s %14s %5s  %s\n", "#", "NAME", "PACKETS", "BYTES", "PRIO",
              "ORIGIN / MATCH -> VERDICT");
  for (std::size_t i = 0; i < reply.rules.size(); ++i) {
    const auto& r = reply.rules[i];
    std::printf("%-4zu %-24s %12llu %14llu %5d  %s\n%48s%s -> %s\n", i + 1, r.name.c_str(),
                static_cast<unsigned long long>(r.packets),
                static_cast<unsigned long long>(r.bytes), r.priority, r.origin.c_str(), "",
                r.match.c_str(), r.verdict.c_str());
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

std::string channel_rights_text(std::uint8_t rights) {
  namespace proto = pktbroker::proto;
  std::string text;
  if (rights & proto::right_receive) text += "receive,";
  if (rights & proto::right_send) text += "send,";
  if (rights & proto::right_manage) text += "manage,";
  if (!text.empty()) text.pop_back();
  return text;
}

int show_channels(pktbroker::Client& client, bool json) {
  namespace proto = pktbroker::proto;
  proto::ChannelsReply reply;
  if (const auto error = client.channels(reply)) return fail(client, error);
  const auto link = [](proto::LinkType l) { return l == proto::LinkType::ip ? "ip" : "ethernet"; };
  const auto overflow = [](proto::Overflow o) {
    return o == proto::Overflow::backpressure ? "backpressure" : "drop";
  };
  if (json) {
    std::cout << "[";
    for (std::size_t i = 0; i < reply.channels.size(); ++i) {
      const auto& c = reply.channels[i];
      std::cout << (i ? "," : "") << "{\"name\":" << json_string(c.name)
                << ",\"delivery\":" << json_string(c.delivery) << ",\"link\":\"" << link(c.link)
                << "\",\"overflow\":\"" << overflow(c.overflow)
                << "\",\"max_members\":" << c.max_members << ",\"max_frame\":" << c.max_frame
                << ",\"queue_length\":" << c.queue_length << ",\"frames\":" << c.frames
                << ",\"delivered\":" << c.delivered << ",\"dropped\":" << c.dropped
                << ",\"refused\":" << c.refused << ",\"members\":[";
      for (std::size_t j = 0; j < c.members.size(); ++j) {
        const auto& m = c.members[j];
        std::cout << (j ? "," : "") << "{\"id\":" << m.member_id << ",\"session\":" << m.session_id
                  << ",\"name\":" << json_string(m.name) << ",\"pid\":" << m.pid
                  << ",\"uid\":" << m.uid
                  << ",\"rights\":" << json_string(channel_rights_text(m.rights))
                  << ",\"received\":" << m.received << ",\"sent\":" << m.sent
                  << ",\"dropped\":" << m.dropped << ",\"queued\":" << m.queued << "}";
      }
      std::cout << "]}";
    }
    std::cout << "]\n";
    return exit_ok;
  }
  for (const auto& c : reply.channels) {
    std::printf("%s: %s delivery, %s frames up to %u bytes, %u members at most, queue %u (%s)\n",
                c.name.c_str(), c.delivery.c_str(), link(c.link), c.max_frame, c.max_members,
                c.queue_length, overflow(c.overflow));
    std::printf(
        "  frames %llu  delivered %llu  dropped %llu  refused %llu\n",
        static_cast<unsigned long long>(c.frames), static_cast<unsigned long long>(c.delivered),
        static_cast<unsigned long long>(c.dropped), static_cast<unsigned long long>(c.refused));
    std::printf("  %-6s %-8s %-20s %-8s %-6s %-20s %10s %10s %10s %7s\n", "MEMBER", "SESSION",
                "NAME", "PID", "UID", "RIGHTS", "RECEIVED", "SENT", "DROPPED", "QUEUED");
    for (const auto& m : c.members) {
      std::printf("  %-6u %-8u %-20s %-8u %-6u %-20s %10llu %10llu %10llu %7u\n", m.member_id,
                  m.session_id, m.name.c_str(), m.pid, m.uid, channel_rights_text(m.rights).c_str(),
                  static_cast<unsigned long long>(m.received),
                  static_cast<unsigned long long>(m.sent),
                  static_cast<unsigned long long>(m.dropped), m.queued);
    }
  }
  return exit_ok;
}

/// `user:NAME=receive,send`, `group:NAME=...`, `uid:N=...` or `gid:N=...`; throws po::error.
pktbroker::proto::ChannelAccess parse_access(const std::string& text) {
  namespace proto = pktbroker::proto;
  const auto colon = text.find(':');
  const auto equals = text.find('=');
  if (colon == std::string::npos || equals == std::string::npos || equals < colon) {
    throw po::error("--access '" + text + "': expected user:NAME=RIGHTS (or group:, uid:, gid:)");
  }
  const std::string kind = text.substr(0, colon);
  const std::string who = text.substr(colon + 1, equals - colon - 1);
  proto::ChannelAccess access;
  if (kind == "user") {
    const passwd* entry = getpwnam(who.c_str());
    if (entry == nullptr) throw po::error("--access: unknown user '" + who + "'");
    access.id = entry->pw_uid;
  } else if (kind == "group") {
    const group* entry = getgrnam(who.c_str());
    if (entry == nullptr) throw po::error("--access: unknown group '" + who + "'");
    access = {proto::ChannelAccess::Kind::gid, entry->gr_gid, 0};
  } else if (kind == "uid" || kind == "gid") {
    char* end = nullptr;
    const unsigned long id = std::strtoul(who.c_str(), &end, 10);
    if (who.empty() || *end != '\0' || id > 0xffffffffUL) {
      throw po::error("--access: bad " + kind + " '" + who + "'");
    }
    access.kind = kind == "uid" ? proto::ChannelAccess::Kind::uid : proto::ChannelAccess::Kind::gid;
    access.id = static_cast<std::uint32_t>(id);
  } else {
    throw po::error("--access '" + text + "': expected user:, group:, uid: or gid:");
  }
  std::string rights = text.substr(equals + 1);
  std::size_t start = 0;
  while (start <= rights.size()) {
    const std::size_t comma = std::min(rights.find(',', start), rights.size());
    const std::string right = rights.substr(start, comma - start);
    if (right == "receive") {
      access.rights |= proto::right_receive;
    } else if (right == "send") {
      access.rights |= proto::right_send;
    } else if (right == "manage") {
      access.rights |= proto::right_manage;
    } else {
      throw po::error("--access: unknown right '" + right + "'; expected receive, send, manage");
    }
    start = comma + 1;
  }
  return access;
}

int create_channel(pktbroker::Client& client, pktbroker::proto::ChannelCreate request, bool json) {
  if (const auto error = client.create_channel(request)) return fail(client, error);
  if (json) {
    std::cout << "{\"ok\":true,\"channel\":" << json_string(request.name) << "}\n";
  } else {
    std::cout << "channel " << request.name << " created\n";
  }
  return exit_ok;
}

int kick(pktbroker::Client& client, const std::string& channel, const std::string& member,
         bool json) {
  char* end = nullptr;
  const unsigned long id = std::strtoul(member.c_str(), &end, 10);
  if (member.empty() || *end != '\0' || id > 0xffffffffUL) {
    std::cerr << "pktbrokerctl: kick: MEMBER is a member id (see 'pktbrokerctl channels')\n";
    return exit_usage;
  }
  if (const auto error = client.kick(channel, static_cast<std::uint32_t>(id))) {
    return fail(client, error);
  }
  if (json) {
    std::cout << "{\"ok\":true}\n";
  } else {
    std::cout << "member " << id << " removed from channel " << channel << "\n";
  }
  return exit_ok;
}

using pktbroker::terminal_text;

int show_pending(pktbroker::Client& client, bool json) {
  pktbroker::proto::PendingReply reply;
  if (const auto error = client.pending(reply)) return fail(client, error);
  const auto fallback = [](const pktbroker::proto::Prompt& p) {
    return p.fallback == pktbroker::proto::VerdictCode::accept ? "accept" : "drop";
  };
  if (json) {
    std::cout << "[";
    for (std::size_t i = 0; i < reply.prompts.size(); ++i) {
      const auto& p = reply.prompts[i];
      std::cout << (i ? "," : "") << "{\"id\":" << p.id << ",\"uid\":" << p.uid
                << ",\"pid\":" << p.pid << ",\"path\":" << json_string(p.path)
                << ",\"name\":" << json_string(p.name) << ",\"cmdline\":" << json_string(p.cmdline)
                << ",\"destination\":" << json_string(pktbroker::prompt_destination(p))
                << ",\"waiting\":" << p.waiting << ",\"left_ms\":" << p.left_ms
                << ",\"fallback\":\"" << fallback(p) << "\",\"rule\":" << json_string(p.rule)
                << "}";
    }
    std::cout << "]\n";
    return exit_ok;
  }
  std::printf("%-6s %-6s %-7s %-24s %-26s %7s %5s %-8s %s\n", "ID", "UID", "PID", "PROGRAM",
              "DESTINATION", "WAITING", "LEFT", "FALLBACK", "RULE");
  for (const auto& p : reply.prompts) {
    std::printf("%-6llu %-6u %-7u %-24s %-26s %7u %4us %-8s %s\n",
                static_cast<unsigned long long>(p.id), p.uid, p.pid, terminal_text(p.path).c_str(),
                pktbroker::prompt_destination(p).c_str(), p.waiting, (p.left_ms + 999) / 1000,
                fallback(p), terminal_text(p.rule).c_str());
  }
  return exit_ok;
}

int answer(pktbroker::Client& client, const pktbroker::proto::PromptAnswer& request, bool json) {
  std::string result;
  if (const auto error = client.answer(request, result)) return fail(client, error);
  if (json) {
    std::cout << "{\"ok\":true,\"text\":" << json_string(result) << "}\n";
  } else {
    std::cout << result << '\n';
  }
  return exit_ok;
}

int show_apps(pktbroker::Client& client, bool json) {
  pktbroker::proto::AppsReply reply;
  if (const auto error = client.apps(reply)) return fail(client, error);
  if (json) {
    std::cout << "[";
    for (std::size_t i = 0; i < reply.apps.size(); ++i) {
      const auto& a = reply.apps[i];
      std::cout << (i ? "," : "") << "{\"uid\":" << a.uid << ",\"pid\":" << a.pid
                << ",\"path\":" << json_string(a.path) << ",\"name\":" << json_string(a.name)
                << ",\"connections\":" << a.connections << ",\"idle_ms\":" << a.idle_ms
                << ",\"destinations\":[";
      for (std::size_t j = 0; j < a.destinations.size(); ++j) {
        std::cout << (j ? "," : "") << json_string(a.destinations[j]);
      }
      std::cout << "]}";
    }
    std::cout << "]\n";
    return exit_ok;
  }
  std::printf("%-6s %-7s %-32s %11s %6s %s\n", "UID", "PID", "PROGRAM", "CONNECTIONS", "IDLE",
              "LATEST DESTINATIONS");
  for (const auto& a : reply.apps) {
    std::string latest;
    for (const auto& destination : a.destinations) {
      latest += (latest.empty() ? "" : ", ") + destination;
    }
    std::printf("%-6u %-7u %-32s %11llu %5us %s\n", a.uid, a.pid, terminal_text(a.path).c_str(),
                static_cast<unsigned long long>(a.connections), a.idle_ms / 1000, latest.c_str());
  }
  return exit_ok;
}

int add_rule(pktbroker::Client& client, const pktbroker::proto::RuleAdd& request, bool json) {
  std::string name;
  if (const auto error = client.add_rule(request, name)) return fail(client, error);
  if (json) {
    std::cout << "{\"ok\":true,\"rule\":" << json_string(name) << "}\n";
  } else {
    std::cout << "added " << name << '\n';
  }
  return exit_ok;
}

int delete_rule(pktbroker::Client& client, const std::string& name, bool json) {
  if (const auto error = client.delete_rule(name)) return fail(client, error);
  if (json) {
    std::cout << "{\"ok\":true,\"deleted\":" << json_string(name) << "}\n";
  } else {
    std::cout << "deleted " << name << '\n';
  }
  return exit_ok;
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
  pktbroker::proto::ChannelCreate create;
  std::string link = "ethernet";
  std::string overflow = "drop";
  std::vector<std::string> access;
  po::options_description channel_options("Options of channel-create", 80);
  channel_options.add_options()(
      "delivery", po::value(&create.delivery)->default_value("broadcast")->value_name("PLUGIN"),
      "the delivery policy: broadcast, switch or another loaded plugin's")(
      "link", po::value(&link)->default_value("ethernet")->value_name("ethernet|ip"),
      "what its frames are")("max-members",
                             po::value(&create.max_members)->default_value(16)->value_name("N"),
                             "members at most (1-4096)")(
      "max-frame", po::value(&create.max_frame)->value_name("BYTES"),
      "largest frame (14-65535; default 1518 for ethernet, 65535 for ip)")(
      "queue-length", po::value(&create.queue_length)->default_value(256)->value_name("FRAMES"),
      "frames waiting for one member (1-65536)")(
      "overflow", po::value(&overflow)->default_value("drop")->value_name("drop|backpressure"),
      "a member's full queue drops its frames (counted), or pauses the senders")(
      "access", po::value(&access)->value_name("WHO=RIGHTS"),
      "may be repeated: user:NAME, group:NAME, uid:N or gid:N, then =receive,send,manage");
  visible.add(channel_options);
  std::uint32_t answer_minutes = 0;
  bool until_exit = false;
  bool always = false;
  pktbroker::proto::RuleAdd rule_add;
  std::string rule_verdict;
  std::uint32_t rule_uid = pktbroker::proto::own_uid;
  po::options_description prompt_options("Options of answer and add-rule", 80);
  prompt_options.add_options()("for", po::value(&answer_minutes)->value_name("MINUTES"),
                               "answer: the rule lasts MINUTES (1-10080)")(
      "until-exit", po::bool_switch(&until_exit), "answer: the rule lasts until the program exits")(
      "always", po::bool_switch(&always), "answer: the rule has no end")(
      "answers", po::value(&rule_add.answers)->value_name("ASK_RULE"),
      "add-rule: the ask rule it answers")(
      "match", po::value(&rule_add.match)->value_name("YAML"),
      "add-rule: what it matches, a rule's match: in flow form")(
      "verdict", po::value(&rule_verdict)->value_name("accept|drop"), "add-rule: its verdict")(
      "until", po::value(&rule_add.until)->value_name("WHEN"),
      "add-rule: a duration from now (90s, 5m, 2h, 7d) or a UTC time "
      "(2026-12-01T18:00:00Z); none: no end")(
      "uid", po::value(&rule_uid)->value_name("UID"),
      "add-rule: whose answer file (root only; default: yours)");
  visible.add(prompt_options);
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
    create.link =
        link == "ip" ? pktbroker::proto::LinkType::ip : pktbroker::proto::LinkType::ethernet;
    if (link != "ip" && link != "ethernet") throw po::error("--link is ethernet or ip");
    create.overflow = overflow == "backpressure" ? pktbroker::proto::Overflow::backpressure
                                                 : pktbroker::proto::Overflow::drop;
    if (overflow != "drop" && overflow != "backpressure") {
      throw po::error("--overflow is drop or backpressure");
    }
    if (values.count("max-frame") == 0) {
      create.max_frame = create.link == pktbroker::proto::LinkType::ip ? 65535 : 1518;
    }
    for (const std::string& entry : access) create.access.push_back(parse_access(entry));
  } catch (const po::error& error) {
    std::cerr << "pktbrokerctl: " << error.what() << "\nTry 'pktbrokerctl --help'.\n";
    return exit_usage;
  }
  if (values.count("help") != 0) {
    std::cout << visible << epilogue;
    return exit_ok;
  }
  static const std::map<std::string, std::size_t> arguments = {
      {"status", 0},  {"sessions", 0}, {"stats", 0},          {"reload", 0},     {"rules", 0},
      {"plugin", 99}, {"channels", 0}, {"channel-create", 1}, {"kick", 2},       {"pending", 0},
      {"answer", 2},  {"apps", 0},     {"add-rule", 0},       {"delete-rule", 1}};
  const auto expected = arguments.find(command);
  if (expected == arguments.end()) {
    std::cerr << "pktbrokerctl: "
              << (command.empty() ? "no command" : "unknown command '" + command + "'")
              << "; expected status, sessions, stats, rules, reload, plugin, channels, "
                 "channel-create, kick, pending, answer, apps, add-rule or delete-rule\n";
    return exit_usage;
  }
  const std::size_t given = values.count("name") + plugin_args.size();
  if (command != "plugin" && given != expected->second) {
    std::cerr << "pktbrokerctl: " << command << " takes "
              << (expected->second == 0   ? "no arguments"
                  : expected->second == 1 ? "one argument: NAME"
                  : command == "answer"   ? "two arguments: ID allow|deny"
                                          : "two arguments: CHANNEL MEMBER")
              << "\n";
    return exit_usage;
  }
  if (command == "plugin") {
    if (const std::string error = plugin_usage_error(plugin, plugin_args); !error.empty()) {
      std::cerr << "pktbrokerctl: " << error << "\nTry 'pktbrokerctl --help'.\n";
      return exit_usage;
    }
  }
  pktbroker::proto::PromptAnswer prompt_answer;
  if (command == "answer") {
    const std::string& decision = plugin_args.front();
    const bool timed = values.count("for") != 0;
    const int spans = (timed ? 1 : 0) + (until_exit ? 1 : 0) + (always ? 1 : 0);
    char* end = nullptr;
    prompt_answer.id = std::strtoull(plugin.c_str(), &end, 10);
    std::string problem;
    if (plugin.empty() || *end != '\0') problem = "answer: ID is a number, from 'pending'";
    if (decision != "allow" && decision != "deny") problem = "answer: allow or deny";
    if (spans > 1) problem = "answer: at most one of --for, --until-exit and --always";
    if (timed && (answer_minutes == 0 || answer_minutes > pktbroker::proto::max_answer_minutes)) {
      problem = "answer: --for is 1 to 10080 minutes";
    }
    if (!problem.empty()) {
      std::cerr << "pktbrokerctl: " << problem << "\nTry 'pktbrokerctl --help'.\n";
      return exit_usage;
    }
    prompt_answer.decision = decision == "allow" ? pktbroker::proto::AnswerDecision::allow
                                                 : pktbroker::proto::AnswerDecision::deny;
    prompt_answer.span = timed        ? pktbroker::proto::AnswerSpan::minutes
                         : until_exit ? pktbroker::proto::AnswerSpan::app_exit
                         : always     ? pktbroker::proto::AnswerSpan::always
                                      : pktbroker::proto::AnswerSpan::once;
    prompt_answer.minutes = answer_minutes;
  }
  if (command == "add-rule") {
    if (rule_add.answers.empty() || (rule_verdict != "accept" && rule_verdict != "drop")) {
      std::cerr << "pktbrokerctl: add-rule needs --answers ASK_RULE and --verdict accept|drop"
                   "\nTry 'pktbrokerctl --help'.\n";
      return exit_usage;
    }
    rule_add.verdict = rule_verdict == "accept" ? pktbroker::proto::VerdictCode::accept
                                                : pktbroker::proto::VerdictCode::drop;
    rule_add.uid = rule_uid;
  }
  pktbroker::Client client;
  // A channel's own manage right is enough to list and kick: ask for the channel role too;
  // a user's prompt role is enough for their prompts and answer rules.
  const bool channel_command = command == "channels" || command == "kick";
  const bool prompt_command = command == "pending" || command == "answer" || command == "apps" ||
                              command == "add-rule" || command == "delete-rule";
  const auto roles = static_cast<std::uint8_t>(
      pktbroker::proto::role_manage | (channel_command ? pktbroker::proto::role_channel : 0) |
      (prompt_command ? pktbroker::proto::role_prompt : 0));
  if (const auto error = client.connect(socket_path, "pktbrokerctl", roles)) {
    if (error == pktbroker::ClientError::broker_error) return fail(client, error);
    std::cerr << "pktbrokerctl: cannot reach the broker at " << socket_path << ": "
              << error.message() << '\n';
    return exit_unreachable;
  }
  if (command == "sessions") return show_sessions(client, json);
  if (command == "reload") return reload(client, json);
  if (command == "rules") return show_rules(client, json);
  if (command == "plugin") return plugin_command(client, plugin, plugin_args, json);
  if (command == "channels") return show_channels(client, json);
  if (command == "kick") return kick(client, plugin, plugin_args.front(), json);
  if (command == "pending") return show_pending(client, json);
  if (command == "answer") return answer(client, prompt_answer, json);
  if (command == "apps") return show_apps(client, json);
  if (command == "add-rule") return add_rule(client, rule_add, json);
  if (command == "delete-rule") return delete_rule(client, plugin, json);
  if (command == "channel-create") {
    create.name = plugin;
    return create_channel(client, std::move(create), json);
  }
  return show_stats(client, json, command == "status");
}
