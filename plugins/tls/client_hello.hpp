// The server name (SNI) of a TLS ClientHello, which may span several records and segments.
#pragma once

#include "plugins/common/stream_buffer.hpp"

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
  no_buffer,    ///< the ClientHello spans segments and no memory (or budget) was left to keep it
};

/// The largest ClientHello read: a whole record's worth (2^14 bytes) after the 4-byte
/// handshake header, spread over as many records as the client likes.
inline constexpr std::size_t max_hello = 16384;

/// Reads the client's stream from its first byte as it arrives: strips the record headers and
/// keeps the handshake bytes of a ClientHello that spans records or segments. A ClientHello
/// within one record of one segment is parsed in place; memory is taken only while one is
/// held. Plain memory, valid all-zero (flow state); `clear` frees what it keeps.
struct HelloReader {
  std::uint8_t header[5];     ///< the record header being read
  std::uint8_t header_size;   ///< bytes of it read
  bool seen_record;           ///< a whole record header was read
  std::uint16_t record_left;  ///< bytes of the current record still to come
  HeldBytes handshake;        ///< handshake bytes of records read so far (when they span)

  /// Reads the stream's next bytes. `server_name` is lowercased.
  HelloStatus add(std::span<const std::uint8_t> bytes, std::string& server_name,
                  ByteBudget* budget);
  void clear(ByteBudget* budget) noexcept { handshake.clear(budget); }
};

/// Parses the client's stream from its first byte. `server_name` is lowercased.
HelloStatus parse_client_hello(std::span<const std::uint8_t> stream, std::string& server_name);

}  // namespace pktbroker::plugins::tls
