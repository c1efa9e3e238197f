// The head of an HTTP/1.x request (request line, Host, how its body ends), and a reader that
// finds the end of a chunked body as it streams by.
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

/// How the request's body ends (RFC 9112 6.3: chunked wins over Content-Length). `unknown`:
/// a bad or conflicting Content-Length, or a Transfer-Encoding not ending in chunked.
enum class BodyKind : std::uint8_t { none, length, chunked, unknown };

struct RequestHead {
  std::string method;
  std::string target;  ///< request target as sent
  std::string path;    ///< the target's path, normalized (normalize_path); from an
                       ///< absolute-form target ("http://host/p") its path
  std::string host;    ///< the absolute-form target's host, else the (first) Host header;
                       ///< lowercase, without port; empty when absent
  bool host_from_target = false;
  std::string version;     ///< "HTTP/1.1"
  std::size_t length = 0;  ///< bytes of the head, its blank line included
  BodyKind body = BodyKind::none;
  std::uint64_t content_length = 0;  ///< when body is BodyKind::length
};

/// Parses the head at the start of `bytes` (the client's stream where a request begins).
HeadStatus parse_request_head(std::span<const std::uint8_t> bytes, RequestHead& head);

/// Follows a chunked body through the bytes as they arrive, keeping only a few counters (plain
/// memory: it lives in zeroed flow state).
struct ChunkedBody {
  enum class State : std::uint8_t { off, size, extension, data, data_end, trailer, failed };
  State state;
  std::uint64_t left;  ///< size: the size read so far; data: bytes of the chunk still to come
  std::uint32_t line;  ///< trailer: bytes of the current trailer line

  void start() noexcept { *this = {State::size, 0, 0}; }
  [[nodiscard]] bool active() const noexcept {
    return state != State::off && state != State::failed;
  }
  /// Consumes the body's bytes at the front of `bytes` and returns how many: fewer than given
  /// when the body ended (state off) or is malformed (state failed).
  std::size_t consume(std::span<const std::uint8_t> bytes) noexcept;
};

/// A request target's path as a server resolves it, so a rule on `/admin*` also sees
/// `/%61dmin`, `/x/../admin` and `//admin`: percent-encoded unreserved characters and `%2F` are
/// decoded (the slash on purpose: servers such as nginx decode it before matching, so
/// `/public/..%2Fadmin` is `/admin`), other escapes get upper-case hex, repeated slashes are
/// collapsed and dot segments removed (RFC 3986 6.2.2, 5.2.4). The query is kept as sent. A
/// target not starting with '/' is returned unchanged.
std::string normalize_path(std::string_view target);

/// Lowercases `host` and strips a port (and IPv6 brackets).
std::string normalize_host(std::string_view host);

}  // namespace pktbroker::plugins::http
