#include "broker/counters.hpp"

#include <numeric>

namespace pktbroker {

std::string_view to_string(NetlinkError error) noexcept {
  switch (error) {
    case NetlinkError::receive_failed: return "receive_failed";
    case NetlinkError::receive_overrun: return "receive_overrun";
    case NetlinkError::message_truncated: return "message_truncated";
    case NetlinkError::bad_message: return "bad_message";
    case NetlinkError::verdict_send_failed: return "verdict_send_failed";
    case NetlinkError::kernel_error: return "kernel_error";
    case NetlinkError::count_: break;
  }
  return "unknown";
}

std::uint64_t QueueCounters::netlink_error_total() const noexcept {
  return std::accumulate(netlink_errors.begin(), netlink_errors.end(), std::uint64_t{0});
}

}  // namespace pktbroker
