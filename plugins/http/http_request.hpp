// The head of an HTTP/1.x request: request line and Host header.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace pktbroker::plugins::http {

enum class HeadStatus : std::uint8_t {
  complete,    ///< the head ended (blank line) and was parsed
  incomplete,  ///< more bytes are needed
  not_http,    ///< the first line is not an HTTP request line
  bad_header,  ///< a header line without a colon, or a control character
};

struct RequestHead {
  std::string method;
  std::string path;     ///< request target as sent
  std::string host;     ///< Host header, lowercase, without port; empty when absent
  std::string version;  ///< "HTTP/1.1"
};

/// Parses the head at the start of `bytes` (the client's stream from its first byte).
HeadStatus parse_request_head(std::span<const std::uint8_t> bytes, RequestHead& head);

/// Lowercases `host` and strips a port (and IPv6 brackets).
std::string normalize_host(std::string_view host);

}  // namespace pktbroker::plugins::http
