// A chat over a broker channel: every line typed goes to the other members, and their lines
// are printed as they come. `pktbroker_channel_chat SOCKET CHANNEL NAME`.
//
// Each message is an Ethernet frame (broadcast destination, EtherType 0x88b5, the IEEE's
// "local experimental" one) carrying "NAME: text", so a chat channel may be a switch channel
// or have a tap attached without confusing anyone.
#include "pktbroker/client.hpp"

#include <poll.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

namespace {

constexpr std::array<std::uint8_t, 14> header = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
                                                 0,    0,    0,    0,    0,    0x88, 0xb5};

int fail(const pktbroker::Client& client, const char* what, std::error_code error) {
  std::fprintf(stderr, "channel_chat: %s: %s\n", what,
               error == pktbroker::ClientError::broker_error ? client.last_error().text.c_str()
                                                             : error.message().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s SOCKET CHANNEL NAME\n", argv[0]);
    return 2;
  }
  pktbroker::Client client;
  if (const auto error = client.connect(argv[1], argv[3], pktbroker::proto::role_channel)) {
    return fail(client, "connect", error);
  }
  pktbroker::proto::ChannelJoined joined;
  if (const auto error = client.join_channel(argv[2], 0, joined)) {
    return fail(client, "join", error);
  }
  std::printf("joined %s as member %u\n", argv[2], joined.member_id);
  std::fflush(stdout);
  std::vector<pktbroker::ReceivedFrame> frames;
  std::string line;
  for (;;) {
    std::array<pollfd, 2> wait{{{STDIN_FILENO, POLLIN, 0}, {client.native_handle(), POLLIN, 0}}};
    if (::poll(wait.data(), wait.size(), -1) < 0) continue;
    if (wait[0].revents != 0) {
      if (!std::getline(std::cin, line)) break;  // end of input: leave
      std::vector<std::uint8_t> frame(header.begin(), header.end());
      const std::string text = std::string(argv[3]) + ": " + line;
      frame.insert(frame.end(), text.begin(), text.end());
      if (const auto error = client.send_frame(joined.channel_id, frame)) {
        return fail(client, "send", error);
      }
    }
    while (!client.next_frames(frames, 64, 0)) {
      for (const auto& frame : frames) {
        const auto data = frame.data();
        if (data.size() < header.size()) continue;
        std::printf("%.*s\n", static_cast<int>(data.size() - header.size()),
                    reinterpret_cast<const char*>(data.data() + header.size()));
      }
      std::fflush(stdout);
    }
    for (const auto& error : client.take_notices()) {
      std::fprintf(stderr, "channel_chat: %s\n", error.text.c_str());
    }
    if (!client.take_left().empty()) {
      std::fprintf(stderr, "channel_chat: removed from the channel\n");
      return 1;
    }
  }
  (void)client.leave_channel(joined.channel_id);
  return 0;
}
