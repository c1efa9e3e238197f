// A TLS ClientHello handshake message, for the tls decoder's tests and the flow memory bench.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pktbroker::test {

inline void append16(std::vector<std::uint8_t>& b, std::size_t n) {
  b.push_back(static_cast<std::uint8_t>(n >> 8));
  b.push_back(static_cast<std::uint8_t>(n));
}

/// A ClientHello handshake message (type, 24-bit length, body); `sni` empty: no extension.
inline std::vector<std::uint8_t> client_hello(const std::string& sni) {
  std::vector<std::uint8_t> body = {3, 3};
  body.insert(body.end(), 32, 0x11);  // random
  body.push_back(32);                 // session id
  body.insert(body.end(), 32, 0x22);
  append16(body, 4);  // cipher suites
  body.insert(body.end(), {0x13, 0x01, 0x13, 0x02});
  body.insert(body.end(), {1, 0});  // compression: null
  std::vector<std::uint8_t> extensions;
  append16(extensions, 0x000a);  // supported_groups, before the SNI
  append16(extensions, 4);
  extensions.insert(extensions.end(), {0, 2, 0, 0x1d});
  if (!sni.empty()) {
    append16(extensions, 0);
    append16(extensions, sni.size() + 5);
    append16(extensions, sni.size() + 3);
    extensions.push_back(0);
    append16(extensions, sni.size());
    extensions.insert(extensions.end(), sni.begin(), sni.end());
  }
  append16(body, extensions.size());
  body.insert(body.end(), extensions.begin(), extensions.end());
  std::vector<std::uint8_t> message = {1, 0};
  append16(message, body.size());
  message.insert(message.end(), body.begin(), body.end());
  return message;
}

}  // namespace pktbroker::test
