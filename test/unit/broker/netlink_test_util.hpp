// Builds and decodes NFQUEUE netlink messages for the broker's unit tests.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace pktbroker::test {

/// One verdict message as the kernel would read it.
struct DecodedVerdict {
  bool batch = false;
  std::uint16_t queue = 0;
  std::uint32_t id = 0;
  std::uint32_t verdict = 0;  ///< NF_ACCEPT, NF_DROP, NF_REPEAT
  std::optional<std::uint32_t> mark;
};

std::vector<DecodedVerdict> decode_verdicts(std::span<const std::uint8_t> buffer);

/// Attributes of a packet message to build.
struct PacketMessage {
  std::uint16_t queue = 0;
  std::optional<std::uint32_t> id = 1;  ///< nullopt: no NFQA_PACKET_HDR
  std::uint16_t hw_protocol = 0x0800;
  std::uint8_t hook = 3;
  std::optional<std::uint32_t> mark;
  std::optional<std::uint32_t> in_ifindex;
  std::optional<std::uint32_t> out_ifindex;
  std::optional<std::uint32_t> uid;
  std::optional<std::uint32_t> gid;
  std::optional<std::uint32_t> ct_info;
  std::optional<std::uint32_t> cap_len;
  std::vector<std::uint8_t> payload;
};

std::vector<std::uint8_t> encode_packet_message(const PacketMessage& message);

}  // namespace pktbroker::test
