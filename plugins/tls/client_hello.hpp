// The server name (SNI) of a TLS ClientHello, which may span several records and segments.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace pktbroker::plugins::tls {

enum class HelloStatus : std::uint8_t {
  server_name,  ///< a ClientHello with an SNI host name
  no_sni,       ///< a complete ClientHello without one
  incomplete,   ///< more bytes are needed
  not_tls,      ///< the stream does not start with a TLS handshake record
  malformed,    ///< a length that does not fit, or a non-ClientHello first message
};

/// Parses the client's stream from its first byte. `server_name` is lowercased.
HelloStatus parse_client_hello(std::span<const std::uint8_t> stream, std::string& server_name);

}  // namespace pktbroker::plugins::tls
