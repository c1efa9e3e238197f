#include "plugins/http/http_response.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <optional>
#include <string_view>

namespace pktbroker::plugins::http {
namespace {

constexpr std::array<std::string_view, 5> volatile_headers = {"date", "last-modified", "etag",
                                                              "expires", "age"};

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x | 0x20) == (y | 0x20);
         });
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) {
    text.remove_suffix(1);
  }
  return text;
}

/// End of the head starting at `start` (just past its blank line), or npos.
std::size_t head_end(std::string_view text, std::size_t start) {
  const auto crlf = text.find("\r\n\r\n", start);
  const auto lf = text.find("\n\n", start);
  if (crlf == std::string_view::npos && lf == std::string_view::npos) return std::string_view::npos;
  if (lf == std::string_view::npos || (crlf != std::string_view::npos && crlf < lf)) {
    return crlf + 4;
  }
  return lf + 2;
}

std::optional<std::size_t> hex(std::string_view text) {
  std::size_t value = 0;
  text = trim(text.substr(0, text.find(';')));  // chunk extensions
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value, 16);
  if (error != std::errc() || end != text.data() + text.size() || text.empty()) return {};
  return value;
}

/// Walks chunks from `at`; complete once the last chunk and its trailers are in.
ResponseEnd chunked_end(std::string_view text, std::size_t at) {
  while (true) {
    const auto line_end = text.find('\n', at);
    if (line_end == std::string_view::npos) return ResponseEnd::incomplete;
    const auto size = hex(text.substr(at, line_end - at));
    if (!size || *size > (std::size_t{1} << 40)) return ResponseEnd::malformed;
    at = line_end + 1;
    if (*size == 0) {  // trailers, then a blank line
      while (true) {
        const auto end = text.find('\n', at);
        if (end == std::string_view::npos) return ResponseEnd::incomplete;
        const bool blank = trim(text.substr(at, end - at)).empty();
        at = end + 1;
        if (blank) return ResponseEnd::complete;
      }
    }
    if (text.size() < at + *size) return ResponseEnd::incomplete;
    at += *size;
    const auto crlf = text.find('\n', at);
    if (crlf == std::string_view::npos) return ResponseEnd::incomplete;
    at = crlf + 1;
  }
}

}  // namespace

ResponseEnd response_end(std::span<const std::uint8_t> bytes, bool head_request) {
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  std::size_t start = 0;
  while (true) {
    if (text.size() - start >= 5 && !text.substr(start).starts_with("HTTP/")) {
      return ResponseEnd::malformed;
    }
    const std::size_t end = head_end(text, start);
    if (end == std::string_view::npos) return ResponseEnd::incomplete;
    const std::string_view head = text.substr(start, end - start);
    const auto space = head.find(' ');
    int status = 0;
    if (space == std::string_view::npos ||
        std::from_chars(head.data() + space + 1, head.data() + head.size(), status).ec !=
            std::errc()) {
      return ResponseEnd::malformed;
    }
    if (status >= 100 && status < 200) {  // interim: the real response follows
      start = end;
      continue;
    }
    if (head_request || status == 204 || status == 304) return ResponseEnd::complete;
    std::optional<std::size_t> length;
    bool chunked = false;
    std::size_t line = head.find('\n') + 1;
    while (line < head.size()) {
      const auto next = head.find('\n', line);
      const std::string_view header = head.substr(line, next - line);
      line = next == std::string_view::npos ? head.size() : next + 1;
      const auto colon = header.find(':');
      if (colon == std::string_view::npos) continue;
      const std::string_view name = trim(header.substr(0, colon));
      const std::string_view value = trim(header.substr(colon + 1));
      if (iequals(name, "content-length")) {
        std::size_t n = 0;
        const auto [p, error] = std::from_chars(value.data(), value.data() + value.size(), n);
        if (error != std::errc() || p != value.data() + value.size()) return ResponseEnd::malformed;
        length = n;
      } else if (iequals(name, "transfer-encoding")) {
        chunked = value.size() >= 7 && iequals(value.substr(value.size() - 7), "chunked");
      }
    }
    if (chunked) return chunked_end(text, end);
    if (length)
      return text.size() - end >= *length ? ResponseEnd::complete : ResponseEnd::incomplete;
    return ResponseEnd::until_close;
  }
}

void mask_response(std::vector<std::uint8_t>& bytes) {
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  std::vector<std::uint8_t> masked;
  masked.reserve(bytes.size());
  std::size_t at = 0;
  bool in_head = text.starts_with("HTTP/");
  while (at < text.size()) {
    const auto next = text.find('\n', at);
    const std::size_t end = next == std::string_view::npos ? text.size() : next + 1;
    const std::string_view line = text.substr(at, end - at);
    bool keep = true;
    if (in_head) {
      if (trim(line).empty() || line == "\n") {
        in_head = false;  // the body follows; another head only after it, which we leave alone
      } else if (const auto colon = line.find(':'); colon != std::string_view::npos) {
        const std::string_view name = trim(line.substr(0, colon));
        keep = std::none_of(volatile_headers.begin(), volatile_headers.end(),
                            [&](std::string_view h) { return iequals(name, h); });
      }
    }
    if (keep) masked.insert(masked.end(), line.begin(), line.end());
    at = end;
    if (!in_head) break;
  }
  masked.insert(masked.end(), bytes.begin() + static_cast<long>(at), bytes.end());
  bytes = std::move(masked);
}

}  // namespace pktbroker::plugins::http
