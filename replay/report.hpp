// What pktreplay prints: the per-flow table and summary for people, JSON for programs.
#pragma once

#include "replay/flows.hpp"
#include "replay/replayer.hpp"

#include <ostream>
#include <string>

namespace pktbroker::replay {

/// What the capture held besides its flows (see Capture and Flows for each count).
struct CaptureFacts {
  std::string file;
  std::string link_type;
  std::size_t packets = 0;  ///< IP packets read
  std::uint64_t truncated = 0;
  std::uint64_t not_ip = 0;
  std::uint64_t tso_lengths = 0;
  std::uint64_t bad_packets = 0;
  std::uint64_t other_protocols = 0;
  std::uint64_t fragments = 0;
  std::uint64_t reassembled = 0;
  std::uint64_t late_segments = 0;

  CaptureFacts(std::string file_name, const Capture& capture, const Flows& flows);
  /// "3 cut by the snap length, 1 not IP, ...": what was left out and why, or empty.
  [[nodiscard]] std::string left_out() const;
};

/// Per-flow lines (all of them with `every_flow`, else those that did not complete) and the
/// summary.
void print_table(std::ostream& out, const CaptureFacts& capture, const Summary& summary,
                 bool every_flow);

void print_json(std::ostream& out, const CaptureFacts& capture, const Summary& summary);

}  // namespace pktbroker::replay
