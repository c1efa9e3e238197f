// pktreplay: replays the client side of captured TCP and UDP flows against live servers.
#include "plugins/host/plugin_path.hpp"
#include "replay/capture.hpp"
#include "replay/flows.hpp"
#include "replay/replayer.hpp"
#include "replay/report.hpp"

#include <boost/program_options.hpp>

#include <arpa/inet.h>
#include <unistd.h>

#include <charconv>
#include <iostream>
#include <optional>

namespace po = boost::program_options;
using namespace pktbroker;
using namespace pktbroker::replay;

namespace {

constexpr int exit_ok = 0;
constexpr int exit_flows_failed = 1;
constexpr int exit_usage = 2;
constexpr int exit_capture = 3;

constexpr const char* description =
    R"(pktreplay - replay the client side of captured flows against live servers

Usage: pktreplay CAPTURE --target ADDRESS[:PORT] [OPTIONS]

pktreplay reads a pcap or pcapng capture (Ethernet with VLAN/QinQ, MPLS or
802.3 SNAP; Linux cooked; raw IP; loopback), reassembles its TCP streams (out
of order, retransmitted and overlapping segments, streams without a handshake,
segments the capture lost: skipped and counted as gaps) and UDP exchanges, v4
and v6, fragments included, and replays each flow's client side over an
ordinary socket (no root needed): it sends what the client sent, turn by turn,
and reads what the live server answers. When the server's answer is complete
is decided by the flow's plugin (http: Content-Length, chunked or close; dns:
one response per query, by id; ftp: a complete reply, and each data
connection is replayed to the port the live server announces, or accepted
from it in active mode) or, without one, by the recorded byte count or an
idle timeout, whichever comes first. A capture that starts mid-connection has
its server told by the ports (a plugin's, well-known, non-ephemeral).

Options)";

constexpr const char* epilogue = R"(
Each flow ends with a status:
  complete             every turn replayed (and, with --compare, answered as
                       recorded)
  capture_gap          every turn replayed, but the capture lost some of the
                       flow's bytes (a segment never captured)
  server_silent        no answer in a turn the server answered in the capture
  reset, refused       the connection was reset or refused (TCP RST, or ICMP
                       port unreachable for UDP)
  unreachable          no route, or the connect timed out
  closed_early         the server closed before the client's last turn
  response_differs     --compare: an answer differs from the recorded one
  no_recorded_answer   --compare: the server answered where the capture has
                       no answer to compare with
  stalled              no progress within --flow-timeout
  turn_bytes_exceeded  a server turn sent more than --turn-max-bytes
  turn_time_exceeded   a server turn lasted longer than --turn-max-time
  not_started          an expected flow the live server never announced
  skipped              not replayed: a TCP flow without its handshake whose
                       ports do not tell the server (the reason says so)
What the server sends outside a turn it answers in is kept for its next turn
(between_turns); after the client's last turn its answer is read until it is
quiet. The summary counts every status, and ok and failed.

Plugins: dns, http and ftp are loaded from $PKTBROKER_PLUGIN_PATH or the
installed plugin directory when present; --plugin adds others.

Exit status:
  0  every flow complete (and, with --compare, every answer as recorded)
  1  some flow did not complete, or an answer differed
  2  bad command line
  3  the capture cannot be read, or holds nothing to replay
)";

struct Arguments {
  std::string capture;
  std::string target;
  std::vector<std::string> maps;
  std::vector<std::string> plugins;
  bool no_plugins = false;
  std::string timing = "asap";
  bool json = false;
  std::string pcap_out;
  bool every_flow = false;
  unsigned turn_timeout_ms = 1000;
  unsigned flow_timeout_ms = 30000;
  unsigned turn_max_time_s = 120;
  std::uint64_t turn_max_mib = 1024;
  std::size_t max_flow_mib = 16;
  std::size_t max_memory_mib = 1024;
};

std::optional<IpAddress> parse_address(const std::string& text) {
  IpAddress address;
  if (inet_pton(AF_INET, text.c_str(), address.bytes.data()) == 1) {
    address.family = 4;
    return address;
  }
  if (inet_pton(AF_INET6, text.c_str(), address.bytes.data()) == 1) {
    address.family = 6;
    return address;
  }
  return std::nullopt;
}

/// "1.2.3.4", "1.2.3.4:80", "::1", "[::1]:80".
std::optional<std::pair<IpAddress, std::optional<std::uint16_t>>> parse_endpoint(
    const std::string& text) {
  std::string host = text;
  std::string port;
  if (text.starts_with('[')) {
    const auto close = text.find(']');
    if (close == std::string::npos) return std::nullopt;
    host = text.substr(1, close - 1);
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':') return std::nullopt;
      port = text.substr(close + 2);
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    host = text.substr(0, text.find(':'));
    port = text.substr(text.find(':') + 1);
  }
  const auto address = parse_address(host);
  if (!address) return std::nullopt;
  if (port.empty()) return std::pair(*address, std::optional<std::uint16_t>());
  unsigned value = 0;
  const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (error != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
    return std::nullopt;
  }
  return std::pair(*address, std::optional(static_cast<std::uint16_t>(value)));
}

std::string usage_error(const std::string& message) {
  std::cerr << "pktreplay: " << message << "\nTry 'pktreplay --help'.\n";
  return {};
}

/// The default plugins that are installed, plus --plugin NAME or NAME=PATH.
std::vector<PluginSpec> plugin_specs(const Arguments& arguments) {
  std::vector<PluginSpec> specs;
  if (!arguments.no_plugins) {
    for (const char* name : {"dns", "http", "ftp"}) {
      try {
        specs.push_back({name, find_plugin(name, "default"), {}, "default"});
      } catch (const PluginError&) {  // not installed: the default turn-taking applies
      }
    }
  }
  for (const std::string& option : arguments.plugins) {
    const auto equals = option.find('=');
    PluginSpec spec;
    spec.name = option.substr(0, equals);
    spec.origin = "--plugin " + option;
    spec.path = equals == std::string::npos ? find_plugin(spec.name, spec.origin)
                                            : std::filesystem::path(option.substr(equals + 1));
    std::erase_if(specs, [&](const PluginSpec& s) { return s.name == spec.name; });
    specs.push_back(std::move(spec));
  }
  return specs;
}

}  // namespace

int main(int argc, char** argv) {
  Arguments arguments;
  Options options;
  po::options_description visible(description, 80);
  visible.add_options()("target,t", po::value(&arguments.target)->value_name("ADDR[:PORT]"),
                        "send every flow to ADDR, on its recorded server port unless PORT "
                        "is given")(
      "map,m", po::value(&arguments.maps)->value_name("REC=LIVE")->composing(),
      "send flows to recorded server REC (ip:port) to LIVE (ip:port) instead; repeatable")(
      "concurrency,c", po::value(&options.concurrency)->value_name("N")->default_value(64),
      "flows replayed at once")(
      "timing", po::value(&arguments.timing)->value_name("MODE")->default_value("asap"),
      "asap (as fast as possible) or original (recorded start times and pauses)")(
      "speed", po::value(&options.speed)->value_name("X")->default_value(1.0),
      "with --timing original: play X times faster")(
      "turn-timeout", po::value(&arguments.turn_timeout_ms)->value_name("MS")->default_value(1000),
      "a server quiet this long has finished its turn (or is silent, if it said nothing)")(
      "flow-timeout", po::value(&arguments.flow_timeout_ms)->value_name("MS")->default_value(30000),
      "a flow without progress this long is ended as stalled")(
      "turn-max-time", po::value(&arguments.turn_max_time_s)->value_name("S")->default_value(120),
      "a server turn that lasts longer ends the flow (turn_time_exceeded): a server "
      "that streams on")("turn-max-bytes",
                         po::value(&arguments.turn_max_mib)->value_name("MIB")->default_value(1024),
                         "a server turn that sends more ends the flow (turn_bytes_exceeded)")(
      "compare", po::bool_switch(&options.compare),
      "compare each live answer with the recorded one (plugins mask what always changes: "
      "HTTP dates, DNS ids)")(
      "plugin", po::value(&arguments.plugins)->value_name("NAME[=PATH]")->composing(),
      "load another plugin; repeatable")("no-plugins", po::bool_switch(&arguments.no_plugins),
                                         "use the default turn-taking for every flow")(
      "max-flow-memory", po::value(&arguments.max_flow_mib)->value_name("MIB")->default_value(16),
      "server bytes kept per turn for plugins and --compare (the rest is counted; "
      "a larger answer is not compared)")(
      "max-memory", po::value(&arguments.max_memory_mib)->value_name("MIB")->default_value(1024),
      "refuse captures whose packets take more")(
      "pcap-out", po::value(&arguments.pcap_out)->value_name("FILE"),
      "write the live traffic as a pcap (raw IP; each flow's exchange as TCP segments or "
      "UDP datagrams, rebuilt from what the sockets sent and read)")(
      "json", po::bool_switch(&arguments.json), "print the results as JSON")(
      "all", po::bool_switch(&arguments.every_flow), "list every flow, not only failed ones")(
      "help,h", "show this help")("version", "show the version");
  po::options_description hidden;
  hidden.add_options()("capture", po::value(&arguments.capture));
  po::options_description all;
  all.add(visible).add(hidden);
  po::positional_options_description positional;
  positional.add("capture", 1);
  po::variables_map values;
  try {
    po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(),
              values);
    po::notify(values);
  } catch (const po::error& error) {
    usage_error(error.what());
    return exit_usage;
  }
  if (values.count("help") != 0) {
    std::cout << visible << epilogue;
    return exit_ok;
  }
  if (values.count("version") != 0) {
    std::cout << "pktreplay " << PKTBROKER_VERSION << '\n';
    return exit_ok;
  }
  if (arguments.capture.empty()) return usage_error("no capture file given"), exit_usage;
  const auto target = parse_endpoint(arguments.target);
  if (!target) {
    usage_error(arguments.target.empty()
                    ? "--target is required"
                    : "bad --target '" + arguments.target + "': expected ADDRESS or ADDRESS:PORT");
    return exit_usage;
  }
  options.target = target->first;
  options.target_port = target->second;
  for (const std::string& map : arguments.maps) {
    const auto equals = map.find('=');
    const auto from = parse_endpoint(map.substr(0, equals));
    const auto to =
        equals == std::string::npos ? std::nullopt : parse_endpoint(map.substr(equals + 1));
    if (!from || !to || !from->second || !to->second) {
      usage_error("bad --map '" + map + "': expected RECORDED_IP:PORT=LIVE_IP:PORT");
      return exit_usage;
    }
    options.map[Endpoint{from->first, *from->second}.to_string()] = {to->first, *to->second};
  }
  if (arguments.timing != "asap" && arguments.timing != "original") {
    usage_error("bad --timing '" + arguments.timing + "': expected asap or original");
    return exit_usage;
  }
  options.timing = arguments.timing == "original" ? Timing::original : Timing::asap;
  if (!(options.speed > 0) || options.concurrency == 0) {
    usage_error("--speed and --concurrency must be positive");
    return exit_usage;
  }
  if (arguments.max_flow_mib == 0 || arguments.turn_timeout_ms == 0 ||
      arguments.flow_timeout_ms == 0 || arguments.turn_max_time_s == 0 ||
      arguments.turn_max_mib == 0) {
    usage_error(
        "--max-flow-memory, --turn-timeout, --flow-timeout, --turn-max-time and "
        "--turn-max-bytes must be positive");
    return exit_usage;
  }
  if (arguments.max_flow_mib > 4096 || arguments.turn_max_mib > (std::uint64_t{1} << 40)) {
    usage_error("--max-flow-memory is at most 4096 MiB, --turn-max-bytes at most 2^40 MiB");
    return exit_usage;
  }
  options.turn_timeout = std::chrono::milliseconds(arguments.turn_timeout_ms);
  options.turn_max_time = std::chrono::seconds(arguments.turn_max_time_s);
  options.turn_max_bytes = arguments.turn_max_mib << 20;
  options.flow_timeout = std::chrono::milliseconds(arguments.flow_timeout_ms);
  options.max_flow_bytes = arguments.max_flow_mib << 20;
  options.max_total_bytes = arguments.max_memory_mib << 20;

  std::shared_ptr<const PluginSet> plugins;
  try {
    plugins = std::make_shared<const PluginSet>(plugin_specs(arguments));
  } catch (const PluginError& error) {
    std::cerr << "pktreplay: " << error.what() << '\n';
    return exit_usage;
  }

  Capture capture;
  try {
    capture = read_capture(arguments.capture, options.max_total_bytes);
  } catch (const CaptureError& error) {
    std::cerr << "pktreplay: " << error.what() << '\n';
    return exit_capture;
  }
  const Flows flows = assemble_flows(capture, [&](std::uint8_t protocol, std::uint16_t port) {
    return plugins->serves_port(protocol, port);
  });
  const CaptureFacts facts(arguments.capture, capture, flows);
  capture.packets.clear();
  capture.packets.shrink_to_fit();
  if (flows.flows.empty()) {
    const std::string left_out = facts.left_out();
    std::cerr << "pktreplay: " << arguments.capture << ": nothing to replay (" << facts.packets
              << " IP packets, no TCP or UDP flow carrying data"
              << (left_out.empty() ? "" : "; left out: " + left_out) << ")\n";
    return exit_capture;
  }

  std::optional<LiveCapture> pcap_out;
  if (!arguments.pcap_out.empty()) {
    try {
      options.pcap_out = &pcap_out.emplace(arguments.pcap_out);
    } catch (const CaptureError& error) {
      std::cerr << "pktreplay: --pcap-out " << error.what() << '\n';
      return exit_usage;
    }
  }

  Progress progress;
  if (!arguments.json && isatty(STDERR_FILENO) != 0) {
    progress = [](std::size_t done, std::size_t total, std::size_t active) {
      std::cerr << "\r" << done << "/" << total << " flows done, " << active << " running   "
                << std::flush;
    };
  }
  const Summary summary = replay_flows(flows.flows, *plugins, options, progress);
  if (progress) std::cerr << "\r\033[K";
  if (arguments.json) {
    print_json(std::cout, facts, summary);
  } else {
    print_table(std::cout, facts, summary, arguments.every_flow || summary.flows.size() <= 20);
  }
  const bool all_complete =
      std::all_of(summary.flows.begin(), summary.flows.end(),
                  [](const FlowResult& f) { return f.status == Status::complete; });
  if (!all_complete &&
      std::all_of(summary.flows.begin(), summary.flows.end(), [](const FlowResult& f) {
        return f.status == Status::refused || f.status == Status::unreachable;
      })) {
    std::cerr << "pktreplay: the target refused or could not be reached for every flow\n";
  }
  return all_complete ? exit_ok : exit_flows_failed;
}
