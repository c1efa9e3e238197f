// Turns captured packets into flows: TCP streams reassembled (libtins), UDP exchanges, each a
// sequence of turns (what one side said before the other answered).
#pragma once

#include "pktbroker/packet_view.hpp"
#include "replay/capture.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace pktbroker::replay {

enum class Side : std::uint8_t { client, server };

/// What one side sent before the other side spoke.
struct Turn {
  Side side = Side::client;
  std::vector<std::uint8_t> data;
  std::chrono::nanoseconds time{};       ///< capture time of its first byte
  std::vector<std::uint32_t> datagrams;  ///< UDP: the size of each datagram in `data`
  std::uint64_t missing = 0;             ///< TCP: bytes the capture lost inside this turn
};

struct Endpoint {
  IpAddress address;
  std::uint16_t port = 0;

  [[nodiscard]] std::string to_string() const;
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

struct RecordedFlow {
  std::size_t id = 0;  ///< 1-based, in order of the flows' first packets
  std::uint8_t protocol = 6;
  Endpoint client;  ///< sent the first packet (the SYN for TCP)
  Endpoint server;
  std::chrono::nanoseconds start{};
  std::vector<Turn> turns;
  bool handshake_seen = false;  ///< TCP: the capture holds the SYN or the SYN-ACK
  std::uint64_t client_bytes = 0;
  std::uint64_t server_bytes = 0;
  std::optional<Side> closed_first;  ///< TCP: the side whose FIN came first, if any
  std::uint64_t gaps = 0;            ///< TCP: holes the capture lost (a segment never captured)
  std::uint64_t gap_bytes = 0;       ///< ... and the bytes in them
  std::string skip_reason;           ///< not empty: the flow cannot be replayed, and why
};

struct Flows {
  std::vector<RecordedFlow> flows;
  std::uint64_t bad_packets = 0;      ///< IP packets that did not parse (counted, skipped)
  std::uint64_t other_protocols = 0;  ///< neither TCP nor UDP (ICMP, ...): not replayed
  std::uint64_t fragments = 0;        ///< IP fragments that never made a whole packet
  std::uint64_t reassembled = 0;      ///< whole packets rebuilt from fragments
  std::uint64_t late_segments = 0;    ///< TCP data after its connection closed (retransmitted)
};

/// Whether a port is one a plugin serves (it then names the server of a flow whose start the
/// capture missed).
using ServicePort = std::function<bool(std::uint8_t protocol, std::uint16_t port)>;

/// Groups the capture's packets into flows keyed by 5-tuple (v4 and v6). TCP payloads are
/// reassembled in sequence order whatever the capture order, retransmissions and overlaps
/// counted once, streams without a handshake followed from their first data, data on a FIN
/// kept. A hole the capture lost is skipped and counted once the peer has acknowledged past it
/// (or the connection ends), so the connection stays one flow. Fragments are reassembled.
/// The server is the side that answered the SYN; without a handshake it is decided by ports
/// (a plugin's, then well-known, then non-ephemeral), and a TCP flow where the ports do not
/// tell is kept with a `skip_reason`. A flow joined mid-conversation starts at its client's
/// first turn. Flows without any payload are dropped.
Flows assemble_flows(const Capture& capture, const ServicePort& service_port = {});

}  // namespace pktbroker::replay
