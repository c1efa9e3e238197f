// Whether a flow's tuple fits an expectation pattern (pktb_host::expect), for every host.
#pragma once

#include "pktbroker/plugin.h"

#include <cstdint>
#include <cstring>

namespace pktbroker {

/// `tuple` (client -> server) against `pattern`, fields named by PKTB_ANY_* bits ignored.
inline bool tuple_matches(const pktb_tuple& tuple, const pktb_tuple& pattern,
                          std::uint32_t wildcards) noexcept {
  if (tuple.family != pattern.family || tuple.protocol != pattern.protocol) return false;
  const std::size_t size = tuple.family == 4 ? 4 : 16;
  const auto same = [size](const std::uint8_t* a, const std::uint8_t* b) {
    return std::memcmp(a, b, size) == 0;
  };
  return ((wildcards & PKTB_ANY_CLIENT_ADDR) != 0 ||
          same(tuple.client_addr, pattern.client_addr)) &&
         ((wildcards & PKTB_ANY_SERVER_ADDR) != 0 ||
          same(tuple.server_addr, pattern.server_addr)) &&
         ((wildcards & PKTB_ANY_CLIENT_PORT) != 0 || tuple.client_port == pattern.client_port) &&
         ((wildcards & PKTB_ANY_SERVER_PORT) != 0 || tuple.server_port == pattern.server_port);
}

}  // namespace pktbroker
