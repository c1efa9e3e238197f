#include "plugins/ftp/ftp_line.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <string>

namespace pktbroker::plugins::ftp {
namespace {

bool iequals_prefix(std::string_view line, std::string_view word) {
  if (line.size() < word.size()) return false;
  for (std::size_t i = 0; i < word.size(); ++i) {
    if ((line[i] & ~0x20) != word[i]) return false;
  }
  return line.size() == word.size() || line[word.size()] == ' ';
}

/// "h1,h2,h3,h4,p1,p2" (six numbers 0-255), anywhere from `text`'s first digit.
bool six_numbers(std::string_view text, DataEndpoint& endpoint) {
  const auto first = text.find_first_of("0123456789");
  if (first == std::string_view::npos) return false;
  text.remove_prefix(first);
  unsigned values[6];
  const char* at = text.data();
  const char* end = text.data() + text.size();
  for (int i = 0; i < 6; ++i) {
    const auto [next, error] = std::from_chars(at, end, values[i]);
    if (error != std::errc() || values[i] > 255) return false;
    at = next;
    if (i < 5) {
      if (at == end || *at != ',') return false;
      ++at;
    }
  }
  endpoint.family = 4;
  endpoint.address = {};
  for (int i = 0; i < 4; ++i) endpoint.address[i] = static_cast<std::uint8_t>(values[i]);
  endpoint.port = static_cast<std::uint16_t>(values[4] * 256 + values[5]);
  return endpoint.port != 0;
}

bool port_number(std::string_view text, std::uint16_t& port) {
  unsigned value = 0;
  const auto [next, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || next != text.data() + text.size() || value == 0 || value > 65535) {
    return false;
  }
  port = static_cast<std::uint16_t>(value);
  return true;
}

/// "|||6446|" (EPSV) or "|1|132.235.1.2|6275|" (EPRT): delimiter, family, address, port.
bool extended(std::string_view text, bool with_address, DataEndpoint& endpoint) {
  if (text.size() < 5) return false;
  const char d = text.front();
  std::string_view fields[3];  // family, address, port: "|1|addr|port|" or "|||port|"
  std::size_t at = 1;
  for (auto& field : fields) {
    const auto next = text.find(d, at);
    if (next == std::string_view::npos) return false;
    field = text.substr(at, next - at);
    at = next + 1;
  }
  if (!port_number(fields[2], endpoint.port)) return false;
  if (!with_address) return true;
  const std::string address(fields[1]);
  if (fields[0] == "1" && inet_pton(AF_INET, address.c_str(), endpoint.address.data()) == 1) {
    endpoint.family = 4;
    return true;
  }
  if (fields[0] == "2" && inet_pton(AF_INET6, address.c_str(), endpoint.address.data()) == 1) {
    endpoint.family = 6;
    return true;
  }
  return false;
}

}  // namespace

Announcement parse_line(std::string_view line, bool from_server, DataEndpoint& endpoint) {
  endpoint = DataEndpoint{};
  if (from_server) {
    if (line.starts_with("227")) {
      return six_numbers(line.substr(3), endpoint) ? Announcement::passive
                                                   : Announcement::malformed;
    }
    if (line.starts_with("229")) {
      const auto open = line.find('(');
      const auto close = line.rfind(')');
      if (open == std::string_view::npos || close == std::string_view::npos || close < open) {
        return Announcement::malformed;
      }
      endpoint.family = 0;
      return extended(line.substr(open + 1, close - open - 1), false, endpoint)
                 ? Announcement::extended_passive
                 : Announcement::malformed;
    }
    return Announcement::none;
  }
  if (iequals_prefix(line, "PORT")) {
    return six_numbers(line.substr(4), endpoint) ? Announcement::active : Announcement::malformed;
  }
  if (iequals_prefix(line, "EPRT")) {
    std::string_view argument = line.substr(4);
    while (argument.starts_with(' ')) argument.remove_prefix(1);
    return extended(argument, true, endpoint) ? Announcement::active : Announcement::malformed;
  }
  return Announcement::none;
}

}  // namespace pktbroker::plugins::ftp
