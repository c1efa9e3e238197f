// The decision handed back to the kernel for one packet.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace pktbroker {

enum class VerdictKind : std::uint8_t { accept, drop, repeat };

struct Verdict {
  VerdictKind kind = VerdictKind::accept;
  std::optional<std::uint32_t> set_mark;  ///< new packet mark, when the verdict changes it

  friend bool operator==(const Verdict&, const Verdict&) = default;
};

std::string_view to_string(VerdictKind kind) noexcept;

}  // namespace pktbroker
