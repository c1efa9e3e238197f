#include "plugins/common/stream_buffer.hpp"

#include <catch2/catch.hpp>

#include <memory>
#include <string>

using pktbroker::plugins::StreamBuffer;
using Buffer = StreamBuffer<8>;

namespace {

pktb_packet segment(std::uint32_t seq, std::string_view data, std::uint8_t flags = 0x10) {
  pktb_packet packet{};
  packet.tcp_seq = seq;
  packet.tcp_flags = flags;
  packet.l4_data = reinterpret_cast<const std::uint8_t*>(data.data());
  packet.l4_len = data.size();
  return packet;
}

std::string text(const Buffer& buffer) {
  const auto bytes = buffer.view();
  return {bytes.begin(), bytes.end()};
}

}  // namespace

TEST_CASE("a stream keeps bytes in sequence order and skips repeats and gaps") {
  auto buffer = std::make_unique<Buffer>();  // zeroed, as the host hands flow state out
  *buffer = Buffer{};
  CHECK(buffer->add(segment(999, "", 0x02)) == Buffer::Added::nothing_new);  // SYN
  CHECK(buffer->add(segment(1000, "abc")) == Buffer::Added::data);
  CHECK(buffer->add(segment(1000, "abc")) == Buffer::Added::nothing_new);  // retransmission
  CHECK(buffer->add(segment(1005, "fg")) == Buffer::Added::gap);           // ahead: skipped
  CHECK(buffer->add(segment(1001, "bcde")) == Buffer::Added::data);        // overlap: new "de"
  CHECK(text(*buffer) == "abcde");
  CHECK(buffer->add(segment(1005, "fghij")) == Buffer::Added::full);
  CHECK(text(*buffer) == "abcdefgh");
  buffer->consume(3);
  CHECK(text(*buffer) == "defgh");
  CHECK(buffer->add(segment(1010, "k")) == Buffer::Added::data);  // sequence went on past "ij"
  CHECK(text(*buffer) == "defghk");
}

TEST_CASE("a stream picked up mid-way starts at the first data seen, across wrap-around") {
  Buffer buffer{};
  CHECK(buffer.add(segment(0xfffffffe, "xy")) == Buffer::Added::data);
  CHECK(buffer.add(segment(0, "z")) == Buffer::Added::data);
  CHECK(text(buffer) == "xyz");
}
