// The plugin fuzzers' input: one flow as segments in both directions.
//
//   byte 0        options: flow_udp, flow_handshake, flow_close
//   then records  [control: u8][length: u16 big-endian][length bytes of data]
//                 (the last record takes what is left when the input ends early)
//
// Control bits say who sends the segment, whether it resends bytes already sent or skips some
// (out of order, lost), and how long the flow then stays quiet (plugin timers, idle expiry).
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace pktbroker::fuzz {

inline constexpr std::uint8_t flow_udp = 0x01;        // UDP datagrams (if the plugin takes UDP)
inline constexpr std::uint8_t flow_handshake = 0x02;  // TCP: SYN, SYN-ACK, ACK first
inline constexpr std::uint8_t flow_close = 0x04;      // TCP: FIN from both sides at the end

inline constexpr std::uint8_t seg_from_server = 0x01;
inline constexpr std::uint8_t seg_resend = 0x02;  // TCP: the data starts before the next seq
inline constexpr std::uint8_t seg_skip = 0x04;    // TCP: some sequence numbers are never sent
inline constexpr std::uint8_t seg_fin = 0x08;
inline constexpr std::uint8_t seg_rst = 0x10;
inline constexpr int seg_wait_shift = 5;  // bits 5-7: wait 0, 100 ms ... 700 ms afterwards

inline constexpr std::size_t max_segment = 1460;

struct Segment {
  std::uint8_t control = 0;
  std::span<const std::uint8_t> data;

  [[nodiscard]] bool from_server() const noexcept { return (control & seg_from_server) != 0; }
  [[nodiscard]] int wait_ms() const noexcept { return (control >> seg_wait_shift) * 100; }
};

struct FlowInput {
  std::uint8_t options = 0;
  std::vector<Segment> segments;
};

inline FlowInput parse_flow_input(std::span<const std::uint8_t> input) {
  FlowInput flow;
  if (input.empty()) return flow;
  flow.options = input[0];
  std::size_t at = 1;
  while (at < input.size()) {
    Segment segment;
    segment.control = input[at++];
    std::size_t length = 0;
    for (int i = 0; i < 2 && at < input.size(); ++i) length = (length << 8) | input[at++];
    length = std::min({length, input.size() - at, max_segment});
    segment.data = input.subspan(at, length);
    at += length;
    flow.segments.push_back(segment);
  }
  return flow;
}

/// Appends one record (the seed generator writes inputs with it).
inline void append_segment(std::vector<std::uint8_t>& out, std::uint8_t control,
                           std::string_view data) {
  out.push_back(control);
  out.push_back(static_cast<std::uint8_t>(data.size() >> 8));
  out.push_back(static_cast<std::uint8_t>(data.size()));
  out.insert(out.end(), data.begin(), data.end());
}

}  // namespace pktbroker::fuzz
