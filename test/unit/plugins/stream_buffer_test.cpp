#include "plugins/common/stream_buffer.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace pktbroker::plugins;

namespace {

pktb_packet segment(std::uint32_t seq, std::string_view data, std::uint8_t flags = 0x10) {
  pktb_packet packet{};
  packet.tcp_seq = seq;
  packet.tcp_flags = flags;
  packet.l4_data = reinterpret_cast<const std::uint8_t*>(data.data());
  packet.l4_len = data.size();
  return packet;
}

std::string text(std::span<const std::uint8_t> bytes) {
  return {bytes.begin(), bytes.end()};
}

std::span<const std::uint8_t> bytes_of(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

}  // namespace

TEST_CASE("a cursor takes the new bytes of each segment and skips repeats and gaps") {
  StreamCursor cursor{};  // zeroed, as the host hands flow state out
  std::span<const std::uint8_t> fresh;
  CHECK(cursor.take(segment(999, "", 0x02), fresh) == StreamCursor::Added::nothing_new);  // SYN
  CHECK(cursor.take(segment(1000, "abc"), fresh) == StreamCursor::Added::data);
  CHECK(text(fresh) == "abc");
  CHECK(cursor.take(segment(1000, "abc"), fresh) == StreamCursor::Added::nothing_new);
  CHECK(cursor.take(segment(1005, "fg"), fresh) == StreamCursor::Added::gap);
  CHECK(cursor.take(segment(1001, "bcde"), fresh) == StreamCursor::Added::data);  // overlap
  CHECK(text(fresh) == "de");
  StreamCursor midway{};  // picked up mid-stream, across wrap-around
  CHECK(midway.take(segment(0xfffffffe, "xy"), fresh) == StreamCursor::Added::data);
  CHECK(midway.take(segment(0, "z"), fresh) == StreamCursor::Added::data);
  CHECK(text(fresh) == "z");
}

TEST_CASE("held bytes take memory only while they hold some, within a limit and a budget") {
  ByteBudget budget(1024);
  HeldBytes held{};
  CHECK(held.data == nullptr);
  REQUIRE(held.append(bytes_of("hello "), 512, &budget));
  REQUIRE(held.append(bytes_of("world"), 512, &budget));
  CHECK(text(held.view()) == "hello world");
  CHECK(held.capacity == 256);  // the smallest allocation
  CHECK(budget.left() == 1024 - 256);
  CHECK_FALSE(held.append(bytes_of("0123456789"), 15, &budget));  // over the limit: none kept
  CHECK(text(held.view()) == "hello world");
  REQUIRE(held.prepend(bytes_of(">> "), 512, &budget));
  CHECK(text(held.view()) == ">> hello world");
  held.consume(3, &budget);
  CHECK(text(held.view()) == "hello world");
  held.consume(11, &budget);  // emptied: freed
  CHECK(held.data == nullptr);
  CHECK(budget.left() == 1024);
  ByteBudget small(100);
  CHECK_FALSE(held.append(bytes_of("more than the budget allows"), 512, &small));
  CHECK(held.data == nullptr);
  CHECK(small.left() == 100);
}

TEST_CASE("a TCP stream keeps data that came ahead of a gap and reads it when the gap fills") {
  TcpStream stream{};
  std::span<const std::uint8_t> fresh;
  CHECK(stream.take(segment(99, "", 0x02), fresh, 64, nullptr) == TcpStream::Added::nothing_new);
  CHECK(stream.take(segment(100, "GET /"), fresh, 64, nullptr) == TcpStream::Added::data);
  // "ad" (105) is late; "min" (107) and " HTTP" (110) come first, in either order.
  CHECK(stream.take(segment(110, " HTTP"), fresh, 64, nullptr) == TcpStream::Added::kept_ahead);
  CHECK(stream.take(segment(107, "min"), fresh, 64, nullptr) == TcpStream::Added::kept_ahead);
  CHECK(stream.take(segment(107, "min"), fresh, 64, nullptr) == TcpStream::Added::kept_ahead);
  CHECK(text(stream.ahead.view()) == "min HTTP");
  CHECK(stream.resume(nullptr).empty());  // the gap is still there
  // A second gap (120, after 105-107 is missing too) cannot be kept: one run is.
  CHECK(stream.take(segment(120, "x"), fresh, 64, nullptr) == TcpStream::Added::lost);
  CHECK(stream.take(segment(105, "ad"), fresh, 64, nullptr) == TcpStream::Added::data);
  CHECK(text(fresh) == "ad");
  CHECK(text(stream.resume(nullptr)) == "min HTTP");
  stream.done_ahead(nullptr);
  CHECK(stream.ahead.data == nullptr);
  CHECK(stream.cursor.next_seq == 115);
  CHECK(stream.take(segment(200, std::string(65, 'x')), fresh, 64, nullptr) ==
        TcpStream::Added::lost);  // over the limit
}

TEST_CASE("kept data the reader skipped past (a body) is dropped, and the rest is read") {
  TcpStream stream{};
  std::span<const std::uint8_t> fresh;
  CHECK(stream.take(segment(0, "head"), fresh, 64, nullptr) == TcpStream::Added::data);
  CHECK(stream.take(segment(10, "body-next"), fresh, 64, nullptr) == TcpStream::Added::kept_ahead);
  stream.cursor.next_seq += 11;  // a reader skipping an 11-byte body (4-14)
  CHECK(text(stream.resume(nullptr)) == "next");
  stream.done_ahead(nullptr);
  CHECK(stream.take(segment(30, "x"), fresh, 64, nullptr) == TcpStream::Added::kept_ahead);
  stream.cursor.next_seq = 40;
  CHECK(stream.resume(nullptr).empty());
  CHECK(stream.ahead.data == nullptr);
}
