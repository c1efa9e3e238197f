#include "broker/session/packet_batcher.hpp"

#include "pktbroker/codec.hpp"

#include <catch2/catch.hpp>

#include <memory>
#include <vector>

using namespace pktbroker;

namespace {

/// Records what a queue hands the session; room for `limit` packets.
class RecordingPort : public SessionPort {
 public:
  explicit RecordingPort(std::size_t limit, bool batches = true)
      : limit_(limit), batches_(batches) {}
  [[nodiscard]] SessionId id() const noexcept override { return 1; }
  [[nodiscard]] bool takes_batches() const noexcept override { return batches_; }
  bool reserve() noexcept override { return reserved_ < limit_ ? (++reserved_, true) : false; }
  void deliver(std::shared_ptr<const std::vector<std::uint8_t>> datagram,
               std::size_t packets) noexcept override {
    datagrams.push_back(std::move(datagram));
    counts.push_back(packets);
  }
  void report_error(proto::ErrorCode, std::string) noexcept override {}
  void count_fallback() noexcept override {}
  bool claim_outstanding() noexcept override { return true; }
  void release_outstanding() noexcept override {}

  /// The tokens each datagram carries, decoded as a client would.
  [[nodiscard]] std::vector<std::vector<std::uint64_t>> tokens() const {
    std::vector<std::vector<std::uint64_t>> all;
    for (const auto& datagram : datagrams) {
      proto::Decoded decoded;
      REQUIRE_FALSE(proto::decode(*datagram, decoded));
      std::vector<std::uint64_t>& these = all.emplace_back();
      if (const auto* single = std::get_if<proto::Packet>(&decoded.message)) {
        these.push_back(single->token);
      } else {
        for (const auto& p : std::get<proto::PacketBatch>(decoded.message).packets)
          these.push_back(p.token);
      }
    }
    return all;
  }

  std::vector<std::shared_ptr<const std::vector<std::uint8_t>>> datagrams;
  std::vector<std::size_t> counts;

 private:
  std::size_t limit_;
  bool batches_;
  std::size_t reserved_ = 0;
};

proto::Packet packet(std::uint64_t token, std::span<const std::uint8_t> payload) {
  proto::Packet p;
  p.token = token;
  p.needs_verdict = true;
  p.payload = payload;
  return p;
}

}  // namespace

TEST_CASE("a round's packets reach each session in one datagram, in order") {
  std::uint64_t datagrams = 0;
  PacketBatcher batcher(datagrams);
  auto a = std::make_shared<RecordingPort>(100);
  auto b = std::make_shared<RecordingPort>(100);
  const std::vector<std::uint8_t> bytes(60, 0x45);
  for (std::uint64_t token = 1; token <= 5; ++token) {
    REQUIRE(batcher.add(token % 2 ? a : b, packet(token, bytes)));
  }
  CHECK(a->datagrams.empty());  // nothing is sent before the round ends
  batcher.flush();
  CHECK(batcher.empty());
  CHECK(a->tokens() == std::vector<std::vector<std::uint64_t>>{{1, 3, 5}});
  CHECK(b->tokens() == std::vector<std::vector<std::uint64_t>>{{2, 4}});
  CHECK(a->counts == std::vector<std::size_t>{3});
  CHECK(datagrams == 2);
  REQUIRE(batcher.add(a, packet(6, bytes)));
  batcher.flush();
  CHECK(a->tokens().back() == std::vector<std::uint64_t>{6});  // alone: a plain PACKET
}

TEST_CASE("a full datagram goes at once and the next packet starts another") {
  std::uint64_t datagrams = 0;
  PacketBatcher batcher(datagrams);
  auto port = std::make_shared<RecordingPort>(100);
  const std::vector<std::uint8_t> big(proto::max_payload, 0x45);  // three fit in 256 KiB
  for (std::uint64_t token = 1; token <= 7; ++token) REQUIRE(batcher.add(port, packet(token, big)));
  CHECK(port->datagrams.size() == 2);  // two were full before the round ended
  batcher.flush();
  CHECK(port->tokens() == std::vector<std::vector<std::uint64_t>>{{1, 2, 3}, {4, 5, 6}, {7}});
  CHECK(port->counts == std::vector<std::size_t>{3, 3, 1});
  CHECK(datagrams == 3);
}

TEST_CASE("a session without room refuses the packet and gets nothing for it") {
  std::uint64_t datagrams = 0;
  PacketBatcher batcher(datagrams);
  auto port = std::make_shared<RecordingPort>(2);
  const std::vector<std::uint8_t> bytes(60, 0x45);
  CHECK(batcher.add(port, packet(1, bytes)));
  CHECK(batcher.add(port, packet(2, bytes)));
  CHECK_FALSE(batcher.add(port, packet(3, bytes)));
  batcher.flush();
  CHECK(port->tokens() == std::vector<std::vector<std::uint64_t>>{{1, 2}});
}

TEST_CASE("a session that did not ask for batches gets every packet as a PACKET of its own") {
  std::uint64_t datagrams = 0;
  PacketBatcher batcher(datagrams);
  auto plain = std::make_shared<RecordingPort>(100, false);
  auto batched = std::make_shared<RecordingPort>(100);
  const std::vector<std::uint8_t> bytes(60, 0x45);
  for (std::uint64_t token = 1; token <= 6; ++token) {
    REQUIRE(batcher.add(token % 2 ? plain : batched, packet(token, bytes)));
  }
  CHECK(plain->tokens() == std::vector<std::vector<std::uint64_t>>{{1}, {3}, {5}});  // at once
  batcher.flush();
  CHECK(batched->tokens() == std::vector<std::vector<std::uint64_t>>{{2, 4, 6}});
  CHECK(plain->counts == std::vector<std::size_t>{1, 1, 1});
  for (const auto& datagram : plain->datagrams) {
    CHECK((*datagram)[3] == static_cast<std::uint8_t>(proto::MessageType::packet));
  }
  CHECK(datagrams == 4);
}
