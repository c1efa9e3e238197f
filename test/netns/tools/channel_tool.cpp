// Sends or receives numbered frames on a channel through libpktbroker, for the channel tests
// and the channel benchmark:
//   channel_tool SOCKET send CHANNEL COUNT [SIZE] [PAUSE_US]   (PAUSE_US: a pause after 64 frames)
//   channel_tool SOCKET receive CHANNEL COUNT [SLOW_US] [QUIET_MS]
//   channel_tool SOCKET both CHANNEL COUNT [SIZE]   (after a line on stdin, sends COUNT, then
//                                                  receives COUNT)
// A sent frame is an Ethernet broadcast frame (source 02:00:00:00:00:01) holding its sequence
// number; `receive` counts frames per sender, checks each sender's numbers arrive in order,
// and prints "received N gaps G" (G: numbers skipped: frames it missed).
#include "pktbroker/client.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace {

int fail(const pktbroker::Client& client, const char* what, std::error_code error) {
  std::printf("error %s: %s\n", what,
              error == pktbroker::ClientError::broker_error ? client.last_error().text.c_str()
                                                            : error.message().c_str());
  return 1;
}

std::uint32_t sequence_of(std::span<const std::uint8_t> frame) {
  std::uint32_t seq = 0;
  if (frame.size() >= 18) std::memcpy(&seq, frame.data() + 14, sizeof seq);
  return seq;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s SOCKET send|receive CHANNEL COUNT [...]\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[2];
  const unsigned long count = std::strtoul(argv[4], nullptr, 10);
  pktbroker::Client client;
  if (auto error =
          client.connect(argv[1], "channel_tool " + mode, pktbroker::proto::role_channel)) {
    return fail(client, "connect", error);
  }
  pktbroker::proto::ChannelJoined joined;
  const std::uint8_t rights = mode == "send" ? pktbroker::proto::right_send
                              : mode == "receive"
                                  ? pktbroker::proto::right_receive
                                  : pktbroker::proto::right_send | pktbroker::proto::right_receive;
  if (auto error = client.join_channel(argv[3], rights, joined)) return fail(client, "join", error);
  std::printf("joined member %u\n", joined.member_id);
  std::fflush(stdout);
  if (mode == "both") {  // every member has joined before anyone sends
    char go[8];
    if (std::fgets(go, sizeof go, stdin) == nullptr) return 2;
  }
  const auto started = std::chrono::steady_clock::now();
  if (mode == "send" || mode == "both") {
    const std::size_t size = argc > 5 ? std::strtoul(argv[5], nullptr, 10) : 64;
    const long pause_us = argc > 6 ? std::strtol(argv[6], nullptr, 10) : 0;
    constexpr std::size_t batch = 64;
    std::vector<std::vector<std::uint8_t>> frames(
        batch, std::vector<std::uint8_t>(std::max<std::size_t>(size, 18)));
    std::vector<std::span<const std::uint8_t>> spans(batch);
    for (std::size_t i = 0; i < batch; ++i) {
      std::memset(frames[i].data(), 0xff, 6);
      const std::uint8_t source[6] = {2, 0, 0, 0, 0, 1};
      std::memcpy(frames[i].data() + 6, source, 6);
      frames[i][12] = 0x88;
      frames[i][13] = 0xb5;
      spans[i] = frames[i];
    }
    std::uint32_t seq = 0;
    while (seq < count) {
      const std::size_t n = std::min<std::size_t>(batch, count - seq);
      for (std::size_t i = 0; i < n; ++i, ++seq) std::memcpy(frames[i].data() + 14, &seq, 4);
      if (auto error = client.send_frames(joined.channel_id, std::span(spans).first(n))) {
        return fail(client, "send", error);
      }
      if (pause_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(pause_us));
    }
    for (const auto& notice : client.take_notices())
      std::printf("notice %s\n", notice.text.c_str());
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::printf("sent %lu seconds %.6f\n", count, seconds);
    std::fflush(stdout);
    if (mode == "send") {
      // Stay until the broker has read everything: leaving closes the session.
      (void)client.ping();
      return 0;
    }
  }
  const long slow_us = argc > 5 && mode == "receive" ? std::strtol(argv[5], nullptr, 10) : 0;
  const int quiet_ms = argc > 6 ? std::atoi(argv[6]) : 2000;
  std::map<std::uint32_t, std::uint32_t> next;  // sender -> expected sequence number
  unsigned long received = 0, gaps = 0, out_of_order = 0;
  std::vector<pktbroker::ReceivedFrame> frames;
  std::chrono::steady_clock::time_point last = started;
  while (received < count) {
    const auto error = client.next_frames(frames, 256, quiet_ms);
    if (error == pktbroker::ClientError::timeout) break;
    if (error) return fail(client, "receive", error);
    for (const auto& frame : frames) {
      const std::uint32_t seq = sequence_of(frame.data());
      auto [at, fresh] = next.emplace(frame.from(), 0);
      if (seq < at->second) ++out_of_order;
      if (seq > at->second) gaps += seq - at->second;
      at->second = seq + 1;
      ++received;
      if (slow_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(slow_us));
    }
    last = std::chrono::steady_clock::now();
  }
  const double seconds = std::chrono::duration<double>(last - started).count();
  std::printf("received %lu gaps %lu out_of_order %lu seconds %.6f\n", received, gaps, out_of_order,
              seconds);
  return 0;
}
