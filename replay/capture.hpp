// Reads a pcap or pcapng file into IP packets, whatever the link layer was.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace pktbroker::replay {

/// One captured packet from its IP header on, with its capture time.
struct CapturedPacket {
  std::chrono::nanoseconds time{};  ///< since the first packet
  std::vector<std::uint8_t> ip;
};

struct Capture {
  std::vector<CapturedPacket> packets;
  std::uint64_t skipped_non_ip = 0;     ///< ARP, LLDP, STP, non-IP MPLS or SNAP, ... (no error)
  std::uint64_t skipped_truncated = 0;  ///< cut by the snap length, or IPv4 over 64 KiB (BIG TCP)
  std::uint64_t tso_lengths = 0;        ///< IPv4 total length 0 (TSO): the captured size used
  std::string link_type;                ///< e.g. "EN10MB", "LINUX_SLL"
};

/// The file could not be read as a capture; the message says why (and where).
class CaptureError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Reads the whole file (pcap or pcapng). Supported link types: Ethernet (Ethernet II or
/// 802.3 LLC/SNAP, with VLAN/QinQ tags and MPLS labels),
/// Linux cooked v1 and v2 (tcpdump -i any), raw IPv4/IPv6, BSD loopback. Throws CaptureError for
/// an unreadable, truncated or unsupported file, or one whose IP packets take more than
/// `max_bytes`.
Capture read_capture(const std::filesystem::path& file,
                     std::size_t max_bytes = std::size_t{1} << 30);

}  // namespace pktbroker::replay
