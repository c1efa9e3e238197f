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

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r';
}

/// The next word of a request line, skipping whitespace before it (RFC 9112 3: recipients may
/// split on any whitespace, as servers do).
std::string_view next_word(std::string_view& line) {
  while (!line.empty() && is_space(line.front())) line.remove_prefix(1);
  std::size_t end = 0;
  while (end < line.size() && !is_space(line[end])) ++end;
  const std::string_view word = line.substr(0, end);
  line.remove_prefix(end);
  return word;
}

bool is_scheme_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '-' || c == '.';
}

/// "GET /path HTTP/1.1" (or an absolute-form target, "http://host/path") -> head; false when it
/// is not a request line.
bool parse_request_line(std::string_view line, RequestHead& head) {
  const std::string_view method = next_word(line);
  if (method.empty() || !std::all_of(method.begin(), method.end(), is_token_char)) return false;
  const std::string_view target = next_word(line);
  const std::string_view version = next_word(line);
  if (target.empty() || !version.starts_with("HTTP/") || !next_word(line).empty()) return false;
  head.method = method;
  head.target = target;
  head.version = version;
  std::string_view path = target;
  // Absolute form (RFC 9112 3.2.2): the authority is the host, and a Host header is ignored.
  if (const auto colon = target.find("://");
      colon != std::string_view::npos && colon > 0 && !target.starts_with('/') &&
      std::all_of(target.begin(), target.begin() + static_cast<long>(colon), is_scheme_char)) {
    std::string_view rest = target.substr(colon + 3);
    const auto authority_end = std::min(rest.find_first_of("/?#"), rest.size());
    std::string_view authority = rest.substr(0, authority_end);
    if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
      authority.remove_prefix(at + 1);  // user info
    }
    head.host = normalize_host(authority);
    head.host_from_target = true;
    path = rest.substr(authority_end);
    head.path = normalize_path(path.starts_with('/') ? std::string(path) : "/" + std::string(path));
    return true;
  }
  head.path = normalize_path(path);
  return true;
}

}  // namespace

std::string normalize_path(std::string_view target) {
  if (!target.starts_with('/')) return std::string(target);  // "*", or an authority (CONNECT)
  const auto query_at = std::min(target.find('?'), target.size());
  const std::string_view path = target.substr(0, query_at);
  const auto hex = [](char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
  };
  // Percent-decode unreserved characters and the slash; upper-case the hex of the rest.
  std::string decoded;
  decoded.reserve(path.size());
  for (std::size_t i = 0; i < path.size(); ++i) {
    const int high = path[i] == '%' && i + 2 < path.size() ? hex(path[i + 1]) : -1;
    const int low = high >= 0 ? hex(path[i + 2]) : -1;
    if (low < 0) {
      decoded += path[i];
      continue;
    }
    const auto c = static_cast<char>(high * 16 + low);
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~' || c == '/') {
      decoded += c;
    } else {
      constexpr std::string_view digits = "0123456789ABCDEF";
      decoded += '%';
      decoded += digits[static_cast<std::size_t>(high)];
      decoded += digits[static_cast<std::size_t>(low)];
    }
    i += 2;
  }
  // Remove dot segments (RFC 3986 5.2.4), collapsing empty segments ("//") as servers do.
  std::string out;
  out.reserve(decoded.size());
  std::size_t at = 1;
  while (at <= decoded.size()) {
    const auto end = std::min(decoded.find('/', at), decoded.size());
    const std::string_view segment = std::string_view(decoded).substr(at, end - at);
    const bool last = end == decoded.size();
    if (segment == "..") {
      const auto slash = out.rfind('/');
      out.erase(slash == std::string::npos ? 0 : slash);
      if (last) out += '/';
    } else if (segment == ".") {
      if (last) out += '/';
    } else if (!segment.empty()) {
      out += '/';
      out += segment;
    } else if (last) {
      out += '/';
    }
    at = end + 1;
  }
  if (out.empty()) out = "/";
  out += target.substr(query_at);
  return out;
}

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
  bool host_seen = false;
  bool has_length = false;
  bool unknown_length = false;
  bool transfer_encoding = false;
  bool chunked = false;
  while (true) {
    const auto end = text.find('\n', start);
    if (end == std::string_view::npos) {
      // Judge an unfinished request line early: a TLS or binary stream is not worth waiting for.
      if (first && !text.empty()) {
        const std::string_view partial = text.substr(start, 16);
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
      if (line.empty()) continue;  // empty lines before a request line are ignored (RFC 9112 2.2)
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
    if (iequals(name, "host") && !head.host_from_target && !host_seen) {
      head.host = normalize_host(value);
      host_seen = true;
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
