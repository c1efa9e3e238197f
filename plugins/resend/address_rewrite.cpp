#include "plugins/resend/address_rewrite.hpp"

#include <cstdint>
#include <cstring>
#include <memory>

#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <sys/socket.h>

// C headers without extern "C" of their own.
extern "C" {
#include <libnetfilter_queue/libnetfilter_queue_ipv4.h>
#include <libnetfilter_queue/libnetfilter_queue_ipv6.h>
#include <libnetfilter_queue/libnetfilter_queue_tcp.h>
#include <libnetfilter_queue/libnetfilter_queue_udp.h>
#include <libnetfilter_queue/pktbuff.h>
}

namespace pktbroker::plugins::resend {
namespace {

struct PktbFree {
  void operator()(pkt_buff* pktb) const noexcept { pktb_free(pktb); }
};
using PktbPtr = std::unique_ptr<pkt_buff, PktbFree>;

constexpr std::uint16_t fragment_bits = 0x3fff;  // more-fragments flag and offset

bool rewrite_v4(pkt_buff* pktb, Endpoint which, std::span<const std::uint8_t> address) {
  iphdr* ip = nfq_ip_get_hdr(pktb);
  if (ip == nullptr || (ntohs(ip->frag_off) & fragment_bits) != 0) return false;
  if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP) return false;
  if (nfq_ip_set_transport_header(pktb, ip) != 0) return false;
  std::memcpy(which == Endpoint::source ? &ip->saddr : &ip->daddr, address.data(), 4);
  nfq_ip_set_checksum(ip);
  if (ip->protocol == IPPROTO_TCP) {
    tcphdr* tcp = nfq_tcp_get_hdr(pktb);
    if (tcp == nullptr) return false;
    nfq_tcp_compute_checksum_ipv4(tcp, ip);
    return true;
  }
  udphdr* udp = nfq_udp_get_hdr(pktb);
  if (udp == nullptr) return false;
  if (udp->check == 0) return true;  // the sender computed none: IPv4 allows that
  nfq_udp_compute_checksum_ipv4(udp, ip);
  if (udp->check == 0) udp->check = 0xffff;  // 0 means "none" in UDP
  return true;
}

bool rewrite_v6(pkt_buff* pktb, Endpoint which, std::span<const std::uint8_t> address) {
  ip6_hdr* ip = nfq_ip6_get_hdr(pktb);
  if (ip == nullptr) return false;
  // Only a transport header right after the fixed header: extension headers (a fragment one
  // above all) are left alone.
  // libnetfilter_queue sums ip6_plen bytes without checking them against the buffer.
  if (sizeof(ip6_hdr) + ntohs(ip->ip6_plen) > pktb_len(pktb)) return false;
  const std::uint8_t next = ip->ip6_nxt;
  if (next != IPPROTO_TCP && next != IPPROTO_UDP) return false;
  if (nfq_ip6_set_transport_header(pktb, ip, next) != 1) return false;  // 1: found
  std::memcpy(which == Endpoint::source ? &ip->ip6_src : &ip->ip6_dst, address.data(), 16);
  if (next == IPPROTO_TCP) {
    tcphdr* tcp = nfq_tcp_get_hdr(pktb);
    if (tcp == nullptr) return false;
    nfq_tcp_compute_checksum_ipv6(tcp, ip);
    return true;
  }
  udphdr* udp = nfq_udp_get_hdr(pktb);
  if (udp == nullptr) return false;
  nfq_udp_compute_checksum_ipv6(udp, ip);
  if (udp->check == 0) udp->check = 0xffff;
  return true;
}

}  // namespace

std::span<const std::uint8_t> address_of(std::span<const std::uint8_t> packet, Endpoint which) {
  if (packet.empty()) return {};
  const unsigned version = packet[0] >> 4;
  if (version == 4 && packet.size() >= 20)
    return packet.subspan(which == Endpoint::source ? 12 : 16, 4);
  if (version == 6 && packet.size() >= 40)
    return packet.subspan(which == Endpoint::source ? 8 : 24, 16);
  return {};
}

bool rewrite_address(std::vector<std::uint8_t>& packet, Endpoint which,
                     std::span<const std::uint8_t> address) {
  if (packet.empty()) return false;
  const unsigned version = packet[0] >> 4;
  if (!((version == 4 && address.size() == 4) || (version == 6 && address.size() == 16))) {
    return false;
  }
  const PktbPtr pktb(
      pktb_alloc(version == 4 ? AF_INET : AF_INET6, packet.data(), packet.size(), 0));
  if (!pktb) return false;
  const bool done = version == 4 ? rewrite_v4(pktb.get(), which, address)
                                 : rewrite_v6(pktb.get(), which, address);
  if (!done) return false;
  const std::uint8_t* data = pktb_data(pktb.get());
  packet.assign(data, data + pktb_len(pktb.get()));
  return true;
}

}  // namespace pktbroker::plugins::resend
