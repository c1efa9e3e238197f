#include "broker/telemetry/metrics.hpp"

#include "broker/stats_report.hpp"

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <utility>

namespace pktbroker {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

// The length of the UTF-8 sequence at `text[i]`, or 0 if it is not one.
std::size_t utf8_sequence(std::string_view text, std::size_t i) noexcept {
  const auto byte = [&](std::size_t at) { return static_cast<unsigned char>(text[at]); };
  const unsigned char lead = byte(i);
  if (lead < 0x80) return 1;
  const std::size_t length = (lead & 0xe0) == 0xc0   ? 2
                             : (lead & 0xf0) == 0xe0 ? 3
                             : (lead & 0xf8) == 0xf0 ? 4
                                                     : 0;
  if (length == 0) return 0;
  constexpr std::uint32_t shortest[] = {0, 0, 0x80, 0x800, 0x10000};  // no overlong forms
  const std::uint32_t min = shortest[length];
  if (i + length > text.size()) return 0;
  std::uint32_t code = lead & (0x7f >> length);
  for (std::size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return 0;
    code = (code << 6) | (byte(i + k) & 0x3f);
  }
  const bool surrogate = code >= 0xd800 && code <= 0xdfff;
  return code < min || code > 0x10ffff || surrogate ? 0 : length;
}

// Label values must be UTF-8, or Prometheus rejects the whole scrape; a client's session name
// need not be. Each byte that does not start a valid sequence becomes U+FFFD.
std::string utf8_label(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t length = utf8_sequence(text, i);
    if (length == 0) {
      out += "\xef\xbf\xbd";
      ++i;
    } else {
      out.append(text.substr(i, length));
      i += length;
    }
  }
  return out;
}

/// Families by name, in the order first added; each metric added with its labels.
class Families {
 public:
  void add(const std::string& name, MetricType type, const std::string& help, Labels labels,
           double value) {
    ClientMetric metric;
    for (auto& label : labels) label.value = utf8_label(label.value);
    metric.label = std::move(labels);
    switch (type) {
      case MetricType::Counter: metric.counter.value = value; break;
      case MetricType::Gauge: metric.gauge.value = value; break;
      default: metric.untyped.value = value; break;
    }
    family(name, type, help).metric.push_back(std::move(metric));
  }

  MetricFamily& family(const std::string& name, MetricType type, const std::string& help) {
    const auto [it, fresh] = index_.emplace(name, families_.size());
    if (fresh) families_.push_back({name, help, type, {}});
    return families_[it->second];
  }

  std::vector<MetricFamily> take() { return std::move(families_); }

 private:
  std::map<std::string, std::size_t> index_;
  std::vector<MetricFamily> families_;
};

// How a queue counter of `pktbrokerctl stats` is exported; counters not listed here become
// pktbroker_queue_NAME_total.
struct QueueMetric {
  std::string_view entry;
  std::string_view name;  ///< empty: not exported as such (a labelled family says it better)
  MetricType type;
  std::string_view help;
};
constexpr QueueMetric queue_metrics[] = {
    {"packets", "pktbroker_queue_packets_total", MetricType::Counter, "Packets received"},
    {"bytes", "pktbroker_queue_bytes_total", MetricType::Counter, "Bytes received"},
    {"accepted", "", MetricType::Counter, ""},
    {"dropped", "", MetricType::Counter, ""},
    {"repeated", "", MetricType::Counter, ""},
    {"netlink_errors", "", MetricType::Counter, ""},
    {"default", "pktbroker_queue_default_verdicts_total", MetricType::Counter,
     "Packets no rule matched, given the default verdict"},
    {"malformed", "pktbroker_queue_malformed_packets_total", MetricType::Counter,
     "Packets that could not be parsed, given the malformed verdict"},
    {"outstanding", "pktbroker_queue_outstanding_packets", MetricType::Gauge,
     "Packets waiting for a client's or a plugin's verdict"},
    {"kernel_queue_total", "pktbroker_queue_kernel_waiting_packets", MetricType::Gauge,
     "Packets the kernel holds in the queue, not yet read"},
    {"kernel_queue_dropped", "pktbroker_queue_kernel_dropped_packets_total", MetricType::Counter,
     "Packets the kernel dropped because the queue was full"},
    {"kernel_user_dropped", "pktbroker_queue_kernel_user_dropped_packets_total",
     MetricType::Counter, "Packets the kernel could not send to pktbrokerd (socket buffer full)"},
    {"flows", "pktbroker_queue_flows", MetricType::Gauge, "Flows tracked for plugins"},
    {"expectations", "pktbroker_queue_expectations", MetricType::Gauge,
     "Connections plugins expect and that have not come yet"},
};

void add_queue(Families& out, const QueueSnapshot& snapshot) {
  const std::string queue = std::to_string(snapshot.queue);
  std::vector<proto::StatsEntry> entries;
  add_stats_entries(snapshot, entries);
  for (const proto::StatsEntry& entry : entries) {
    if (entry.scope.starts_with("rule ")) {
      const Labels labels{{"queue", queue}, {"rule", entry.scope.substr(5)}};
      out.add("pktbroker_rule_" + entry.name + "_total", MetricType::Counter,
              "Packets and bytes that matched the rule", labels, static_cast<double>(entry.value));
      continue;
    }
    const auto* known = std::find_if(std::begin(queue_metrics), std::end(queue_metrics),
                                     [&](const QueueMetric& m) { return m.entry == entry.name; });
    if (known == std::end(queue_metrics)) {
      out.add("pktbroker_queue_" + entry.name + "_total", MetricType::Counter,
              "pktbrokerctl stats: " + entry.name, {{"queue", queue}},
              static_cast<double>(entry.value));
    } else if (!known->name.empty()) {
      out.add(std::string(known->name), known->type, std::string(known->help), {{"queue", queue}},
              static_cast<double>(entry.value));
    }
  }
  const QueueCounters& c = snapshot.counters;
  const auto verdicts = [&](const char* verdict, std::uint64_t value) {
    out.add("pktbroker_queue_verdicts_total", MetricType::Counter, "Verdicts given, by verdict",
            {{"queue", queue}, {"verdict", verdict}}, static_cast<double>(value));
  };
  verdicts("accept", c.accepted);
  verdicts("drop", c.dropped);
  verdicts("repeat", c.repeated);
  for (std::size_t i = 0; i < c.malformed_by_reason.size(); ++i) {
    out.add("pktbroker_queue_parse_errors_total", MetricType::Counter,
            "Packets that could not be parsed, by reason",
            {{"queue", queue}, {"reason", std::string(to_string(static_cast<ParseError>(i)))}},
            static_cast<double>(c.malformed_by_reason[i]));
  }
  for (std::size_t i = 0; i < c.netlink_errors.size(); ++i) {
    out.add("pktbroker_queue_netlink_errors_total", MetricType::Counter,
            "Failed netlink exchanges with the kernel, by kind",
            {{"queue", queue}, {"error", std::string(to_string(static_cast<NetlinkError>(i)))}},
            static_cast<double>(c.netlink_errors[i]));
  }
  ClientMetric histogram;
  histogram.label = {{"queue", queue}};
  const auto& counts = snapshot.latency.counts();
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < LatencyHistogram::bounds.size(); ++i) {
    cumulative += counts[i];
    histogram.histogram.bucket.push_back({cumulative, LatencyHistogram::bounds[i]});
  }
  cumulative += counts.back();
  histogram.histogram.bucket.push_back({cumulative, std::numeric_limits<double>::infinity()});
  histogram.histogram.sample_count = cumulative;
  histogram.histogram.sample_sum = snapshot.latency.sum_seconds();
  out.family("pktbroker_verdict_latency_seconds", MetricType::Histogram,
             "Time to a verdict: in the read batch for policy verdicts, and each wait for a "
             "client or plugin")
      .metric.push_back(std::move(histogram));
}

void add_sessions(Families& out, const std::vector<proto::SessionInfo>& sessions) {
  out.family("pktbroker_sessions", MetricType::Gauge, "Client sessions connected")
      .metric.push_back([&] {
        ClientMetric m;
        m.gauge.value = static_cast<double>(sessions.size());
        return m;
      }());
  for (const proto::SessionInfo& s : sessions) {
    const Labels labels{
        {"session", std::to_string(s.id)}, {"name", s.name}, {"uid", std::to_string(s.uid)}};
    out.add("pktbroker_session_delivered_packets_total", MetricType::Counter,
            "Packets handed to the session for its verdict", labels,
            static_cast<double>(s.delivered));
    out.add("pktbroker_session_verdicts_total", MetricType::Counter, "Verdicts the session gave",
            labels, static_cast<double>(s.verdicts));
    out.add("pktbroker_session_fallbacks_total", MetricType::Counter,
            "The session's packets that took their fallback (timeout, overflow, disconnect)",
            labels, static_cast<double>(s.fallbacks));
    out.add("pktbroker_session_outstanding_packets", MetricType::Gauge,
            "Packets waiting for the session's verdict", labels,
            static_cast<double>(s.outstanding));
    out.add("pktbroker_session_subscriptions", MetricType::Gauge, "The session's subscriptions",
            labels, static_cast<double>(s.subscriptions));
  }
}

}  // namespace

std::vector<MetricFamily> to_metric_families(const MetricsSample& sample) {
  Families out;
  for (const QueueSnapshot& queue : sample.queues) add_queue(out, queue);
  for (const PluginCounters& plugin : sample.plugins) {
    for (const auto& [name, value] : plugin.counters) {
      out.add("pktbroker_plugin_events_total", MetricType::Counter,
              "What the plugins count, by plugin and event (their stats counters)",
              {{"plugin", plugin.name}, {"event", name}}, static_cast<double>(value));
    }
  }
  out.add("pktbroker_client_malformed_frames_total", MetricType::Counter,
          "Client frames that could not be decoded", {},
          static_cast<double>(sample.malformed_frames));
  out.add("pktbroker_client_refused_total", MetricType::Counter,
          "Client connections refused (no grant, or a session limit)", {},
          static_cast<double>(sample.refused));
  add_sessions(out, sample.sessions);
  if (sample.events) {
    const auto outcome = [&](const char* name, std::uint64_t value) {
      out.add("pktbroker_events_total", MetricType::Counter,
              "Event log lines: written, or not (past the rate limit, queue full, write failed)",
              {{"outcome", name}}, static_cast<double>(value));
    };
    outcome("written", sample.events->written);
    outcome("suppressed", sample.events->suppressed);
    outcome("lost", sample.events->lost);
    outcome("write_error", sample.events->write_errors);
  }
  out.add("pktbroker_build_info", MetricType::Gauge, "pktbrokerd's version",
          {{"version", PKTBROKER_VERSION_STRING}}, 1);
  return out.take();
}

class MetricsEndpoint::Collector : public prometheus::Collectable {
 public:
  explicit Collector(Gather gather) : gather_(std::move(gather)) {}

  // Scrapes within a second of the last share its sample: a flood of scrapes costs the queues
  // one snapshot a second.
  std::vector<MetricFamily> Collect() const override {
    std::lock_guard lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    if (!cached_ || now - gathered_ >= std::chrono::seconds(1)) {
      std::optional<MetricsSample> sample = gather_();
      if (!sample) {
        spdlog::warn("metrics: the broker did not answer a scrape in time");
        return {};
      }
      cached_ = std::move(sample);
      gathered_ = now;
    }
    return to_metric_families(*cached_);
  }

 private:
  Gather gather_;
  mutable std::mutex mutex_;
  mutable std::optional<MetricsSample> cached_;
  mutable std::chrono::steady_clock::time_point gathered_;
};

MetricsEndpoint::MetricsEndpoint(const std::string& listen, Gather gather)
    : collector_(std::make_shared<Collector>(std::move(gather))) {
  try {
    // Two threads, and a request that does not arrive whole within 2 s is dropped: one idle
    // connection cannot hold the endpoint.
    exposer_ = std::make_unique<prometheus::Exposer>(std::vector<std::string>{
        "listening_ports", listen, "num_threads", "2", "request_timeout_ms", "2000"});
  } catch (const std::exception& error) {
    throw std::runtime_error("metrics: cannot listen on " + listen + ": " + error.what() +
                             " (in use, or IP sockets not allowed: see pktbroker-policy(5))");
  }
  exposer_->RegisterCollectable(collector_);
  spdlog::info("metrics: serving Prometheus metrics on http://{}/metrics", listen);
}

MetricsEndpoint::~MetricsEndpoint() = default;

}  // namespace pktbroker
