#include "broker/telemetry/metrics.hpp"

#include "broker/stats_report.hpp"
#include "broker/telemetry/latency_histogram.hpp"
#include "broker/verdict_tracker.hpp"

#include <prometheus/text_serializer.h>
#include <catch2/catch.hpp>

#include <limits>
#include <map>
#include <set>
#include <sstream>

using pktbroker::LatencyHistogram;
using namespace std::chrono_literals;

namespace {

std::string text_of(const pktbroker::MetricsSample& sample) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, pktbroker::to_metric_families(sample));
  return out.str();
}

pktbroker::MetricsSample sample_with_traffic() {
  pktbroker::MetricsSample sample;
  pktbroker::QueueSnapshot queue;
  queue.queue = 3;
  queue.counters.received = {10, 1500};
  queue.counters.accepted = 7;
  queue.counters.dropped = 2;
  queue.counters.repeated = 1;
  queue.counters.default_verdicts = 4;
  queue.counters.malformed_by_reason[1] = 5;
  queue.counters.count(pktbroker::NetlinkError::receive_overrun);
  queue.outstanding = 6;
  queue.rules.push_back({"no-telnet", {2, 120}});
  queue.latency.observe(20us, 9);
  queue.latency.observe(2s);
  sample.queues.push_back(queue);
  sample.plugins.push_back({"dns", {{"queries", 11}}});
  sample.malformed_frames = 12;
  sample.refused = 13;
  sample.sessions.push_back({4, "ids \"main\"", 99, 1000, 1000, 3, 2, 1, 20, 19, 1});
  // invalid: a lone continuation byte, an overlong '/', then a valid é, then a cut sequence
  sample.sessions.push_back({5, "a\x80\xc0\xaf\xc3\xa9\xe2\x82", 0, 0, 0, 3, 0, 0, 0, 0, 0});
  return sample;
}

}  // namespace

TEST_CASE("the latency histogram puts each wait in its bucket") {
  LatencyHistogram histogram;
  histogram.observe(5us);     // <= 10 µs
  histogram.observe(2ms, 3);  // <= 5 ms, three packets
  histogram.observe(10us);    // on a bound: that bucket
  histogram.observe(3600s);   // above every bound
  histogram.observe(-1ms);    // a clock step backwards counts as no wait
  const auto& counts = histogram.counts();
  CHECK(counts[0] == 3);
  CHECK(counts[5] == 3);
  CHECK(counts.back() == 1);
  CHECK(histogram.sum_seconds() == Approx(3600 + 0.006 + 0.000015 - 0.001));
}

TEST_CASE("every packet that leaves the tracker is one wait in its histogram") {
  pktbroker::VerdictTracker tracker(0);
  const pktbroker::Verdict accept{pktbroker::VerdictKind::accept, std::nullopt};
  const auto far = pktbroker::Clock::now() + 1h;
  const auto taken = tracker.track({1, 7, accept, far, nullptr});
  (void)tracker.track({2, 7, accept, pktbroker::Clock::now(), nullptr});  // expires
  (void)tracker.track({3, 8, accept, far, nullptr});                      // its session goes
  (void)tracker.track({4, 9, accept, far, nullptr});                      // shutdown
  pktbroker::VerdictTracker::Pending out;
  REQUIRE(tracker.take(taken, 7, out) == pktbroker::VerdictTracker::ResolveResult::resolved);
  CHECK(tracker.take(taken, 7, out) == pktbroker::VerdictTracker::ResolveResult::unknown_token);
  tracker.expire(pktbroker::Clock::now(), [](const auto&) {});
  tracker.release_session(8, [](const auto&) {});
  tracker.release_all([](const auto&) {});
  std::uint64_t waits = 0;
  for (const std::uint64_t count : tracker.waits().counts()) waits += count;
  CHECK(waits == 4);
}

TEST_CASE("metrics follow Prometheus' conventions") {
  const auto families = pktbroker::to_metric_families(sample_with_traffic());
  std::set<std::string> names;
  for (const auto& family : families) {
    INFO(family.name);
    CHECK(names.insert(family.name).second);  // one family per name
    CHECK(family.name.starts_with("pktbroker_"));
    CHECK(family.name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") ==
          std::string::npos);
    CHECK(!family.help.empty());
    CHECK(!family.metric.empty());
    if (family.type == prometheus::MetricType::Counter) {
      CHECK(family.name.ends_with("_total"));
    } else {
      CHECK(!family.name.ends_with("_total"));
    }
  }
  CHECK(names.count("pktbroker_queue_packets_total") == 1);
  CHECK(names.count("pktbroker_verdict_latency_seconds") == 1);
}

TEST_CASE("every counter of pktbrokerctl stats and sessions is exported, with labels") {
  const std::string text = text_of(sample_with_traffic());
  for (const char* line : {
           "pktbroker_queue_packets_total{queue=\"3\"} 10",
           "pktbroker_queue_bytes_total{queue=\"3\"} 1500",
           "pktbroker_queue_verdicts_total{queue=\"3\",verdict=\"accept\"} 7",
           "pktbroker_queue_verdicts_total{queue=\"3\",verdict=\"drop\"} 2",
           "pktbroker_queue_verdicts_total{queue=\"3\",verdict=\"repeat\"} 1",
           "pktbroker_queue_default_verdicts_total{queue=\"3\"} 4",
           "pktbroker_queue_outstanding_packets{queue=\"3\"} 6",
           "pktbroker_queue_netlink_errors_total{queue=\"3\",error=\"receive_overrun\"} 1",
           "pktbroker_rule_packets_total{queue=\"3\",rule=\"no-telnet\"} 2",
           "pktbroker_rule_bytes_total{queue=\"3\",rule=\"no-telnet\"} 120",
           "pktbroker_plugin_events_total{plugin=\"dns\",event=\"queries\"} 11",
           "pktbroker_client_malformed_frames_total 12",
           "pktbroker_client_refused_total 13",
           "pktbroker_sessions 2",
           // a client-chosen name is escaped, not trusted; bytes that are not UTF-8 replaced
           "pktbroker_session_verdicts_total{session=\"5\",name="
           "\"a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd\",uid=\"0\"} 0",
           "pktbroker_session_verdicts_total{session=\"4\",name=\"ids \\\"main\\\"\",uid=\"1000\"} "
           "19",
           "pktbroker_verdict_latency_seconds_bucket{queue=\"3\",le=\"5e-05\"} 9",
           "pktbroker_verdict_latency_seconds_bucket{queue=\"3\",le=\"+Inf\"} 10",
           "pktbroker_verdict_latency_seconds_count{queue=\"3\"} 10",
       }) {
    INFO(line);
    CHECK(text.find(std::string(line) + "\n") != std::string::npos);
  }
  // Each queue counter pktbrokerctl shows is somewhere (a few under a labelled family).
  std::vector<pktbroker::proto::StatsEntry> entries;
  pktbroker::add_stats_entries(sample_with_traffic().queues[0], entries);
  for (const auto& entry : entries) {
    if (entry.scope.starts_with("rule ")) continue;
    const bool labelled = entry.name == "accepted" || entry.name == "dropped" ||
                          entry.name == "repeated" || entry.name == "netlink_errors";
    if (labelled) continue;
    INFO(entry.name);
    // Renamed: kernel_queue_total is a gauge (what waits in the kernel now), so no _total.
    const std::map<std::string, std::string> renamed = {
        {"kernel_queue_total", "kernel_waiting_packets"},
        {"kernel_queue_dropped", "kernel_dropped_packets_total"}};
    const std::string name = renamed.contains(entry.name) ? renamed.at(entry.name) : entry.name;
    CHECK(text.find("\npktbroker_queue_" + name) != std::string::npos);
  }
}
