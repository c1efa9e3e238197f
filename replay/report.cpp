#include "replay/report.hpp"

#include "tools/json_string.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

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

/// "complete 3, capture_gap 0, ...": every status, in declaration order, then ok and failed.
std::vector<std::pair<std::string_view, std::size_t>> status_counts(const Summary& summary) {
  std::vector<std::pair<std::string_view, std::size_t>> counts;
  for (std::size_t i = 0; i < status_count; ++i) {
    const auto status = static_cast<Status>(i);
    counts.emplace_back(to_string(status),
                        std::count_if(summary.flows.begin(), summary.flows.end(),
                                      [&](const FlowResult& f) { return f.status == status; }));
  }
  const std::size_t ok = counts.front().second;  // complete
  counts.emplace_back("ok", ok);
  counts.emplace_back("failed", summary.flows.size() - ok);
  return counts;
}

}  // namespace

CaptureFacts::CaptureFacts(std::string file_name, const Capture& capture, const Flows& flows)
    : file(std::move(file_name)),
      link_type(capture.link_type),
      packets(capture.packets.size()),
      truncated(capture.skipped_truncated),
      not_ip(capture.skipped_non_ip),
      tso_lengths(capture.tso_lengths),
      bad_packets(flows.bad_packets),
      other_protocols(flows.other_protocols),
      fragments(flows.fragments),
      reassembled(flows.reassembled),
      late_segments(flows.late_segments) {}

std::string CaptureFacts::left_out() const {
  std::string text;
  const auto add = [&](std::uint64_t count, std::string_view what) {
    if (count != 0) text += fmt::format("{}{} {}", text.empty() ? "" : ", ", count, what);
  };
  add(truncated, "cut short (snap length, or IPv4 over 64 KiB)");
  add(not_ip, "not IP (ARP, LLDP, STP, ...)");
  add(bad_packets, "not parsed (bad lengths or headers)");
  add(other_protocols, "neither TCP nor UDP");
  add(fragments, "fragments never completed");
  add(late_segments, "TCP segments after their connection closed");
  return text;
}

void print_table(std::ostream& out, const CaptureFacts& capture, const Summary& summary,
                 bool every_flow) {
  std::size_t tcp = 0;
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
  for (const FlowResult& flow : summary.flows) {
    tcp += flow.protocol == 6 ? 1 : 0;
    sent += flow.bytes_sent;
    received += flow.bytes_received;
  }
  out << fmt::format("{}: {} packets ({}), {} flows ({} tcp, {} udp)", capture.file,
                     capture.packets, capture.link_type, summary.flows.size(), tcp,
                     summary.flows.size() - tcp);
  if (const std::string left_out = capture.left_out(); !left_out.empty()) {
    out << "; left out: " << left_out;
  }
  if (capture.reassembled != 0) out << fmt::format("; {} reassembled", capture.reassembled);
  if (capture.tso_lengths != 0) {
    out << fmt::format("; {} TSO lengths taken from the capture", capture.tso_lengths);
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
    if (flow.gaps != 0) {
      out << fmt::format("       the capture lost {} bytes in {} gaps\n", flow.gap_bytes,
                         flow.gaps);
    }
    if (!flow.reason.empty()) out << "       " << flow.reason << "\n";
  }
  const double elapsed = seconds(summary.elapsed);
  out << fmt::format(
      "replayed {} flows in {:.2f} s ({:.1f} flows/s), sent {} bytes, received {} "
      "bytes\n",
      summary.flows.size(), elapsed,
      elapsed > 0 ? static_cast<double>(summary.flows.size()) / elapsed : 0.0, sent, received);
  // ok and failed, then the statuses that occurred (--json lists every one, zeros too).
  const auto counts = status_counts(summary);
  std::string statuses =
      fmt::format("{} {}, {} {}", counts[status_count].first, counts[status_count].second,
                  counts[status_count + 1].first, counts[status_count + 1].second);
  for (std::size_t i = 0; i < status_count; ++i) {
    if (counts[i].second != 0)
      statuses += fmt::format("; {} {}", counts[i].first, counts[i].second);
  }
  out << "status: " << statuses << "\n";
}

void print_json(std::ostream& out, const CaptureFacts& capture, const Summary& summary) {
  out << R"({"capture": {"file": )" << json_string(capture.file) << R"(, "link_type": )"
      << json_string(capture.link_type)
      << fmt::format(
             R"(, "packets": {}, "truncated": {}, "not_ip": {}, "tso_lengths": {}, )"
             R"("bad_packets": {}, "other_protocols": {}, "fragments": {}, "reassembled": {}, )"
             R"("late_segments": {}}},)",
             capture.packets, capture.truncated, capture.not_ip, capture.tso_lengths,
             capture.bad_packets, capture.other_protocols, capture.fragments, capture.reassembled,
             capture.late_segments)
      << "\n \"flows\": [";
  const char* separator = "\n  ";
  for (const FlowResult& flow : summary.flows) {
    out << separator
        << fmt::format(
               R"({{"id": {}, "protocol": "{}", "recorded_server": {}, "live_server": {}, )"
               R"("plugin": {}, "status": "{}", "turn": {}, "turns": {}, "bytes_sent": {}, )"
               R"("bytes_received": {}, "between_turns": {}, "gaps": {}, "gap_bytes": {}, )"
               R"("duration_us": {}, "parent": {}, "reason": {}}})",
               flow.id, protocol_name(flow.protocol), json_string(flow.recorded_server.to_string()),
               json_string(flow.live_server.port != 0 ? flow.live_server.to_string()
                                                      : std::string()),
               json_string(flow.plugin), to_string(flow.status), flow.turn, flow.turns,
               flow.bytes_sent, flow.bytes_received, flow.between_turns, flow.gaps, flow.gap_bytes,
               flow.duration.count(), flow.parent, json_string(flow.reason));
    separator = ",\n  ";
  }
  out << "],\n \"summary\": {"
      << fmt::format(R"("flows": {}, "elapsed_s": {:.3f})", summary.flows.size(),
                     seconds(summary.elapsed));
  for (const auto& [status, count] : status_counts(summary)) {
    out << fmt::format(R"(, "{}": {})", status, count);
  }
  out << "}}\n";
}

}  // namespace pktbroker::replay
