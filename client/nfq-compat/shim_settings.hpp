// What the nfq shim takes from the environment: where the broker is and what to ask it for.
#pragma once

#include "pktbroker/protocol.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace pktbroker::nfq {

/// The shim's configuration, read once from PKTBROKER_* environment variables.
struct ShimSettings {
  std::string socket_path = "/run/pktbroker/broker.sock";  ///< PKTBROKER_SOCKET
  std::string selector;  ///< PKTBROKER_SELECTOR, a match map without `queue`
  std::map<std::uint16_t, std::uint16_t> queue_map;  ///< PKTBROKER_QUEUE_MAP "PROG=BROKER,..."
  std::uint32_t timeout_ms = 1000;                   ///< PKTBROKER_TIMEOUT_MS
  proto::VerdictCode fallback = proto::VerdictCode::drop;  ///< PKTBROKER_FALLBACK
  std::string name;  ///< PKTBROKER_NAME; "program[pid]" when unset

  /// Reads the environment; nullopt and `error` when a variable is malformed.
  static std::optional<ShimSettings> from_environment(std::string& error);
  /// The broker's queue behind the program's queue `number` (the same number unless mapped).
  [[nodiscard]] std::uint16_t broker_queue(std::uint16_t number) const;
  /// The SUBSCRIBE selector for the program's queue `number`.
  [[nodiscard]] std::string selector_for(std::uint16_t number) const;
};

}  // namespace pktbroker::nfq
