#include "broker/queue/queue_reader.hpp"

#include "netlink_test_util.hpp"

#include <catch2/catch.hpp>

using pktbroker::CtState;
using pktbroker::PacketMeta;
using pktbroker::parse_packet_message;
using pktbroker::test::encode_packet_message;
using pktbroker::test::PacketMessage;

namespace {

const nlmsghdr* as_message(const std::vector<std::uint8_t>& bytes) {
  return reinterpret_cast<const nlmsghdr*>(bytes.data());
}

}  // namespace

TEST_CASE("a packet message yields every attribute the kernel sent") {
  PacketMessage message;
  message.queue = 3;
  message.id = 77;
  message.hw_protocol = 0x86dd;
  message.hook = 1;
  message.mark = 0x10;
  message.in_ifindex = 4;
  message.out_ifindex = 5;
  message.uid = 1000;
  message.gid = 100;
  message.ct_info = 2;  // IP_CT_NEW
  message.cap_len = 1500;
  message.payload = {0x60, 0, 0, 0};
  const auto bytes = encode_packet_message(message);

  PacketMeta meta;
  REQUIRE(parse_packet_message(as_message(bytes), meta));
  CHECK(meta.queue == 3);
  CHECK(meta.packet_id == 77);
  CHECK(meta.hw_protocol == 0x86dd);
  CHECK(meta.hook == 1);
  CHECK(meta.mark == 0x10);
  CHECK(meta.in_ifindex == 4);
  CHECK(meta.out_ifindex == 5);
  CHECK(meta.uid == 1000U);
  CHECK(meta.gid == 100U);
  CHECK(meta.ct_state == CtState::new_);
  CHECK(meta.wire_length == 1500);
  REQUIRE(meta.payload.size() == 4);
  CHECK(meta.payload[0] == 0x60);
}

TEST_CASE("absent attributes stay absent; wire length defaults to the payload size") {
  PacketMessage message;
  message.payload.assign(60, 0x45);
  const auto bytes = encode_packet_message(message);
  PacketMeta meta;
  REQUIRE(parse_packet_message(as_message(bytes), meta));
  CHECK(meta.mark == 0);
  CHECK_FALSE(meta.uid.has_value());
  CHECK_FALSE(meta.gid.has_value());
  CHECK(meta.ct_state == CtState::none);
  CHECK(meta.wire_length == 60);
}

TEST_CASE("conntrack info maps to the states rules match") {
  const std::pair<std::uint32_t, CtState> cases[] = {
      {0, CtState::established}, {1, CtState::related}, {2, CtState::new_},
      {3, CtState::established}, {4, CtState::related}, {9, CtState::none}};
  for (const auto& [info, state] : cases) {
    PacketMessage message;
    message.ct_info = info;
    const auto bytes = encode_packet_message(message);
    PacketMeta meta;
    REQUIRE(parse_packet_message(as_message(bytes), meta));
    CHECK(meta.ct_state == state);
  }
}

TEST_CASE("a message without a packet header is rejected") {
  PacketMessage message;
  message.id = std::nullopt;
  const auto bytes = encode_packet_message(message);
  PacketMeta meta;
  CHECK_FALSE(parse_packet_message(as_message(bytes), meta));
}

// A message cut short (a receive buffer smaller than what the kernel sent) or with broken
// attributes still names its packet: it must get a verdict, or a later batch verdict accepts it.
TEST_CASE("the packet id is read from a message cut short") {
  PacketMessage message;
  message.id = 4242;
  message.payload.assign(3000, 0x45);
  const auto bytes = encode_packet_message(message);
  CHECK(pktbroker::packet_id_of(std::span(bytes).first(64)) == 4242U);
  CHECK(pktbroker::packet_id_of(bytes) == 4242U);
  CHECK_FALSE(pktbroker::packet_id_of(std::span(bytes).first(20)).has_value());
  message.id = std::nullopt;
  CHECK_FALSE(pktbroker::packet_id_of(encode_packet_message(message)).has_value());
}

TEST_CASE("receive buffers hold the largest packet the kernel copies") {
  CHECK(pktbroker::receive_buffer_size(0) >= 65531);  // 0: the kernel copies whole packets
  CHECK(pktbroker::receive_buffer_size(0xffffffff) == pktbroker::receive_buffer_size(0));
  CHECK(pktbroker::receive_buffer_size(128) >= 128);
  CHECK(pktbroker::receive_buffer_size(128) < pktbroker::receive_buffer_size(0));
}
