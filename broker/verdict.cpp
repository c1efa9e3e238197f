#include "broker/verdict.hpp"

namespace pktbroker {

std::string_view to_string(VerdictKind kind) noexcept {
  switch (kind) {
    case VerdictKind::accept: return "accept";
    case VerdictKind::drop: return "drop";
    case VerdictKind::repeat: return "repeat";
  }
  return "unknown";
}

}  // namespace pktbroker
