// Text from other programs made safe to print on a terminal, for the command-line tools (not
// installed): what a process calls itself reaches root's terminal through pktbrokerctl and
// pktbroker-prompt-tty.
#pragma once

#include "pktbroker/protocol.hpp"

#include <cstdio>
#include <string>
#include <string_view>

namespace pktbroker {

/// `text` with control characters (C0, DEL and C1, which some terminals obey) and bytes that
/// are not UTF-8 shown as \xNN: escape sequences cannot repaint the screen.
inline std::string terminal_text(std::string_view text) {
  std::string safe;
  const auto escape = [&](unsigned char byte) {
    char escaped[5];
    std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
    safe += escaped;
  };
  for (std::size_t i = 0; i < text.size();) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte >= 0x20 && byte < 0x7f) {
      safe += text[i++];
      continue;
    }
    const std::size_t length = byte >= 0xc2 && byte <= 0xdf   ? 2
                               : byte >= 0xe0 && byte <= 0xef ? 3
                               : byte >= 0xf0 && byte <= 0xf4 ? 4
                                                              : 0;
    bool whole = length != 0 && i + length <= text.size();
    for (std::size_t k = 1; whole && k < length; ++k) {
      whole = (static_cast<unsigned char>(text[i + k]) & 0xc0) == 0x80;
    }
    const bool c1 = whole && byte == 0xc2 && static_cast<unsigned char>(text[i + 1]) < 0xa0;
    if (whole && !c1) {
      safe.append(text.substr(i, length));
      i += length;
    } else {
      escape(byte);
      ++i;
    }
  }
  return safe;
}

/// Where a prompt's connection goes: "tcp 192.0.2.7:443", "udp [2001:db8::1]:53".
inline std::string prompt_destination(const proto::Prompt& prompt) {
  const char* protocol = prompt.protocol == 6 ? "tcp" : prompt.protocol == 17 ? "udp" : "ip";
  const bool v6 = prompt.destination.find(':') != std::string::npos;
  return std::string(protocol) + " " + (v6 ? "[" + prompt.destination + "]" : prompt.destination) +
         ":" + std::to_string(prompt.port);
}

}  // namespace pktbroker
