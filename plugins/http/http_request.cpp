#include "plugins/http/http_request.hpp"

#include <algorithm>

namespace pktbroker::plugins::http {
namespace {

bool is_token_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '!' || c == '#' || c == '$' || c == '%' || c == '&' ||
         c == '\'' || c == '*' || c == '+' || c == '^' || c == '`' || c == '|' || c == '~';
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x | 0x20) == (y | 0x20);
         });
}

/// "GET /path HTTP/1.1" -> head; false when it is not a request line.
bool parse_request_line(std::string_view line, RequestHead& head) {
  const auto first_space = line.find(' ');
  if (first_space == std::string_view::npos || first_space == 0) return false;
  const std::string_view method = line.substr(0, first_space);
  if (!std::all_of(method.begin(), method.end(), is_token_char)) return false;
  const auto second_space = line.find(' ', first_space + 1);
  if (second_space == std::string_view::npos) return false;
  const std::string_view target = line.substr(first_space + 1, second_space - first_space - 1);
  const std::string_view version = line.substr(second_space + 1);
  if (target.empty() || !version.starts_with("HTTP/")) return false;
  head.method = method;
  head.path = target;
  head.version = version;
  return true;
}

}  // namespace

std::string normalize_host(std::string_view host) {
  host = trim(host);
  if (host.starts_with('[')) {
    const auto close = host.find(']');
    host = host.substr(1, close == std::string_view::npos ? host.size() - 1 : close - 1);
  } else if (const auto colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  if (host.ends_with('.')) host.remove_suffix(1);
  std::string result(host);
  for (char& c : result) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return result;
}

HeadStatus parse_request_head(std::span<const std::uint8_t> bytes, RequestHead& head) {
  head = RequestHead{};
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  std::size_t start = 0;
  bool first = true;
  bool has_length = false;
  bool unknown_length = false;
  bool transfer_encoding = false;
  bool chunked = false;
  while (true) {
    const auto end = text.find('\n', start);
    if (end == std::string_view::npos) {
      // Judge an unfinished request line early: a TLS or binary stream is not worth waiting for.
      if (first && !text.empty()) {
        const std::string_view partial = text.substr(0, std::min<std::size_t>(text.size(), 16));
        const auto space = partial.find(' ');
        const std::string_view method = partial.substr(0, space);
        if (!std::all_of(method.begin(), method.end(), is_token_char)) return HeadStatus::not_http;
      }
      return HeadStatus::incomplete;
    }
    std::string_view line = text.substr(start, end - start);
    if (line.ends_with('\r')) line.remove_suffix(1);
    start = end + 1;
    if (first) {
      if (!parse_request_line(line, head)) return HeadStatus::not_http;
      first = false;
      continue;
    }
    if (line.empty()) {
      head.length = start;
      if (transfer_encoding) {  // Content-Length does not count then
        head.body = chunked ? BodyKind::chunked : BodyKind::unknown;
      } else {
        head.body = unknown_length ? BodyKind::unknown
                    : has_length   ? BodyKind::length
                                   : BodyKind::none;
      }
      if (head.body != BodyKind::length) head.content_length = 0;
      return HeadStatus::complete;
    }
    if (std::any_of(line.begin(), line.end(),
                    [](char c) { return (c >= 0 && c < 0x20 && c != '\t') || c == 0x7f; })) {
      return HeadStatus::bad_header;
    }
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return HeadStatus::bad_header;
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = trim(line.substr(colon + 1));
    if (iequals(name, "host") && head.host.empty()) {
      head.host = normalize_host(value);
    } else if (iequals(name, "content-length")) {
      // Digits only, and the same value when repeated: anything else makes the body's end
      // unknowable (and is how request smuggling starts).
      std::uint64_t length = 0;
      if (value.empty() || value.size() > 18 ||
          !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        unknown_length = true;
        continue;
      }
      for (const char c : value) length = length * 10 + static_cast<std::uint64_t>(c - '0');
      if (has_length && length != head.content_length) unknown_length = true;
      has_length = true;
      head.content_length = length;
    } else if (iequals(name, "transfer-encoding")) {
      const auto last = value.rfind(',');
      // The codings of every Transfer-Encoding line form one list; its last one must be chunked.
      transfer_encoding = true;
      chunked =
          iequals(trim(last == std::string_view::npos ? value : value.substr(last + 1)), "chunked");
    }
  }
}

// Chunk extensions and trailer lines are bounded like a head (servers refuse longer ones).
constexpr std::uint32_t max_chunk_line = 4096;

std::size_t ChunkedBody::consume(std::span<const std::uint8_t> bytes) noexcept {
  std::size_t at = 0;
  while (at < bytes.size() && active()) {
    const char c = static_cast<char>(bytes[at]);
    switch (state) {
      case State::size: {
        const int digit = c >= '0' && c <= '9'   ? c - '0'
                          : c >= 'a' && c <= 'f' ? c - 'a' + 10
                          : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                 : -1;
        if (digit >= 0) {
          if (left >> 56 != 0) {  // a size over 2^60: no real body, only trouble
            state = State::failed;
            return at;
          }
          left = left * 16 + static_cast<std::uint64_t>(digit);
        } else if (c == ';' || c == ' ' || c == '\t') {
          state = State::extension;
          line = 0;
        } else if (c == '\n') {
          state = left == 0 ? State::trailer : State::data;
          line = 0;
        } else if (c != '\r') {
          state = State::failed;
          return at;
        }
        ++at;
        break;
      }
      case State::extension:
        if (c == '\n') {
          state = left == 0 ? State::trailer : State::data;
          line = 0;
        } else if (++line > max_chunk_line) {  // no end in sight: stop following
          state = State::failed;
          return at;
        }
        ++at;
        break;
      case State::data: {
        const std::uint64_t take = std::min<std::uint64_t>(left, bytes.size() - at);
        at += static_cast<std::size_t>(take);
        left -= take;
        if (left == 0) state = State::data_end;
        break;
      }
      case State::data_end:  // the CRLF after a chunk's data
        if (c == '\n') {
          state = State::size;
          left = 0;
        } else if (c != '\r') {
          state = State::failed;
          return at;
        }
        ++at;
        break;
      case State::trailer:  // trailer lines, then an empty line ends the body
        ++at;
        if (c == '\n') {
          if (line == 0) {
            state = State::off;
            return at;
          }
          line = 0;
        } else if (c != '\r' && ++line > max_chunk_line) {
          state = State::failed;
          return at;
        }
        break;
      case State::off:
      case State::failed: break;
    }
  }
  return at;
}

}  // namespace pktbroker::plugins::http
