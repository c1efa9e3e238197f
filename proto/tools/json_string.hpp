// A JSON string literal for the command-line tools' --json output (not installed).
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace pktbroker {

/// `text` quoted and escaped as a JSON string.
inline std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(c));
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace pktbroker
