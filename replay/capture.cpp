#include "replay/capture.hpp"

#include <pcap/pcap.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <span>

namespace pktbroker::replay {
namespace {

constexpr std::uint16_t ether_ipv4 = 0x0800;
constexpr std::uint16_t ether_ipv6 = 0x86dd;
constexpr std::uint16_t ether_vlan = 0x8100;
constexpr std::uint16_t ether_qinq = 0x88a8;
constexpr std::uint16_t ether_qinq_old = 0x9100;
constexpr std::uint16_t ether_mpls = 0x8847;
constexpr std::uint16_t ether_mpls_multicast = 0x8848;
constexpr std::uint16_t ether_max_length = 1500;  // 802.3: a length, not a type
constexpr std::size_t max_tags = 16;              // VLAN tags, MPLS labels, SNAP headers
// pcapng stores 64-bit timestamps; nanoseconds since 1970 end in 2262 (less a few seconds for
// the fraction, which libpcap does not bound either).
constexpr std::int64_t max_seconds = std::chrono::nanoseconds::max().count() / 1'000'000'000 - 5;

std::uint16_t be16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}

bool is_ip(std::uint16_t type) {
  return type == ether_ipv4 || type == ether_ipv6;
}

/// Where the IP packet after an MPLS label stack at `at` starts, or -1.
long after_mpls(const std::uint8_t* frame, std::size_t size, std::size_t at) {
  for (std::size_t labels = 0; labels < max_tags && at + 4 <= size; ++labels, at += 4) {
    if ((frame[at + 2] & 0x01) == 0) continue;  // not the bottom of the stack
    if (at + 5 > size) return -1;
    const int version = frame[at + 4] >> 4;  // MPLS names no payload type: IP says its version
    return version == 4 || version == 6 ? static_cast<long>(at + 4) : -1;
  }
  return -1;
}

/// Ethernet II, 802.3 with LLC/SNAP, VLAN and QinQ tags, MPLS.
long ethernet_ip_offset(const std::uint8_t* frame, std::size_t size) {
  std::size_t at = 12;  // the type (or length) field
  for (std::size_t tags = 0; tags < max_tags && at + 2 <= size; ++tags) {
    const std::uint16_t type = be16(frame + at);
    if (type == ether_vlan || type == ether_qinq || type == ether_qinq_old) {
      at += 4;
    } else if (type == ether_mpls || type == ether_mpls_multicast) {
      return after_mpls(frame, size, at + 2);
    } else if (type <= ether_max_length) {
      // 802.3: LLC, and with SNAP (AA AA 03, an OUI) a type follows.
      const bool snap = at + 10 <= size && frame[at + 2] == 0xaa && frame[at + 3] == 0xaa &&
                        frame[at + 4] == 0x03;
      if (!snap) return -1;
      at += 8;
    } else {
      return is_ip(type) ? static_cast<long>(at + 2) : -1;
    }
  }
  return -1;
}

/// Offset of the IP header for this link type, or -1 when the frame carries no IP packet.
long ip_offset(int link_type, const std::uint8_t* frame, std::size_t size) {
  switch (link_type) {
    case DLT_EN10MB: return ethernet_ip_offset(frame, size);
    case DLT_LINUX_SLL: return size >= 16 && is_ip(be16(frame + 14)) ? 16 : -1;
    case DLT_LINUX_SLL2: return size >= 20 && is_ip(be16(frame)) ? 20 : -1;
    case DLT_RAW:
    case DLT_IPV4:
    case DLT_IPV6: return 0;
    case DLT_NULL:
    case DLT_LOOP: return size >= 4 ? 4 : -1;  // a 4-byte address family, then IP
    default: return -1;
  }
}

/// An IPv4 total length of 0 on a packet captured where it was sent: the NIC segments it
/// (TSO) and fills the length in later. As Wireshark does, the captured size stands for it.
/// (A packet over 64 KiB, BIG TCP, cannot be given a length: the caller skips it.)
bool is_tso(std::span<const std::uint8_t> ip) {
  return ip.size() >= 20 && ip[0] >> 4 == 4 && ip[2] == 0 && ip[3] == 0;
}

void fill_tso_length(std::vector<std::uint8_t>& ip) {
  ip[2] = static_cast<std::uint8_t>(ip.size() >> 8);
  ip[3] = static_cast<std::uint8_t>(ip.size());
}

bool supported(int link_type) {
  switch (link_type) {
    case DLT_EN10MB:
    case DLT_LINUX_SLL:
    case DLT_LINUX_SLL2:
    case DLT_RAW:
    case DLT_IPV4:
    case DLT_IPV6:
    case DLT_NULL:
    case DLT_LOOP: return true;
    default: return false;
  }
}

}  // namespace

Capture read_capture(const std::filesystem::path& file, std::size_t max_bytes) {
  char error[PCAP_ERRBUF_SIZE] = {};
  std::unique_ptr<pcap_t, decltype(&pcap_close)> pcap(
      pcap_open_offline_with_tstamp_precision(file.c_str(), PCAP_TSTAMP_PRECISION_NANO, error),
      &pcap_close);
  if (!pcap) throw CaptureError(file.string() + ": " + error);
  const int link_type = pcap_datalink(pcap.get());
  Capture capture;
  const char* name = pcap_datalink_val_to_name(link_type);
  capture.link_type = name != nullptr ? name : std::to_string(link_type);
  if (!supported(link_type)) {
    throw CaptureError(file.string() + ": unsupported link type " + capture.link_type +
                       " (supported: EN10MB, LINUX_SLL, LINUX_SLL2, RAW, IPV4, IPV6, NULL, LOOP)");
  }
  std::optional<std::chrono::nanoseconds> first;
  std::size_t bytes = 0;
  std::size_t index = 0;  // of the frame, from 1
  while (true) {
    pcap_pkthdr* header = nullptr;
    const std::uint8_t* frame = nullptr;
    const int result = pcap_next_ex(pcap.get(), &header, &frame);
    if (result == PCAP_ERROR_BREAK) break;  // end of file
    if (result != 1) {
      throw CaptureError(file.string() + ": after packet " + std::to_string(index) + ": " +
                         pcap_geterr(pcap.get()));
    }
    ++index;
    // With nanosecond precision tv_usec holds nanoseconds (libpcap scales microseconds).
    if (header->ts.tv_sec < 0 || header->ts.tv_sec > max_seconds || header->ts.tv_usec < 0 ||
        header->ts.tv_usec >= 1'000'000'000) {
      throw CaptureError(file.string() + ": packet " + std::to_string(index) +
                         ": timestamp out of range (before 1970, after 2262, or a fraction of "
                         "a second that is not one)");
    }
    const long offset = ip_offset(link_type, frame, header->caplen);
    if (offset < 0) {
      ++capture.skipped_non_ip;
      continue;
    }
    if (static_cast<std::size_t>(offset) + 20 > header->caplen || header->caplen < header->len) {
      ++capture.skipped_truncated;
      continue;
    }
    const std::chrono::nanoseconds time =
        std::chrono::seconds(header->ts.tv_sec) + std::chrono::nanoseconds(header->ts.tv_usec);
    if (!first) first = time;
    bytes += header->caplen - static_cast<std::size_t>(offset);
    if (bytes > max_bytes) {
      throw CaptureError(file.string() + ": its packets take more than " +
                         std::to_string(max_bytes >> 20) + " MiB (--max-memory)");
    }
    std::vector<std::uint8_t> ip(frame + offset, frame + header->caplen);
    if (is_tso(ip)) {
      if (ip.size() > 0xffff) {
        ++capture.skipped_truncated;  // its length cannot be said: not replayed
        continue;
      }
      fill_tso_length(ip);
      ++capture.tso_lengths;
    }
    capture.packets.push_back({time - *first, std::move(ip)});
  }
  return capture;
}

}  // namespace pktbroker::replay
