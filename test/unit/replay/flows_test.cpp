#include "replay/flows.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace pktbroker::replay;

namespace {

const std::string data_dir = TEST_DATA_DIR;

std::string text(const Turn& turn) {
  return {turn.data.begin(), turn.data.end()};
}

}  // namespace

TEST_CASE("out-of-order, repeated and overlapping segments reassemble to the bytes sent") {
  const Flows flows = assemble_flows(read_capture(data_dir + "/http-reordered.pcap"));
  REQUIRE(flows.flows.size() == 1);
  const RecordedFlow& flow = flows.flows[0];
  CHECK(flow.protocol == 6);
  CHECK(flow.client.to_string() == "10.0.0.1:41000");
  CHECK(flow.server.to_string() == "10.0.0.2:80");
  CHECK(flow.handshake_seen);
  REQUIRE(flow.turns.size() == 2);
  CHECK(flow.turns[0].side == Side::client);
  CHECK(text(flow.turns[0]) == "GET /index.html HTTP/1.1\r\nHost: golden.test\r\n\r\n");
  CHECK(flow.turns[1].side == Side::server);
  CHECK(text(flow.turns[1]) == "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n");
}

TEST_CASE("a v6 stream without its handshake is followed, and data on a FIN is kept") {
  const Flows flows = assemble_flows(read_capture(data_dir + "/ipv6-midstream.pcap"));
  REQUIRE(flows.flows.size() == 1);
  const RecordedFlow& flow = flows.flows[0];
  CHECK(flow.client.to_string() == "[fd00::1]:50000");
  CHECK(flow.server.to_string() == "[fd00::2]:8080");
  CHECK_FALSE(flow.handshake_seen);
  REQUIRE(flow.turns.size() == 3);
  CHECK(text(flow.turns[0]) == "first turn");
  CHECK(text(flow.turns[1]) == "answer");
  CHECK(text(flow.turns[2]) == "last words");
}

TEST_CASE("UDP exchanges: each query a turn, answers grouped with their datagram sizes") {
  const Flows flows = assemble_flows(read_capture(data_dir + "/dns.pcapng"));
  REQUIRE(flows.flows.size() == 1);
  const RecordedFlow& flow = flows.flows[0];
  CHECK(flow.protocol == 17);
  CHECK(flow.server.to_string() == "10.0.0.53:53");
  REQUIRE(flow.turns.size() == 3);
  CHECK(flow.turns[0].side == Side::client);
  CHECK(flow.turns[1].side == Side::server);
  CHECK(flow.turns[1].datagrams == std::vector<std::uint32_t>{40});
  CHECK(flow.turns[2].side == Side::client);
  CHECK(flow.client_bytes == 2 * 24);
}

namespace {

const std::string request = "GET /index.html HTTP/1.1\r\nHost: golden.test\r\n\r\n";
const std::string response = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n";

}  // namespace

TEST_CASE("a lost SYN-ACK: the server's data is found at the sequence number the client acks") {
  const Flows flows = assemble_flows(read_capture(data_dir + "/lost-syn-ack.pcap"));
  REQUIRE(flows.flows.size() == 1);
  const RecordedFlow& flow = flows.flows[0];
  CHECK(flow.handshake_seen);
  CHECK(flow.gaps == 0);
  REQUIRE(flow.turns.size() == 2);
  CHECK(text(flow.turns[0]) == request);
  CHECK(text(flow.turns[1]) == response);
}

TEST_CASE("an acknowledgement recorded before the segment it acknowledges is no gap") {
  const Flows flows = assemble_flows(read_capture(data_dir + "/ack-before-data.pcap"));
  REQUIRE(flows.flows.size() == 1);
  const RecordedFlow& flow = flows.flows[0];
  CHECK(flow.gaps == 0);
  CHECK(flow.server_bytes == response.size());
  REQUIRE(flow.turns.size() >= 2);
  CHECK(text(flow.turns[1]).starts_with(response.substr(0, 20)));
}

TEST_CASE("TCP inside IPv6 atomic fragments is whole TCP") {
  const Flows flows = assemble_flows(read_capture(data_dir + "/ipv6-atomic-tcp.pcap"));
  CHECK(flows.fragments == 0);
  REQUIRE(flows.flows.size() == 1);
  const RecordedFlow& flow = flows.flows[0];
  CHECK(flow.server.to_string() == "[fd00::2]:80");
  REQUIRE(flow.turns.size() == 2);
  CHECK(text(flow.turns[0]) == request);
  CHECK(text(flow.turns[1]) == response);
}

TEST_CASE("fragments: one id both ways stays two datagrams; overlapping pieces are dropped") {
  const Flows flows = assemble_flows(read_capture(data_dir + "/fragments.pcap"));
  CHECK(flows.reassembled == 2);
  CHECK(flows.fragments == 2);  // the overlapping IPv6 pieces
  REQUIRE(flows.flows.size() == 1);
  const RecordedFlow& flow = flows.flows[0];
  REQUIRE(flow.turns.size() == 2);
  CHECK(text(flow.turns[0]) == std::string(40, 'q'));
  CHECK(text(flow.turns[1]) == std::string(40, 'a'));
}

TEST_CASE("fragments: overlapping IPv4 pieces and a datagram in 150 pieces are refused") {
  const Flows flows = assemble_flows(read_capture(data_dir + "/fragments-hostile.pcap"));
  CHECK(flows.reassembled == 0);
  CHECK(flows.fragments == 2 + 150);
  // The atomic fragment's frame had 4 bytes past its IP length: not part of the datagram.
  REQUIRE(flows.flows.size() == 1);
  REQUIRE(flows.flows[0].turns.size() == 1);
  CHECK(text(flows.flows[0].turns[0]) == "whole");
}

TEST_CASE("a hole nothing acknowledges is skipped before libtins gives the stream up") {
  const Flows flows = assemble_flows(read_capture(data_dir + "/long-hole.pcap"));
  REQUIRE(flows.flows.size() == 1);
  const RecordedFlow& flow = flows.flows[0];
  CHECK(flow.gaps == 1);
  CHECK(flow.gap_bytes == 100);
  REQUIRE(flow.turns.size() == 2);
  CHECK(flow.turns[1].missing == 100);
  const std::string answer = text(flow.turns[1]);
  CHECK(answer.size() == 301 * 100);
  CHECK(answer.substr(0, 100) == std::string(100, '0'));  // segment 0: "00000" 20 times
  CHECK(answer.substr(100, 5) == "00002");                // segment 1 is the hole
  CHECK(answer.ends_with("00301"));
}
