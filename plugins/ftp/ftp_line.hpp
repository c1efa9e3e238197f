// FTP control lines that announce a data connection: PASV and EPSV replies, PORT and EPRT
// commands (RFC 959, RFC 2428).
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace pktbroker::plugins::ftp {

enum class Announcement : std::uint8_t {
  none,              ///< any other line
  passive,           ///< 227 reply: the server listens at address:port
  extended_passive,  ///< 229 reply: the server listens at port (control connection's address)
  active,            ///< PORT or EPRT command: the client listens at address:port
  malformed,         ///< one of the above with numbers that do not parse
};

struct DataEndpoint {
  std::uint8_t family = 4;  ///< 4 or 6; unset (0 address) for extended_passive
  std::array<std::uint8_t, 16> address{};
  std::uint16_t port = 0;
};

/// Reads one line (without its CR LF) from the server when `from_server`, else from the client.
Announcement parse_line(std::string_view line, bool from_server, DataEndpoint& endpoint);

}  // namespace pktbroker::plugins::ftp
