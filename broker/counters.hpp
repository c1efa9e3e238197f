// Counters kept per queue on the queue's executor (no atomics: one thread touches them).
#pragma once

#include "pktbroker/packet_view.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace pktbroker {

/// Why a netlink exchange with the kernel failed. Counted, never fatal.
enum class NetlinkError : std::uint8_t {
  receive_failed,       ///< recvmmsg failed with something other than EAGAIN
  receive_overrun,      ///< ENOBUFS: the kernel dropped messages for us
  message_truncated,    ///< a datagram did not fit the receive buffer
  bad_message,          ///< a packet message without a packet header or payload
  verdict_send_failed,  ///< sendmsg of verdicts failed: those packets stay queued
  kernel_error,         ///< the kernel answered a verdict with an error (e.g. unknown id)
  count_
};

std::string_view to_string(NetlinkError error) noexcept;

struct PacketCounters {
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;
};

struct QueueCounters {
  PacketCounters received;
  std::uint64_t accepted = 0;
  std::uint64_t dropped = 0;
  std::uint64_t repeated = 0;
  std::uint64_t default_verdicts = 0;  ///< no rule matched
  std::uint64_t malformed = 0;
  // Client sessions.
  std::uint64_t delivered = 0;             ///< packets handed to a verdict subscriber
  std::uint64_t observed = 0;              ///< copies sent to observers
  std::uint64_t client_datagrams = 0;      ///< datagrams carrying those packets and copies
  std::uint64_t client_verdicts = 0;       ///< verdicts received from clients
  std::uint64_t passes = 0;                ///< `pass` answers
  std::uint64_t rejected_verdicts = 0;     ///< verdicts for foreign or unknown tokens, bad payloads
  std::uint64_t timeouts = 0;              ///< fallbacks after a client's deadline
  std::uint64_t disconnect_fallbacks = 0;  ///< fallbacks because the owner went away
  std::uint64_t overflows = 0;             ///< a session's queue was full: fallback at once
  std::uint64_t observer_overflows = 0;    ///< observer copies not sent (queue full)
  /// A session (or its uid) held as many undecided packets as it may: fallback at once.
  std::uint64_t outstanding_overflows = 0;
  /// A limited session's verdict would have moved the packet outside its grant: fallback.
  std::uint64_t fallbacks_outside_grant = 0;
  // Plugins.
  std::uint64_t plugin_verdicts = 0;  ///< decided by a plugin through an `inspect` rule
  std::uint64_t expected_flows = 0;   ///< packets of expected flows, given their parent's verdict
  std::uint64_t redropped = 0;        ///< TCP data a rule had dropped, sent again: dropped again
  std::uint64_t held = 0;             ///< packets a plugin held
  std::uint64_t hold_overflows = 0;   ///< holds refused (too many held): decided at once
  std::uint64_t hold_timeouts = 0;    ///< held packets that took their fallback at the deadline
  std::uint64_t plugin_releases = 0;  ///< held packets decided by a release or their flow
  // Identity (rules with app.* fields).
  std::uint64_t identity_known = 0;      ///< packets whose process was known at once
  std::uint64_t identity_waits = 0;      ///< packets that waited for a lookup
  std::uint64_t identity_timeouts = 0;   ///< waited past identity.timeout_ms: fallback
  std::uint64_t identity_unknown = 0;    ///< process not found (or gone): fallback
  std::uint64_t identity_overflows = 0;  ///< too many waiting already: fallback at once
  // Ask rules (prompts).
  std::uint64_t ask_waits = 0;      ///< packets that waited for a prompt's answer
  std::uint64_t ask_answered = 0;   ///< decided by an answer (or a merged prompt's)
  std::uint64_t ask_fallbacks = 0;  ///< the fallback: timed out, nobody watching, too many
  std::uint64_t ask_overflows = 0;  ///< too many waiting in this queue: fallback at once
  std::uint64_t answer_rules = 0;   ///< packets an answer rule or a connection's answer decided
  std::array<std::uint64_t, static_cast<std::size_t>(ParseError::count_)> malformed_by_reason{};
  std::array<std::uint64_t, static_cast<std::size_t>(NetlinkError::count_)> netlink_errors{};

  void count(NetlinkError error) noexcept { ++netlink_errors[static_cast<std::size_t>(error)]; }
  [[nodiscard]] std::uint64_t netlink_error_total() const noexcept;
};

}  // namespace pktbroker
