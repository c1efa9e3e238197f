#include "replay/report.hpp"

#include "tools/json_string.hpp"

#include <fmt/format.h>

#include <map>

namespace pktbroker::replay {
namespace {

constexpr std::size_t max_listed = 50;

std::string protocol_name(std::uint8_t protocol) {
  return protocol == 6 ? "tcp" : "udp";
}

std::string status_text(const FlowResult& flow) {
  std::string text(to_string(flow.status));
  if (flow.turn != 0) text += fmt::format(" at turn {}", flow.turn);
  return text;
}

double seconds(std::chrono::microseconds us) {
  return static_cast<double>(us.count()) / 1e6;
}

}  // namespace

void print_table(std::ostream& out, const CaptureFacts& capture, const Summary& summary,
                 bool every_flow) {
  std::size_t tcp = 0;
  std::map<std::string_view, std::size_t> by_status;
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
  for (const FlowResult& flow : summary.flows) {
    tcp += flow.protocol == 6 ? 1 : 0;
    ++by_status[to_string(flow.status)];
    sent += flow.bytes_sent;
    received += flow.bytes_received;
  }
  out << fmt::format("{}: {} packets ({}), {} flows ({} tcp, {} udp)", capture.file,
                     capture.packets, capture.link_type, summary.flows.size(), tcp,
                     summary.flows.size() - tcp);
  if (capture.skipped + capture.bad_packets + capture.other_protocols + capture.fragments > 0) {
    out << fmt::format(
        "; skipped: {} bad, {} not IP or truncated, {} other protocols, {} "
        "fragments",
        capture.bad_packets, capture.skipped, capture.other_protocols, capture.fragments);
  }
  out << "\n";
  std::size_t listed = 0;
  for (const FlowResult& flow : summary.flows) {
    if (!every_flow && flow.status == Status::complete) continue;
    if (listed == 0) {
      out << fmt::format("{:>5}  {:<5} {:<44} {:<6} {:>5} {:>10} {:>10}  {}\n", "flow", "proto",
                         "server: recorded -> live", "plugin", "turns", "sent", "received",
                         "status");
    }
    if (++listed > max_listed) {
      out << "  ... (--json lists every flow)\n";
      break;
    }
    const std::string server =
        flow.recorded_server.to_string() + " -> " +
        (flow.live_server.port != 0 ? flow.live_server.to_string() : std::string("-"));
    out << fmt::format(
        "{:>5}  {:<5} {:<44} {:<6} {:>5} {:>10} {:>10}  {}{}\n", flow.id,
        protocol_name(flow.protocol), server, flow.plugin.empty() ? "-" : flow.plugin, flow.turns,
        flow.bytes_sent, flow.bytes_received, status_text(flow),
        flow.parent != 0 ? fmt::format(" (expected by flow {})", flow.parent) : std::string());
  }
  const double elapsed = seconds(summary.elapsed);
  out << fmt::format(
      "replayed {} flows in {:.2f} s ({:.1f} flows/s), sent {} bytes, received {} "
      "bytes\n",
      summary.flows.size(), elapsed,
      elapsed > 0 ? static_cast<double>(summary.flows.size()) / elapsed : 0.0, sent, received);
  std::string statuses;
  for (const auto& [status, count] : by_status) {
    statuses += fmt::format("{}{} {}", statuses.empty() ? "" : ", ", status, count);
  }
  out << "status: " << statuses << "\n";
}

void print_json(std::ostream& out, const CaptureFacts& capture, const Summary& summary) {
  std::map<std::string_view, std::size_t> by_status;
  out << R"({"capture": {"file": )" << json_string(capture.file) << R"(, "link_type": )"
      << json_string(capture.link_type)
      << fmt::format(
             ", \"packets\": {}, \"skipped\": {}, \"bad_packets\": {}, "
             "\"other_protocols\": {}, \"fragments\": {}}},\n",
             capture.packets, capture.skipped, capture.bad_packets, capture.other_protocols,
             capture.fragments)
      << " \"flows\": [";
  const char* separator = "\n  ";
  for (const FlowResult& flow : summary.flows) {
    ++by_status[to_string(flow.status)];
    out << separator
        << fmt::format(
               "{{\"id\": {}, \"protocol\": \"{}\", \"recorded_server\": {}, "
               "\"live_server\": {}, \"plugin\": {}, \"status\": \"{}\", \"turn\": {}, "
               "\"turns\": {}, \"bytes_sent\": {}, \"bytes_received\": {}, "
               "\"duration_us\": {}, \"parent\": {}}}",
               flow.id, protocol_name(flow.protocol), json_string(flow.recorded_server.to_string()),
               json_string(flow.live_server.port != 0 ? flow.live_server.to_string()
                                                      : std::string()),
               json_string(flow.plugin), to_string(flow.status), flow.turn, flow.turns,
               flow.bytes_sent, flow.bytes_received, flow.duration.count(), flow.parent);
    separator = ",\n  ";
  }
  out << "],\n \"summary\": {"
      << fmt::format(R"("flows": {}, "elapsed_s": {:.3f})", summary.flows.size(),
                     seconds(summary.elapsed));
  for (const auto& [status, count] : by_status) out << fmt::format(", \"{}\": {}", status, count);
  out << "}}\n";
}

}  // namespace pktbroker::replay
