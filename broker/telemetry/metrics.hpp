// The Prometheus endpoint (`metrics: {listen: ADDR:PORT}` in the policy). A scrape reads the
// counters where they live (each queue's snapshot on its strand, the sessions on the manager's
// strand), on the endpoint's own thread: nothing is counted twice and the packet path does not
// know it is watched.
#pragma once

#include "broker/broker_queue.hpp"
#include "broker/session/session_manager.hpp"
#include "broker/telemetry/event_log.hpp"
#include "pktbroker/protocol.hpp"

#include <prometheus/metric_family.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace prometheus {
class Exposer;
}

namespace pktbroker {

/// Everything one scrape shows: what `pktbrokerctl stats` and `pktbrokerctl sessions` show.
struct MetricsSample {
  std::vector<QueueSnapshot> queues;
  std::vector<PluginCounters> plugins;
  std::uint64_t malformed_frames = 0;  ///< client frames that could not be decoded
  std::uint64_t refused = 0;           ///< client connections refused
  std::vector<proto::SessionInfo> sessions;
  std::optional<EventLog::Counters> events;  ///< with `events:`
};

/// The sample in Prometheus' conventions: snake_case `pktbroker_` names, `_total` counters,
/// units in names, queue/rule/plugin/session as labels.
std::vector<prometheus::MetricFamily> to_metric_families(const MetricsSample& sample);

class MetricsEndpoint {
 public:
  /// Called on the endpoint's thread for each scrape; nullopt when the broker did not answer.
  using Gather = std::function<std::optional<MetricsSample>()>;

  /// Listens on `listen` ("127.0.0.1:9410", "[::1]:9410"); throws std::runtime_error when it
  /// cannot.
  MetricsEndpoint(const std::string& listen, Gather gather);
  ~MetricsEndpoint();
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

 private:
  class Collector;
  std::shared_ptr<Collector> collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace pktbroker
