#include "replay/capture.hpp"

#include <pcap/pcap.h>

#include <memory>

namespace pktbroker::replay {
namespace {

constexpr std::uint16_t ether_ipv4 = 0x0800;
constexpr std::uint16_t ether_ipv6 = 0x86dd;
constexpr std::uint16_t ether_vlan = 0x8100;
constexpr std::uint16_t ether_qinq = 0x88a8;
// pcapng stores 64-bit timestamps; nanoseconds since 1970 end in 2262 (less a few seconds for
// the fraction, which libpcap does not bound either).
constexpr std::int64_t max_seconds = std::chrono::nanoseconds::max().count() / 1'000'000'000 - 5;

std::uint16_t be16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}

/// Offset of the IP header for this link type, or -1 when the frame carries no IP packet.
long ip_offset(int link_type, const std::uint8_t* frame, std::size_t size) {
  switch (link_type) {
    case DLT_EN10MB: {
      std::size_t at = 12;
      while (at + 2 <= size) {
        const std::uint16_t type = be16(frame + at);
        if (type == ether_vlan || type == ether_qinq) {
          at += 4;
          continue;
        }
        return type == ether_ipv4 || type == ether_ipv6 ? static_cast<long>(at + 2) : -1;
      }
      return -1;
    }
    case DLT_LINUX_SLL:
      return size >= 16 && (be16(frame + 14) == ether_ipv4 || be16(frame + 14) == ether_ipv6) ? 16
                                                                                              : -1;
    case DLT_LINUX_SLL2:
      return size >= 20 && (be16(frame) == ether_ipv4 || be16(frame) == ether_ipv6) ? 20 : -1;
    case DLT_RAW:
    case DLT_IPV4:
    case DLT_IPV6: return 0;
    case DLT_NULL:
    case DLT_LOOP: return size >= 4 ? 4 : -1;  // a 4-byte address family, then IP
    default: return -1;
  }
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
  std::chrono::nanoseconds first{-1};
  std::size_t bytes = 0;
  while (true) {
    pcap_pkthdr* header = nullptr;
    const std::uint8_t* frame = nullptr;
    const int result = pcap_next_ex(pcap.get(), &header, &frame);
    if (result == PCAP_ERROR_BREAK) break;  // end of file
    if (result != 1) {
      throw CaptureError(file.string() + ": after packet " +
                         std::to_string(capture.packets.size() + capture.skipped_non_ip +
                                        capture.skipped_truncated) +
                         ": " + pcap_geterr(pcap.get()));
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
    if (header->ts.tv_sec < 0 || header->ts.tv_sec > max_seconds || header->ts.tv_usec < 0) {
      throw CaptureError(file.string() + ": packet " +
                         std::to_string(capture.packets.size() + capture.skipped_non_ip +
                                        capture.skipped_truncated + 1) +
                         ": timestamp out of range (before 1970 or after 2262)");
    }
    const std::chrono::nanoseconds time =
        std::chrono::seconds(header->ts.tv_sec) + std::chrono::nanoseconds(header->ts.tv_usec);
    if (first.count() < 0) first = time;
    bytes += header->caplen - static_cast<std::size_t>(offset);
    if (bytes > max_bytes) {
      throw CaptureError(file.string() + ": its packets take more than " +
                         std::to_string(max_bytes >> 20) + " MiB (--max-memory)");
    }
    capture.packets.push_back(
        {time - first, std::vector<std::uint8_t>(frame + offset, frame + header->caplen)});
  }
  return capture;
}

}  // namespace pktbroker::replay
