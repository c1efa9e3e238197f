// --pcap-out: the replay's live traffic as a capture. pktreplay talks over ordinary sockets and
// sees no packets, so each flow's exchange is written as packets it could have been: a TCP
// handshake, each read or write as segments with consistent sequence numbers, the closes; UDP
// datagrams as they were sent and received. Raw IP (LINKTYPE_RAW), checksums computed.
#pragma once

#include "replay/flows.hpp"

#include <pcap/pcap.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>

namespace pktbroker::replay {

class LiveCapture {
 public:
  /// One flow's conversation; its sequence numbers.
  struct Conversation {
    std::uint8_t protocol = 6;
    Endpoint client;
    Endpoint server;
    std::uint32_t next[2] = {1'000'000, 2'000'000};  ///< by Side: the next sequence number
    bool closed[2] = {};
  };

  /// Creates (truncates) `file`; throws CaptureError when it cannot be written.
  explicit LiveCapture(const std::filesystem::path& file);

  /// A TCP flow's handshake (none for UDP).
  Conversation open(std::uint8_t protocol, const Endpoint& client, const Endpoint& server);
  /// Data `from` one side: TCP segments of at most 1,448 bytes, or one UDP datagram.
  void data(Conversation& conversation, Side from, std::span<const std::uint8_t> data);
  /// TCP: `from` closes its side (a FIN, acknowledged).
  void close(Conversation& conversation, Side from);

 private:
  void write(const Conversation& c, Side from, std::uint8_t flags,
             std::span<const std::uint8_t> payload);

  std::unique_ptr<pcap_t, decltype(&pcap_close)> pcap_;
  std::unique_ptr<pcap_dumper_t, decltype(&pcap_dump_close)> dumper_;
};

}  // namespace pktbroker::replay
