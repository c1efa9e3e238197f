// The kernel's own view of a queue, from /proc/net/netfilter/nfnetlink_queue.
#pragma once

#include <cstdint>
#include <optional>

namespace pktbroker {

struct KernelQueueStats {
  std::uint32_t queue_total = 0;    ///< packets waiting in the kernel for a verdict
  std::uint64_t queue_dropped = 0;  ///< dropped because the queue was full (fail_open off)
  std::uint64_t user_dropped = 0;   ///< dropped because our socket buffer was full
  std::uint32_t id_sequence = 0;    ///< last packet id issued
};

/// Reads the line for `queue` in this network namespace; nullopt when the queue is not bound.
std::optional<KernelQueueStats> read_kernel_queue_stats(std::uint16_t queue);

}  // namespace pktbroker
