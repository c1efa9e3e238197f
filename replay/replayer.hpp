// Replays recorded flows against live servers over ordinary sockets, many at once on Asio.
#pragma once

#include "plugins/host/plugin_set.hpp"
#include "replay/flows.hpp"
#include "replay/live_capture.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pktbroker::replay {

enum class Timing : std::uint8_t { asap, original };

struct Options {
  IpAddress target;                          ///< where every flow goes ...
  std::optional<std::uint16_t> target_port;  ///< ... on its recorded port unless this is set
  std::map<std::string, Endpoint> map;       ///< recorded server "ip:port" -> live endpoint
  std::size_t concurrency = 64;
  Timing timing = Timing::asap;
  double speed = 1.0;                               ///< original timing divided by this
  std::chrono::milliseconds turn_timeout{1000};     ///< server idle within a turn
  std::chrono::milliseconds flow_timeout{30000};    ///< no progress at all: the flow is stalled
  std::chrono::milliseconds turn_max_time{120000};  ///< a server turn that lasts longer ends it
  std::uint64_t turn_max_bytes = std::uint64_t{1} << 30;  ///< ... or sends more
  std::size_t max_flow_bytes = 16 << 20;  ///< live bytes kept per server turn, and compared
  std::size_t max_total_bytes = 1 << 30;  ///< the capture's packets, then its flows' payloads
  bool compare = false;
  LiveCapture* pcap_out = nullptr;  ///< records the live traffic when set
};

enum class Status : std::uint8_t {
  complete,             ///< every turn replayed
  capture_gap,          ///< every turn replayed, but the capture lost some of the flow's bytes
  server_silent,        ///< the server sent nothing in a turn it answered in the capture
  reset,                ///< the connection was reset
  refused,              ///< the connection was refused (TCP RST, or ICMP port unreachable)
  unreachable,          ///< no route, network down, or the connect timed out
  closed_early,         ///< the server closed before the client's last turn
  response_differs,     ///< --compare: a live answer differs from the recorded one
  no_recorded_answer,   ///< --compare: the live server answered where the capture has nothing
  stalled,              ///< no progress within the flow timeout
  turn_bytes_exceeded,  ///< a server turn sent more than --turn-max-bytes
  turn_time_exceeded,   ///< a server turn lasted longer than --turn-max-time
  not_started,          ///< an expected flow its parent never announced live
  skipped,              ///< not replayed: the capture does not say enough (see the reason)
};
inline constexpr std::size_t status_count = static_cast<std::size_t>(Status::skipped) + 1;
std::string_view to_string(Status status) noexcept;

struct FlowResult {
  std::size_t id = 0;
  std::uint8_t protocol = 6;
  Endpoint recorded_server;
  Endpoint live_server;
  Status status = Status::not_started;
  std::size_t turn = 0;  ///< the turn (1-based) the status is about, 0 when none
  std::size_t turns = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
  std::string plugin;               ///< the plugin that drove the flow; empty: the default
  std::uint64_t between_turns = 0;  ///< bytes the server sent outside the turns it answered in
  std::uint64_t gaps = 0;           ///< holes in the capture of this flow ...
  std::uint64_t gap_bytes = 0;      ///< ... and the bytes lost in them
  std::size_t parent = 0;           ///< an expected flow: the flow that announced it
  std::string reason;               ///< skipped: why
  std::chrono::microseconds duration{};
};

struct Summary {
  std::vector<FlowResult> flows;  ///< in flow id order
  std::chrono::microseconds elapsed{};
};

/// Called about every 200 ms while replaying: (flows finished, flows in all, flows running).
using Progress = std::function<void(std::size_t, std::size_t, std::size_t)>;

/// Replays `flows` (which must outlive the call); blocks until every flow has ended.
Summary replay_flows(const std::vector<RecordedFlow>& flows, const PluginSet& plugins,
                     const Options& options, const Progress& progress = {});

}  // namespace pktbroker::replay
