// What pktreplay prints: the per-flow table and summary for people, JSON for programs.
#pragma once

#include "replay/flows.hpp"
#include "replay/replayer.hpp"

#include <ostream>
#include <string>

namespace pktbroker::replay {

struct CaptureFacts {
  std::string file;
  std::string link_type;
  std::size_t packets = 0;
  std::uint64_t skipped = 0;  ///< non-IP frames, truncated frames
  std::uint64_t bad_packets = 0;
  std::uint64_t other_protocols = 0;
  std::uint64_t fragments = 0;
};

/// Per-flow lines (all of them with `every_flow`, else those that did not complete) and the
/// summary.
void print_table(std::ostream& out, const CaptureFacts& capture, const Summary& summary,
                 bool every_flow);

void print_json(std::ostream& out, const CaptureFacts& capture, const Summary& summary);

}  // namespace pktbroker::replay
