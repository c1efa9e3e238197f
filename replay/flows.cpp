#include "replay/flows.hpp"

#include <tins/ip.h>
#include <tins/ipv6.h>
#include <tins/tcp.h>
#include <tins/tcp_ip/stream_follower.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <map>
#include <tuple>

namespace pktbroker::replay {
namespace {

using Key = std::tuple<std::array<std::uint8_t, 16>, std::uint16_t, std::array<std::uint8_t, 16>,
                       std::uint16_t, std::uint8_t>;

/// Both directions of a 5-tuple give the same key.
Key key_of(const PacketView& view) {
  auto a = std::pair(view.src.bytes, view.src_port);
  auto b = std::pair(view.dst.bytes, view.dst_port);
  if (b < a) std::swap(a, b);
  return {a.first, a.second, b.first, b.second, view.protocol};
}

Endpoint endpoint(const IpAddress& address, std::uint16_t port) {
  return {address, port};
}

/// Appends data to the flow's last turn when `side` spoke last, else opens a new turn.
void add_data(RecordedFlow& flow, Side side, const std::uint8_t* data, std::size_t size,
              std::chrono::nanoseconds time, bool datagram) {
  if (size == 0 && !datagram) return;
  const bool new_turn = flow.turns.empty() || flow.turns.back().side != side ||
                        (datagram && side == Side::client);  // each query is its own turn
  if (new_turn) flow.turns.push_back({side, {}, time, {}});
  Turn& turn = flow.turns.back();
  turn.data.insert(turn.data.end(), data, data + size);
  if (datagram) turn.datagrams.push_back(static_cast<std::uint32_t>(size));
  (side == Side::client ? flow.client_bytes : flow.server_bytes) += size;
}

IpAddress address_of(const Tins::IPv4Address& v4) {
  IpAddress address;
  address.family = 4;
  inet_pton(AF_INET, v4.to_string().c_str(), address.bytes.data());
  return address;
}

IpAddress address_of(const Tins::IPv6Address& v6) {
  IpAddress address;
  address.family = 6;
  std::copy(v6.begin(), v6.end(), address.bytes.begin());
  return address;
}

}  // namespace

std::string Endpoint::to_string() const {
  return address.family == 6 ? "[" + address.to_string() + "]:" + std::to_string(port)
                             : address.to_string() + ":" + std::to_string(port);
}

Flows assemble_flows(const Capture& capture) {
  Flows result;
  std::vector<RecordedFlow> flows;  // in order of first packet
  std::map<Key, std::size_t> udp_flows;
  std::chrono::nanoseconds now{};

  Tins::TCPIP::StreamFollower follower;
  follower.follow_partial_streams(true);
  follower.new_stream_callback([&](Tins::TCPIP::Stream& stream) {
    RecordedFlow flow;
    flow.protocol = IPPROTO_TCP;
    flow.client = endpoint(
        stream.is_v6() ? address_of(stream.client_addr_v6()) : address_of(stream.client_addr_v4()),
        stream.client_port());
    flow.server = endpoint(
        stream.is_v6() ? address_of(stream.server_addr_v6()) : address_of(stream.server_addr_v4()),
        stream.server_port());
    flow.start = now;
    flow.handshake_seen = !stream.is_partial_stream();
    const std::size_t index = flows.size();
    flows.push_back(std::move(flow));
    stream.client_data_callback([&flows, &now, index](Tins::TCPIP::Stream& s) {
      const auto& payload = s.client_payload();
      add_data(flows[index], Side::client, payload.data(), payload.size(), now, false);
    });
    stream.server_data_callback([&flows, &now, index](Tins::TCPIP::Stream& s) {
      const auto& payload = s.server_payload();
      add_data(flows[index], Side::server, payload.data(), payload.size(), now, false);
    });
  });

  for (const CapturedPacket& packet : capture.packets) {
    now = packet.time;
    PacketView view;
    if (parse_packet(packet.ip, view) != ParseError::none || view.captured_truncated) {
      ++result.bad_packets;
      continue;
    }
    if (view.fragment) {
      ++result.fragments;
      continue;
    }
    if (view.protocol == IPPROTO_TCP) {
      try {
        if (view.ip_version == 4) {
          Tins::IP ip(packet.ip.data(), static_cast<std::uint32_t>(packet.ip.size()));
          follower.process_packet(ip);
        } else {
          Tins::IPv6 ip(packet.ip.data(), static_cast<std::uint32_t>(packet.ip.size()));
          follower.process_packet(ip);
        }
      } catch (const std::exception&) {  // libtins: malformed_packet and friends
        ++result.bad_packets;
      }
    } else if (view.protocol == IPPROTO_UDP) {
      const auto [it, created] = udp_flows.try_emplace(key_of(view), flows.size());
      if (created) {
        RecordedFlow flow;
        flow.protocol = IPPROTO_UDP;
        flow.client = endpoint(view.src, view.src_port);
        flow.server = endpoint(view.dst, view.dst_port);
        flow.start = now;
        flows.push_back(std::move(flow));
      }
      RecordedFlow& flow = flows[it->second];
      const Side side =
          flow.client == endpoint(view.src, view.src_port) ? Side::client : Side::server;
      const auto payload = view.payload();
      add_data(flow, side, payload.data(), payload.size(), now, true);
    } else {
      ++result.other_protocols;
    }
  }

  for (RecordedFlow& flow : flows) {
    if (flow.turns.empty()) continue;  // a handshake without data, a port scan
    flow.id = result.flows.size() + 1;
    result.flows.push_back(std::move(flow));
  }
  return result;
}

}  // namespace pktbroker::replay
