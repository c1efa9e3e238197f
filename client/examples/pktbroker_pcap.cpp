// pktbroker-pcap: records a broker channel to a pcap file that tcpdump and Wireshark read.
// `pktbroker-pcap [--count N] SOCKET CHANNEL FILE`: joins CHANNEL receive-only and writes every
// frame it gets (Ethernet or raw IP, as the channel carries) until SIGINT, SIGTERM, N frames
// or the broker's end. "-" writes to standard output.
#include "pktbroker/client.hpp"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

namespace {

volatile std::sig_atomic_t stop = 0;

constexpr std::uint32_t linktype_ethernet = 1;
constexpr std::uint32_t linktype_raw = 101;  // raw IPv4 or IPv6, no link header

void write_u32(std::FILE* out, std::uint32_t v) {
  std::fwrite(&v, sizeof v, 1, out);  // pcap files are in the writer's byte order
}

void write_header(std::FILE* out, std::uint32_t linktype) {
  write_u32(out, 0xa1b2c3d4);  // microsecond timestamps
  const std::uint16_t version[2] = {2, 4};
  std::fwrite(version, sizeof version, 1, out);
  write_u32(out, 0);  // thiszone
  write_u32(out, 0);  // sigfigs
  write_u32(out, 65535);
  write_u32(out, linktype);
}

void write_frame(std::FILE* out, std::span<const std::uint8_t> frame) {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  write_u32(out, static_cast<std::uint32_t>(now.tv_sec));
  write_u32(out, static_cast<std::uint32_t>(now.tv_nsec / 1000));
  write_u32(out, static_cast<std::uint32_t>(frame.size()));
  write_u32(out, static_cast<std::uint32_t>(frame.size()));
  std::fwrite(frame.data(), 1, frame.size(), out);
}

int usage(const char* program) {
  std::fprintf(stderr,
               "usage: %s [--count N] SOCKET CHANNEL FILE\n"
               "Records the frames of a pktbroker channel to FILE (pcap; - for stdout) until\n"
               "SIGINT or SIGTERM, or N frames. Joins the channel with the receive right only.\n",
               program);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  unsigned long long limit = 0;
  int first = 1;
  if (argc > 2 && std::strcmp(argv[1], "--count") == 0) {
    char* end = nullptr;
    limit = std::strtoull(argv[2], &end, 10);
    if (*argv[2] == '\0' || *end != '\0' || limit == 0) return usage(argv[0]);
    first = 3;
  }
  if (argc - first != 3) return usage(argv[0]);
  const char* socket = argv[first];
  const char* channel = argv[first + 1];
  const std::string file = argv[first + 2];
  struct sigaction action {};
  action.sa_handler = [](int) { stop = 1; };
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  pktbroker::Client client;
  pktbroker::proto::ChannelJoined joined;
  auto error = client.connect(socket, "pktbroker-pcap", pktbroker::proto::role_channel);
  if (!error) error = client.join_channel(channel, pktbroker::proto::right_receive, joined);
  if (error) {
    std::fprintf(stderr, "pktbroker-pcap: %s\n",
                 error == pktbroker::ClientError::broker_error ? client.last_error().text.c_str()
                                                               : error.message().c_str());
    return 1;
  }
  std::FILE* out = file == "-" ? stdout : std::fopen(file.c_str(), "wb");
  if (out == nullptr) {
    std::fprintf(stderr, "pktbroker-pcap: %s: %s\n", file.c_str(), std::strerror(errno));
    return 1;
  }
  write_header(out,
               joined.link == pktbroker::proto::LinkType::ip ? linktype_raw : linktype_ethernet);
  std::fflush(out);
  std::fprintf(stderr, "pktbroker-pcap: recording channel %s to %s\n", channel, file.c_str());
  unsigned long long written = 0;
  std::vector<pktbroker::ReceivedFrame> frames;
  while (stop == 0 && (limit == 0 || written < limit)) {
    error = client.next_frames(frames, 256, 200);
    if (error == pktbroker::ClientError::timeout) continue;
    if (error) break;
    for (const auto& frame : frames) {
      if (limit != 0 && written == limit) break;
      write_frame(out, frame.data());
      ++written;
    }
    std::fflush(out);
  }
  if (out != stdout) std::fclose(out);
  std::fprintf(stderr, "pktbroker-pcap: %llu frames written\n", written);
  return error && error != pktbroker::ClientError::timeout ? 1 : 0;
}
