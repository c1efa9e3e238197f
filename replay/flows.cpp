#include "replay/flows.hpp"

#include "replay/defragment.hpp"

#include <tins/ip.h>
#include <tins/ipv6.h>
#include <tins/tcp.h>
#include <tins/tcp_ip/stream_follower.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <map>
#include <tuple>

namespace pktbroker::replay {
namespace {

using Key = std::tuple<std::uint8_t, std::array<std::uint8_t, 16>, std::uint16_t,
                       std::array<std::uint8_t, 16>, std::uint16_t, std::uint8_t>;
using TcpFlow = Tins::TCPIP::Flow;

constexpr std::uint8_t tcp_fin = 0x01;
constexpr std::uint8_t tcp_syn = 0x02;
constexpr std::uint8_t tcp_ack = 0x10;
// A hole no retransmission filled: skipped once this much waits behind it, well below where
// libtins' follower gives the stream up (512 segments or 3 MiB, both directions together).
constexpr std::size_t max_waiting_segments = 200;
constexpr std::uint32_t max_waiting_bytes = 1 << 20;
constexpr std::uint16_t well_known_ports = 1024;
constexpr std::uint16_t ephemeral_ports = 32768;  // Linux's range starts here, IANA's above
// A segment the capture recorded this many packets after the acknowledgement of it is
// reordering (several capture queues, merged captures), not loss.
constexpr std::size_t reorder_window = 16;

/// Both directions of a 5-tuple give the same key.
Key key_of(const PacketView& view) {
  auto a = std::pair(view.src.bytes, view.src_port);
  auto b = std::pair(view.dst.bytes, view.dst_port);
  if (b < a) std::swap(a, b);
  return {view.ip_version, a.first, a.second, b.first, b.second, view.protocol};
}

Endpoint source(const PacketView& view) {
  return {view.src, view.src_port};
}

Endpoint destination(const PacketView& view) {
  return {view.dst, view.dst_port};
}

std::uint32_t read32(std::span<const std::uint8_t> bytes, std::size_t at) {
  return static_cast<std::uint32_t>(bytes[at]) << 24 |
         static_cast<std::uint32_t>(bytes[at + 1]) << 16 |
         static_cast<std::uint32_t>(bytes[at + 2]) << 8 | bytes[at + 3];
}

/// Sequence numbers wrap: how far `to` lies after `from`.
std::uint32_t distance(std::uint32_t from, std::uint32_t to) {
  return to - from;
}

bool after(std::uint32_t a, std::uint32_t b) {
  return static_cast<std::int32_t>(a - b) > 0;
}

/// The turn `side` speaks in now: the last one, or a new one when the other side spoke last.
Turn& turn_of(RecordedFlow& flow, Side side, std::chrono::nanoseconds time) {
  if (flow.turns.empty() || flow.turns.back().side != side)
    flow.turns.push_back({side, {}, time, {}, 0});
  return flow.turns.back();
}

void add_data(RecordedFlow& flow, Side side, std::span<const std::uint8_t> data,
              std::chrono::nanoseconds time) {
  if (data.empty()) return;
  Turn& turn = turn_of(flow, side, time);
  turn.data.insert(turn.data.end(), data.begin(), data.end());
  (side == Side::client ? flow.client_bytes : flow.server_bytes) += data.size();
}

/// Each query is a turn of its own; answers in a row share one, datagram sizes kept.
void add_datagram(RecordedFlow& flow, Side side, std::span<const std::uint8_t> data,
                  std::chrono::nanoseconds time) {
  if (side == Side::client) flow.turns.push_back({side, {}, time, {}, 0});
  Turn& turn = turn_of(flow, side, time);
  turn.data.insert(turn.data.end(), data.begin(), data.end());
  turn.datagrams.push_back(static_cast<std::uint32_t>(data.size()));
  (side == Side::client ? flow.client_bytes : flow.server_bytes) += data.size();
}

void add_gap(RecordedFlow& flow, Side side, std::uint32_t bytes, std::chrono::nanoseconds time) {
  if (bytes == 0) return;
  turn_of(flow, side, time).missing += bytes;
  ++flow.gaps;
  flow.gap_bytes += bytes;
}

/// The server of a flow whose handshake the capture lacks: true when it is the `a` side,
/// false for `b`, none when the ports do not tell.
std::optional<bool> a_is_server(std::uint8_t protocol, std::uint16_t a, std::uint16_t b,
                                const ServicePort& service_port) {
  if (service_port && service_port(protocol, a) != service_port(protocol, b)) {
    return service_port(protocol, a);
  }
  if ((a < well_known_ports) != (b < well_known_ports)) return a < well_known_ports;
  if ((a < ephemeral_ports) != (b < ephemeral_ports)) return a < ephemeral_ports;
  return std::nullopt;
}

/// Builds the flows packet by packet.
class Assembler {
 public:
  Assembler(Flows& result, const Capture& capture, const ServicePort& service_port)
      : result_(result), packets_(capture.packets), service_port_(service_port) {
    follower_.follow_partial_streams(true);
    follower_.stream_keep_alive(std::chrono::hours(24 * 365));  // libtins times by the wall
    follower_.new_stream_callback([this](Tins::TCPIP::Stream& stream) { on_new_stream(stream); });
    follower_.stream_termination_callback(
        [this](Tins::TCPIP::Stream& stream, Tins::TCPIP::StreamFollower::TerminationReason) {
          const auto open = std::find_if(connections_.begin(), connections_.end(),
                                         [&](const auto& c) { return c.second.stream == &stream; });
          if (open != connections_.end()) on_stream_end(open->first);
        });
  }

  /// The next packet of the capture.
  void add(std::size_t index);
  /// The capture has ended: what still waits behind a hole is kept, the hole counted.
  std::vector<RecordedFlow> finish();

 private:
  /// A TCP connection libtins follows.
  struct Connection {
    Tins::TCPIP::Stream* stream = nullptr;
    std::size_t index = 0;  ///< in flows_
    bool reversed = false;  ///< libtins' client (the first sender) is the server
    bool sent[2] = {};      ///< data seen from each Side (so its sequence numbers are known)
    std::optional<std::uint32_t> acknowledged[2];  ///< of each Side's bytes, by the other
    std::optional<std::uint32_t> fin[2];           ///< where each Side's FIN is
    bool synced[2] = {true, true};  ///< each Side's first sequence number is known to libtins
  };

  void add_fragment(std::span<const std::uint8_t> ip, const PacketView& view);
  void add_ip(std::span<const std::uint8_t> ip, const PacketView& view);
  void add_tcp(std::span<const std::uint8_t> ip, const PacketView& view);
  void add_udp(const PacketView& view);
  void on_new_stream(Tins::TCPIP::Stream& stream);
  void on_stream_end(const Key& key);
  [[nodiscard]] TcpFlow& tcp_flow(const Connection& c, Side side) const;
  void skip_to(Connection& c, Side side, std::uint32_t acknowledged, bool may_be_reordered);
  [[nodiscard]] bool arrives_soon(const Connection& c, Side side, std::uint32_t seq) const;
  void skip_all(Connection& c, Side side);
  void stand_in_for_syn(Connection& c, Side side, std::uint32_t seq);
  void skip_rest(Connection& c);
  bool skip_hole(Connection& c, Side side);

  Flows& result_;
  std::span<const CapturedPacket> packets_;
  std::size_t position_ = 0;  // the packet being added
  const ServicePort& service_port_;
  Tins::TCPIP::StreamFollower follower_;
  Defragmenter defragmenter_;
  std::vector<RecordedFlow> flows_;  // in order of first packet
  std::map<Key, std::size_t> udp_flows_;
  std::map<Key, Connection> connections_;  // open
  std::map<Key, Endpoint> handshakes_;     // the client, by the SYN or SYN-ACK seen
  std::map<Key, std::size_t> closed_;      // connections that ended (FINs or a reset)
  std::chrono::nanoseconds now_{};
  const PacketView* packet_ = nullptr;  // the packet libtins is processing
  bool starts_with_syn_ = false;        // ... is a SYN
};

TcpFlow& Assembler::tcp_flow(const Connection& c, Side side) const {
  return (side == Side::client) != c.reversed ? c.stream->client_flow() : c.stream->server_flow();
}

void Assembler::on_new_stream(Tins::TCPIP::Stream& stream) {
  const PacketView& view = *packet_;
  const Key key = key_of(view);
  RecordedFlow flow;
  flow.protocol = IPPROTO_TCP;
  flow.start = now_;
  // libtins' client sent the packet the stream starts at; this packet.
  Endpoint first_sender = source(view);
  Endpoint other = destination(view);
  Connection connection;
  connection.stream = &stream;
  connection.index = flows_.size();
  // A stream that starts at a SYN takes the server's sequence numbers from the SYN-ACK. (One
  // that starts at data takes each side's from the packet and its ACK.)
  if (starts_with_syn_) connection.synced[1] = false;
  if (const auto handshake = handshakes_.find(key); handshake != handshakes_.end()) {
    flow.handshake_seen = true;
    connection.reversed = handshake->second != first_sender;
    handshakes_.erase(handshake);
  } else if (const auto server =
                 a_is_server(IPPROTO_TCP, first_sender.port, other.port, service_port_)) {
    connection.reversed = *server;
  } else {
    flow.skip_reason = "no handshake in the capture, and neither port " +
                       std::to_string(first_sender.port) + " nor " + std::to_string(other.port) +
                       " is a known service port: the server cannot be told";
  }
  flow.client = connection.reversed ? other : first_sender;
  flow.server = connection.reversed ? first_sender : other;
  flows_.push_back(std::move(flow));
  connections_[key] = connection;

  const auto data = [this, key](Side side) {
    return [this, key, side](Tins::TCPIP::Stream&) {
      const Connection& c = connections_.at(key);
      add_data(flows_[c.index], side, tcp_flow(c, side).payload(), now_);
    };
  };
  const auto waiting = [this, key](Side side) {
    return [this, key, side](Tins::TCPIP::Stream&, std::uint32_t, const TcpFlow::payload_type&) {
      Connection& c = connections_.at(key);
      const TcpFlow& flow = tcp_flow(c, side);
      if (flow.buffered_payload().size() >= max_waiting_segments ||
          flow.total_buffered_bytes() >= max_waiting_bytes) {
        skip_hole(c, side);
      }
    };
  };
  const Side libtins_client = connection.reversed ? Side::server : Side::client;
  const Side libtins_server = connection.reversed ? Side::client : Side::server;
  stream.client_data_callback(data(libtins_client));
  stream.server_data_callback(data(libtins_server));
  stream.client_out_of_order_callback(waiting(libtins_client));
  stream.server_out_of_order_callback(waiting(libtins_server));
  stream.stream_closed_callback([this, key](Tins::TCPIP::Stream&) { on_stream_end(key); });
}

void Assembler::on_stream_end(const Key& key) {
  const auto open = connections_.find(key);
  if (open == connections_.end()) return;
  skip_rest(open->second);
  closed_[key] = open->second.index;
  connections_.erase(open);
}

// The connection is over: a hole before what the peer acknowledged last (the final segment
// lost, nothing behind it) or before data still waiting is a gap.
void Assembler::skip_rest(Connection& c) {
  for (const Side side : {Side::client, Side::server}) {
    // The data ends at the FIN when one was captured, else at the last acknowledgement.
    const int at = static_cast<int>(side);
    const auto& end = c.fin[at] ? c.fin[at] : c.acknowledged[at];
    if (end && c.sent[at]) skip_to(c, side, *end, false);
    skip_all(c, side);
  }
}

// The hole before the nearest data waiting is counted; the run of data after it goes on.
// False when nothing moved (nothing waits).
bool Assembler::skip_hole(Connection& c, Side side) {
  TcpFlow& flow = tcp_flow(c, side);
  auto& waiting = flow.buffered_payload();
  if (waiting.empty()) return false;
  const std::uint32_t next = flow.sequence_number();
  std::vector<std::pair<std::uint32_t, const TcpFlow::payload_type*>> chunks;
  for (const auto& [seq, data] : waiting) chunks.emplace_back(seq, &data);
  std::sort(chunks.begin(), chunks.end(), [next](const auto& a, const auto& b) {
    return distance(next, a.first) < distance(next, b.first);
  });
  const std::uint32_t start = chunks.front().first;
  add_gap(flows_[c.index], side, distance(next, start), now_);
  std::vector<std::uint8_t> run;
  std::uint32_t end = start;
  for (const auto& [seq, data] : chunks) {
    if (distance(start, seq) > distance(start, end)) break;  // another hole
    const std::uint32_t seen = distance(seq, end);
    if (seen < data->size()) {
      run.insert(run.end(), data->begin() + seen, data->end());
      end = seq + static_cast<std::uint32_t>(data->size());
    }
  }
  add_data(flows_[c.index], side, run, now_);
  flow.advance_sequence(end);  // drops every chunk starting at or before `end`: the run's
  return end != next;
}

// The capture lost the SYN-ACK (libtins then expects the server's data at the SYN's ACK
// field, 0): a SYN-ACK at the sequence number before `seq` sets the server's data right.
void Assembler::stand_in_for_syn(Connection& c, Side side, std::uint32_t seq) {
  const RecordedFlow& flow = flows_[c.index];
  const Endpoint& from = side == Side::client ? flow.client : flow.server;
  const Endpoint& to = side == Side::client ? flow.server : flow.client;
  Tins::TCP tcp(to.port, from.port);
  tcp.flags(Tins::TCP::SYN | Tins::TCP::ACK);
  tcp.seq(seq);
  c.synced[static_cast<int>(side)] = true;
  packet_ = nullptr;
  if (from.address.family == 4) {
    Tins::IP pdu = Tins::IP(to.address.to_string(), from.address.to_string()) / tcp;
    follower_.process_packet(pdu);
  } else {
    Tins::IPv6 pdu = Tins::IPv6(to.address.to_string(), from.address.to_string()) / tcp;
    follower_.process_packet(pdu);
  }
}

void Assembler::skip_all(Connection& c, Side side) {
  while (skip_hole(c, side)) {
  }
}

// The peer acknowledged `acknowledged`: what the capture lacks before it was lost by the
// capture, not the network (a retransmission would have come before the acknowledgement).
// Unless the capture has the segment a few packets on (`may_be_reordered`).
void Assembler::skip_to(Connection& c, Side side, std::uint32_t acknowledged,
                        bool may_be_reordered) {
  TcpFlow& flow = tcp_flow(c, side);
  const auto& fin = c.fin[static_cast<int>(side)];
  if (fin && after(acknowledged, *fin)) acknowledged = *fin;  // the FIN takes a number too
  while (after(acknowledged, flow.sequence_number())) {
    if (may_be_reordered && arrives_soon(c, side, flow.sequence_number())) return;
    const auto& waiting = flow.buffered_payload();
    const bool data_before = std::any_of(waiting.begin(), waiting.end(), [&](const auto& chunk) {
      return !after(chunk.first, acknowledged);
    });
    if (data_before) {
      if (!skip_hole(c, side)) return;
    } else {  // the hole runs up to the acknowledgement
      add_gap(flows_[c.index], side, distance(flow.sequence_number(), acknowledged), now_);
      flow.advance_sequence(acknowledged);
    }
  }
}

// Whether a data segment from `side` holding sequence number `seq` comes within the next
// few packets.
bool Assembler::arrives_soon(const Connection& c, Side side, std::uint32_t seq) const {
  const RecordedFlow& flow = flows_[c.index];
  const Endpoint& sender = side == Side::client ? flow.client : flow.server;
  const std::size_t end = std::min(packets_.size(), position_ + 1 + reorder_window);
  for (std::size_t i = position_ + 1; i < end; ++i) {
    PacketView view;
    const auto& ip = packets_[i].ip;
    if (parse_packet(ip, view) != ParseError::none || view.protocol != IPPROTO_TCP ||
        source(view) != sender ||
        destination(view) != (side == Side::client ? flow.server : flow.client) ||
        view.payload().empty() || view.l4_offset + 8 > ip.size()) {
      continue;
    }
    const std::uint32_t start = read32(ip, view.l4_offset + 4);
    const auto size = static_cast<std::uint32_t>(view.payload().size());
    if (!after(start, seq) && after(start + size, seq)) return true;
  }
  return false;
}

void Assembler::add(std::size_t index) {
  position_ = index;
  const CapturedPacket& packet = packets_[index];
  now_ = packet.time;
  PacketView view;
  ParseError error = parse_packet(packet.ip, view);
  std::optional<std::vector<std::uint8_t>> whole;
  if (view.ip_version == 6 && (whole = Defragmenter::without_atomic_fragment(packet.ip))) {
    view = PacketView{};
    error = parse_packet(*whole, view);  // libtins would not look past the Fragment header
  }
  const std::span<const std::uint8_t> ip = whole ? std::span(*whole) : std::span(packet.ip);
  if (view.fragment && !view.captured_truncated) {
    // A first fragment's transport header promises more than the fragment holds: it is
    // checked once the packet is whole.
    return add_fragment(ip, view);
  }
  if (error != ParseError::none || view.captured_truncated) {
    ++result_.bad_packets;
    return;
  }
  add_ip(ip, view);
}

void Assembler::add_fragment(std::span<const std::uint8_t> ip, const PacketView& view) {
  const auto whole = defragmenter_.add(ip, view, now_);
  if (!whole) return;
  PacketView whole_view;
  if (parse_packet(*whole, whole_view) != ParseError::none || whole_view.fragment) {
    ++result_.bad_packets;
    return;
  }
  add_ip(*whole, whole_view);
}

void Assembler::add_ip(std::span<const std::uint8_t> ip, const PacketView& view) {
  if (view.protocol == IPPROTO_TCP) {
    add_tcp(ip, view);
  } else if (view.protocol == IPPROTO_UDP) {
    add_udp(view);
  } else {
    ++result_.other_protocols;
  }
}

void Assembler::add_tcp(std::span<const std::uint8_t> ip, const PacketView& view) {
  if (!view.has_ports || view.l4_offset + 14 > ip.size()) {
    ++result_.bad_packets;
    return;
  }
  const std::uint8_t flags = ip[view.l4_offset + 13];
  const bool syn = (flags & tcp_syn) != 0;
  const bool data = !view.payload().empty();
  const Key key = key_of(view);
  if (const auto closed = closed_.find(key); closed != closed_.end()) {
    if (!syn || (flags & tcp_ack) != 0) {  // a retransmission, or the last ACK
      if (data || (flags & tcp_fin) != 0) ++result_.late_segments;
      return;
    }
    closed_.erase(closed);  // the port pair used again: a new connection
  }
  const auto open = connections_.find(key);
  if (syn && open == connections_.end()) {
    handshakes_[key] = (flags & tcp_ack) != 0 ? destination(view) : source(view);
  }
  if (open != connections_.end()) {
    Connection& c = open->second;
    const int from = flows_[c.index].client == source(view) ? 0 : 1;
    const int peer = 1 - from;
    if ((flags & tcp_fin) != 0) {
      c.fin[from] =
          read32(ip, view.l4_offset + 4) + static_cast<std::uint32_t>(view.payload().size());
      auto& closed_first = flows_[c.index].closed_first;
      if (!closed_first) closed_first = static_cast<Side>(from);
    }
    const std::uint32_t ack = read32(ip, view.l4_offset + 8);
    const bool acks = (flags & tcp_ack) != 0;
    if (acks && (!c.acknowledged[peer] || after(ack, *c.acknowledged[peer]))) {
      c.acknowledged[peer] = ack;
    }
    // Only a packet that carries data moves past a hole now: a bare ACK the capture recorded
    // ahead of the data it acknowledges (capture reordering) must not. The connection's end
    // looks at the last acknowledgement too.
    if (data && acks && c.sent[peer]) skip_to(c, static_cast<Side>(peer), ack, true);
    if (syn) c.synced[from] = true;
    if (!c.synced[peer] && from == 0 && acks) {
      stand_in_for_syn(c, Side::server, ack - 1);
    } else if (!c.synced[from] && from == 1 && data) {
      stand_in_for_syn(c, Side::server, read32(ip, view.l4_offset + 4) - 1);
    }
  }
  packet_ = &view;
  starts_with_syn_ = syn && (flags & tcp_ack) == 0;
  try {
    const auto size = static_cast<std::uint32_t>(std::min<std::size_t>(ip.size(), view.ip_length));
    if (view.ip_version == 4) {
      Tins::IP pdu(ip.data(), size);
      follower_.process_packet(pdu);
    } else {
      Tins::IPv6 pdu(ip.data(), size);
      follower_.process_packet(pdu);
    }
  } catch (const std::exception&) {  // libtins: malformed_packet and friends
    ++result_.bad_packets;
  }
  packet_ = nullptr;
  if (const auto now_open = connections_.find(key); data && now_open != connections_.end()) {
    Connection& c = now_open->second;
    const Side from = flows_[c.index].client == source(view) ? Side::client : Side::server;
    c.sent[static_cast<int>(from)] = true;
  }
}

void Assembler::add_udp(const PacketView& view) {
  const auto [it, created] = udp_flows_.try_emplace(key_of(view), flows_.size());
  if (created) {
    RecordedFlow flow;
    flow.protocol = IPPROTO_UDP;
    flow.start = now_;
    // Without a handshake the ports tell; when they do not, the first sender is the client.
    const bool reversed =
        a_is_server(IPPROTO_UDP, view.src_port, view.dst_port, service_port_).value_or(false);
    flow.client = reversed ? destination(view) : source(view);
    flow.server = reversed ? source(view) : destination(view);
    flows_.push_back(std::move(flow));
  }
  RecordedFlow& flow = flows_[it->second];
  add_datagram(flow, flow.client == source(view) ? Side::client : Side::server, view.payload(),
               now_);
}

std::vector<RecordedFlow> Assembler::finish() {
  for (auto& [key, connection] : connections_) skip_rest(connection);
  connections_.clear();
  result_.fragments = defragmenter_.unused();
  result_.reassembled = defragmenter_.reassembled();
  return std::move(flows_);
}

}  // namespace

std::string Endpoint::to_string() const {
  return address.family == 6 ? "[" + address.to_string() + "]:" + std::to_string(port)
                             : address.to_string() + ":" + std::to_string(port);
}

Flows assemble_flows(const Capture& capture, const ServicePort& service_port) {
  Flows result;
  std::vector<RecordedFlow> flows;
  {
    Assembler assembler(result, capture, service_port);
    for (std::size_t i = 0; i < capture.packets.size(); ++i) assembler.add(i);
    flows = assembler.finish();
  }
  for (RecordedFlow& flow : flows) {
    if (!flow.handshake_seen) {
      // Joined mid-conversation: an answer to a request the capture missed cannot be asked
      // for again. (With a handshake, a server turn first is a greeting: FTP, SMTP.)
      const auto first_client = std::find_if(flow.turns.begin(), flow.turns.end(),
                                             [](const Turn& t) { return t.side == Side::client; });
      for (auto turn = flow.turns.begin(); turn != first_client; ++turn) {
        flow.server_bytes -= turn->data.size();
      }
      flow.turns.erase(flow.turns.begin(), first_client);
    }
    if (flow.turns.empty()) continue;  // a handshake without data, a port scan
    flow.id = result.flows.size() + 1;
    result.flows.push_back(std::move(flow));
  }
  return result;
}

}  // namespace pktbroker::replay
