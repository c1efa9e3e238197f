// Moves a TCP or UDP packet to another local address: its source (leaving) or its destination
// (arriving), with the IP and transport checksums computed again by libnetfilter_queue's
// pktbuff and checksum helpers.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace pktbroker::plugins::resend {

enum class Endpoint { source, destination };

/// The address of `which` end of an IPv4 or IPv6 packet (4 or 16 bytes), or an empty span
/// when the packet is too short. Points into `packet`.
std::span<const std::uint8_t> address_of(std::span<const std::uint8_t> packet, Endpoint which);

/// Writes `address` (4 or 16 bytes, the packet's family) at `which` end and recomputes the
/// checksums. The full transport checksum is computed, never updated: a packet the kernel
/// queued before its checksum was filled in (offloaded) carries only a partial sum. An IPv4
/// UDP checksum of 0 (none) stays 0. Returns false, leaving `packet` alone, for anything but
/// an unfragmented TCP or UDP packet of the address's family.
bool rewrite_address(std::vector<std::uint8_t>& packet, Endpoint which,
                     std::span<const std::uint8_t> address);

}  // namespace pktbroker::plugins::resend
