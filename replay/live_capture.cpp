#include "replay/live_capture.hpp"

#include "replay/capture.hpp"

#include <tins/ip.h>
#include <tins/ipv6.h>
#include <tins/rawpdu.h>
#include <tins/tcp.h>
#include <tins/udp.h>

#include <chrono>

namespace pktbroker::replay {
namespace {

constexpr std::size_t segment_size = 1448;  // an Ethernet MSS with timestamps
constexpr int snap_length = 65535;

int index(Side side) {
  return side == Side::client ? 0 : 1;
}

Side other(Side side) {
  return side == Side::client ? Side::server : Side::client;
}

}  // namespace

LiveCapture::LiveCapture(const std::filesystem::path& file)
    : pcap_(pcap_open_dead_with_tstamp_precision(DLT_RAW, snap_length, PCAP_TSTAMP_PRECISION_MICRO),
            &pcap_close),
      dumper_(nullptr, &pcap_dump_close) {
  if (!pcap_) throw CaptureError(file.string() + ": cannot create a capture");
  dumper_.reset(pcap_dump_open(pcap_.get(), file.c_str()));
  if (!dumper_) throw CaptureError(file.string() + ": " + pcap_geterr(pcap_.get()));
}

LiveCapture::Conversation LiveCapture::open(std::uint8_t protocol, const Endpoint& client,
                                            const Endpoint& server) {
  Conversation c{protocol, client, server};
  if (protocol != 6) return c;
  write(c, Side::client, Tins::TCP::SYN, {});
  ++c.next[0];
  write(c, Side::server, Tins::TCP::SYN | Tins::TCP::ACK, {});
  ++c.next[1];
  write(c, Side::client, Tins::TCP::ACK, {});
  return c;
}

void LiveCapture::data(Conversation& c, Side from, std::span<const std::uint8_t> data) {
  if (c.protocol != 6) return write(c, from, 0, data);
  while (!data.empty()) {
    const auto segment = data.first(std::min(data.size(), segment_size));
    write(c, from, Tins::TCP::PSH | Tins::TCP::ACK, segment);
    c.next[index(from)] += static_cast<std::uint32_t>(segment.size());
    data = data.subspan(segment.size());
  }
}

void LiveCapture::close(Conversation& c, Side from) {
  if (c.protocol != 6 || c.closed[index(from)]) return;
  write(c, from, Tins::TCP::FIN | Tins::TCP::ACK, {});
  ++c.next[index(from)];
  c.closed[index(from)] = true;
  write(c, other(from), Tins::TCP::ACK, {});
}

void LiveCapture::write(const Conversation& c, Side from, std::uint8_t flags,
                        std::span<const std::uint8_t> payload) {
  const Endpoint& source = from == Side::client ? c.client : c.server;
  const Endpoint& destination = from == Side::client ? c.server : c.client;
  Tins::RawPDU raw(payload.data(), static_cast<std::uint32_t>(payload.size()));
  std::vector<std::uint8_t> bytes;
  const auto build = [&](auto&& ip) {
    if (c.protocol == 6) {
      Tins::TCP tcp(destination.port, source.port);
      tcp.seq(c.next[index(from)]);
      tcp.ack_seq((flags & Tins::TCP::ACK) != 0 ? c.next[index(other(from))] : 0);
      tcp.flags(flags);
      tcp.window(65535);
      bytes = (ip / tcp / raw).serialize();
    } else {
      bytes = (ip / Tins::UDP(destination.port, source.port) / raw).serialize();
    }
  };
  if (source.address.family == 6) {
    build(Tins::IPv6(destination.address.to_string(), source.address.to_string()));
  } else {
    build(Tins::IP(destination.address.to_string(), source.address.to_string()));
  }
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(now).count();
  pcap_pkthdr header{};
  header.ts.tv_sec = static_cast<time_t>(micros / 1'000'000);
  header.ts.tv_usec = static_cast<suseconds_t>(micros % 1'000'000);
  header.caplen = header.len = static_cast<bpf_u_int32>(bytes.size());
  pcap_dump(reinterpret_cast<u_char*>(dumper_.get()), &header, bytes.data());
}

}  // namespace pktbroker::replay
