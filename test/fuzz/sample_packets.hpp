// A fixed spread of packets and metadata that fuzzed policies and selectors are matched against.
#pragma once

#include "broker/packet_meta.hpp"
#include "pktbroker/packet_view.hpp"
#include "test/unit/packet_builder.hpp"

#include <netinet/in.h>

#include <deque>

namespace pktbroker::fuzz {

struct Sample {
  test::Bytes bytes;
  PacketMeta meta;
  PacketView view;
};

/// TCP and UDP to the ports the example policies name, ICMP echo small and large, v4 and v6,
/// a fragment, with marks, owners and conntrack states varied. Built once; views stay valid.
inline const std::deque<Sample>& sample_packets() {
  static const std::deque<Sample> samples = [] {
    using namespace test;
    std::deque<Sample> all;
    const auto add = [&](Bytes bytes, std::uint32_t mark, std::uint32_t uid, CtState state) {
      Sample& s = all.emplace_back();
      s.bytes = std::move(bytes);
      s.meta.payload = s.bytes;
      s.meta.wire_length = static_cast<std::uint32_t>(s.bytes.size());
      s.meta.mark = mark;
      s.meta.queue = static_cast<std::uint16_t>(mark & 1);
      if (uid != 0) {
        s.meta.uid = uid;
        s.meta.gid = uid;
      }
      s.meta.ct_state = state;
      (void)parse_packet(s.bytes, s.view);
    };
    const std::uint16_t ports[] = {0, 9, 19, 21, 22, 23, 53, 80, 443, 8080, 65535};
    std::uint32_t n = 0;
    for (const std::uint16_t port : ports) {
      const auto mark = (n++ % 3 == 0) ? 0x10U : 0x100U * n;
      const auto state = static_cast<CtState>(n % 4);
      add(ipv4(IPPROTO_TCP, tcp_header(40000, port)), mark, n % 2 ? 1000 : 0, state);
      add(ipv4(IPPROTO_UDP, udp_header(40001, port, 16), 16, {192, 168, 1, 5}, {8, 8, 8, 8}), mark,
          0, state);
      add(ipv6(IPPROTO_TCP, tcp_header(port, 40002), 32), 0, 33, state);
      add(ipv6(IPPROTO_UDP, udp_header(40003, port, 0), 0, 1, 2, 0x20), mark, 0, state);
    }
    add(ipv4(IPPROTO_ICMP, icmp_header(8), 56), 0, 0, CtState::new_);
    add(ipv4(IPPROTO_ICMP, icmp_header(8), 1200), 0, 0, CtState::new_);
    add(ipv4(IPPROTO_ICMP, icmp_header(0), 56, {8, 8, 8, 8}, {10, 0, 0, 1}), 0, 0,
        CtState::established);
    add(ipv6(IPPROTO_ICMPV6, icmp_header(128), 1500), 0, 0, CtState::new_);
    add(ipv4(IPPROTO_UDP, udp_header(1, 2), 100, {10, 1, 2, 3}, {10, 3, 2, 1}, 0x2001), 7, 0,
        CtState::related);
    add(ipv4(132, Bytes(12, 0)), 0, 0, CtState::none);  // SCTP: no ports parsed
    return all;
  }();
  return samples;
}

}  // namespace pktbroker::fuzz
