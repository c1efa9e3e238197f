// Where an HTTP/1.x response ends (replay), and what to blank before comparing two of them.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace pktbroker::plugins::http {

enum class ResponseEnd : std::uint8_t {
  complete,     ///< the whole response is there (by Content-Length, chunks, or no body)
  incomplete,   ///< more bytes are needed
  until_close,  ///< no length given: the body ends when the server closes
  malformed,    ///< not an HTTP response, or a bad length or chunk size
};

/// Judges `bytes`, the server's stream from the start of a response; interim 1xx responses
/// before the final one are skipped. `head_request`: the request was HEAD (no body follows).
ResponseEnd response_end(std::span<const std::uint8_t> bytes, bool head_request);

/// Removes the header lines whose values change from one answer to the next (Date,
/// Last-Modified, ETag, Expires, Age) from every response head in `bytes`.
void mask_response(std::vector<std::uint8_t>& bytes);

}  // namespace pktbroker::plugins::http
