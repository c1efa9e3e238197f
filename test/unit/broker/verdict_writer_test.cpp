#include "broker/queue/verdict_writer.hpp"

#include "netlink_test_util.hpp"

#include <linux/netfilter.h>
#include <catch2/catch.hpp>

#include <cerrno>
#include <vector>

using pktbroker::Verdict;
using pktbroker::VerdictKind;
using pktbroker::VerdictWriter;
using pktbroker::test::decode_verdicts;
using pktbroker::test::DecodedVerdict;

namespace {

const Verdict accept{VerdictKind::accept, std::nullopt};
const Verdict drop{VerdictKind::drop, std::nullopt};

struct RecordingSink {
  std::vector<std::vector<DecodedVerdict>> sends;
  int fail_with = 0;

  VerdictWriter writer(std::uint16_t queue = 7) {
    return VerdictWriter(queue, [this](std::span<const std::uint8_t> buffer) {
      sends.push_back(decode_verdicts(buffer));
      return fail_with;
    });
  }
  [[nodiscard]] std::vector<DecodedVerdict> all() const {
    std::vector<DecodedVerdict> flat;
    for (const auto& send : sends) flat.insert(flat.end(), send.begin(), send.end());
    return flat;
  }
};

}  // namespace

TEST_CASE("an in-order run of one verdict becomes a single batch message") {
  RecordingSink sink;
  auto writer = sink.writer();
  for (std::uint32_t id = 10; id <= 41; ++id) writer.add(id, accept);
  REQUIRE(writer.flush() == 0);
  REQUIRE(sink.sends.size() == 1);
  const auto verdicts = sink.all();
  REQUIRE(verdicts.size() == 1);
  CHECK(verdicts[0].batch);
  CHECK(verdicts[0].id == 41);
  CHECK(verdicts[0].verdict == NF_ACCEPT);
  CHECK(verdicts[0].queue == 7);
  CHECK(writer.counters().batched_packets == 32);
  CHECK(writer.empty());
}

TEST_CASE("changes of verdict split the runs; single packets get single messages") {
  RecordingSink sink;
  auto writer = sink.writer();
  writer.add(1, accept);
  writer.add(2, accept);
  writer.add(3, drop);
  writer.add(4, accept);
  writer.add(5, accept);
  writer.add(6, accept);
  REQUIRE(writer.flush() == 0);
  const auto v = sink.all();
  REQUIRE(v.size() == 3);
  CHECK((v[0].batch && v[0].id == 2 && v[0].verdict == NF_ACCEPT));
  CHECK((!v[1].batch && v[1].id == 3 && v[1].verdict == NF_DROP));
  CHECK((v[2].batch && v[2].id == 6 && v[2].verdict == NF_ACCEPT));
}

TEST_CASE("no batch covers a packet that is still pending elsewhere") {
  RecordingSink sink;
  auto writer = sink.writer();
  for (std::uint32_t id = 20; id < 30; ++id) writer.add(id, accept);
  REQUIRE(writer.flush(std::uint32_t{15}) == 0);  // packet 15 awaits a client's verdict
  const auto v = sink.all();
  REQUIRE(v.size() == 10);
  for (std::size_t i = 0; i < v.size(); ++i) {
    CHECK_FALSE(v[i].batch);
    CHECK(v[i].id == 20 + i);
  }
}

TEST_CASE("a pending packet newer than the run does not prevent the batch") {
  RecordingSink sink;
  auto writer = sink.writer();
  for (std::uint32_t id = 20; id < 30; ++id) writer.add(id, accept);
  REQUIRE(writer.flush(std::uint32_t{30}) == 0);
  const auto v = sink.all();
  REQUIRE(v.size() == 1);
  CHECK((v[0].batch && v[0].id == 29));
}

TEST_CASE("out-of-order verdicts are sent one by one, in the order given") {
  RecordingSink sink;
  auto writer = sink.writer();
  for (std::uint32_t id : {5U, 6U, 7U, 3U, 4U}) writer.add(id, accept);
  REQUIRE(writer.flush() == 0);
  const auto v = sink.all();
  REQUIRE(v.size() == 5);
  const std::uint32_t expected[] = {5, 6, 7, 3, 4};
  for (std::size_t i = 0; i < 5; ++i) {
    CHECK_FALSE(v[i].batch);
    CHECK(v[i].id == expected[i]);
  }
}

TEST_CASE("a new mark travels with single and batch verdicts") {
  RecordingSink sink;
  auto writer = sink.writer();
  const Verdict repeat_marked{VerdictKind::repeat, 0x11};
  writer.add(1, repeat_marked);
  writer.add(2, repeat_marked);
  writer.add(4, repeat_marked);
  REQUIRE(writer.flush() == 0);
  const auto v = sink.all();
  REQUIRE(v.size() == 2);
  CHECK((v[0].batch && v[0].id == 2 && v[0].verdict == NF_REPEAT && v[0].mark == 0x11U));
  CHECK((!v[1].batch && v[1].id == 4 && v[1].mark == 0x11U));
}

TEST_CASE("packet ids that wrap around 2^32 still form one run") {
  RecordingSink sink;
  auto writer = sink.writer();
  for (std::uint32_t id : {0xfffffffeU, 0xffffffffU, 0U, 1U}) writer.add(id, drop);
  REQUIRE(writer.flush() == 0);
  const auto v = sink.all();
  REQUIRE(v.size() == 1);
  CHECK((v[0].batch && v[0].id == 1 && v[0].verdict == NF_DROP));
}

TEST_CASE("many verdicts are split over several sends without losing one") {
  RecordingSink sink;
  auto writer = sink.writer();
  constexpr std::uint32_t count = 5000;
  for (std::uint32_t id = 0; id < count; ++id) writer.add(id, id % 2 == 0 ? accept : drop);
  REQUIRE(writer.flush() == 0);
  CHECK(sink.sends.size() > 1);
  const auto v = sink.all();
  REQUIRE(v.size() == count);
  for (std::uint32_t id = 0; id < count; ++id) {
    REQUIRE(v[id].id == id);
    REQUIRE(v[id].verdict == (id % 2 == 0 ? NF_ACCEPT : NF_DROP));
  }
  CHECK(writer.counters().messages == count);
}

TEST_CASE("a failed send is reported with its errno") {
  RecordingSink sink;
  sink.fail_with = ENOBUFS;
  auto writer = sink.writer();
  writer.add(1, accept);
  CHECK(writer.flush() == ENOBUFS);
  CHECK(writer.empty());
}

TEST_CASE("id_before follows serial-number order") {
  using pktbroker::id_before;
  CHECK(id_before(1, 2));
  CHECK_FALSE(id_before(2, 1));
  CHECK_FALSE(id_before(5, 5));
  CHECK(id_before(0xffffffffU, 0));
}

TEST_CASE("a replacement payload travels with its verdict and is never batched") {
  RecordingSink sink;
  std::vector<std::vector<std::uint8_t>> raw;
  VerdictWriter writer(7, [&](std::span<const std::uint8_t> buffer) {
    raw.emplace_back(buffer.begin(), buffer.end());
    return 0;
  });
  const std::vector<std::uint8_t> replacement(3000, 0x45);
  writer.add(1, accept);
  writer.add(2, accept, replacement);
  writer.add(3, accept);
  REQUIRE(writer.flush() == 0);
  std::vector<DecodedVerdict> v;
  std::size_t bytes = 0;
  for (const auto& buffer : raw) {
    const auto decoded = decode_verdicts(buffer);
    v.insert(v.end(), decoded.begin(), decoded.end());
    bytes += buffer.size();
  }
  REQUIRE(v.size() == 3);
  for (const auto& verdict : v) CHECK_FALSE(verdict.batch);
  CHECK(v[1].id == 2);
  CHECK(bytes > replacement.size());
}
