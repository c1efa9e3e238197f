#include "shim_settings.hpp"

#include <charconv>
#include <cstdlib>
#include <string_view>

#include <unistd.h>

extern "C" char* program_invocation_short_name;  // glibc

namespace pktbroker::nfq {
namespace {

template <typename T>
bool parse_number(std::string_view text, T& value) {
  int base = 10;
  if (text.starts_with("0x") || text.starts_with("0X")) {
    text.remove_prefix(2);
    base = 16;
  }
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  return !text.empty() && error == std::errc() && end == text.data() + text.size();
}

std::string_view trimmed(std::string_view text) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  return text;
}

bool parse_queue_map(std::string_view text, std::map<std::uint16_t, std::uint16_t>& map) {
  while (!text.empty()) {
    const auto comma = text.find(',');
    const auto entry = text.substr(0, comma);
    const auto equals = entry.find('=');
    std::uint16_t from = 0;
    std::uint16_t to = 0;
    if (equals == std::string_view::npos || !parse_number(trimmed(entry.substr(0, equals)), from) ||
        !parse_number(trimmed(entry.substr(equals + 1)), to) || !map.emplace(from, to).second) {
      return false;
    }
    if (comma == std::string_view::npos) break;
    text = text.substr(comma + 1);
    if (text.empty()) return false;  // a trailing comma
  }
  return true;
}

// Whether a match map names the key `queue` (a value such as http.host: queue.example does not).
bool names_queue(std::string_view map) {
  for (auto at = map.find("queue"); at != std::string_view::npos; at = map.find("queue", at + 1)) {
    const bool starts_key =
        at == 0 || std::string_view("{, ").find(map[at - 1]) != std::string_view::npos;
    const auto next = map.find_first_not_of(' ', at + 5);
    if (starts_key && next != std::string_view::npos && map[next] == ':') return true;
  }
  return false;
}

}  // namespace

std::optional<ShimSettings> ShimSettings::from_environment(std::string& error) {
  ShimSettings settings;
  settings.name = std::string(program_invocation_short_name) + "[" + std::to_string(getpid()) + "]";
  if (const char* value = secure_getenv("PKTBROKER_SOCKET"); value && *value) {
    settings.socket_path = value;
  }
  if (const char* value = secure_getenv("PKTBROKER_NAME"); value && *value) settings.name = value;
  if (const char* value = secure_getenv("PKTBROKER_SELECTOR"); value && *value) {
    const std::string_view text = trimmed(value);
    if (text.size() < 2 || text.front() != '{' || text.back() != '}') {
      error = "PKTBROKER_SELECTOR must be a match map in braces, like '{mark: 0x10}'; got '" +
              std::string(value) + "'";
      return std::nullopt;
    }
    if (names_queue(text)) {
      error =
          "PKTBROKER_SELECTOR may not name a queue: the program's queue number (mapped by "
          "PKTBROKER_QUEUE_MAP) sets it";
      return std::nullopt;
    }
    settings.selector = trimmed(text.substr(1, text.size() - 2));
  }
  if (const char* value = secure_getenv("PKTBROKER_QUEUE_MAP"); value && *value) {
    if (!parse_queue_map(value, settings.queue_map)) {
      error =
          "PKTBROKER_QUEUE_MAP must be PROGRAM=BROKER queue numbers separated by commas, each "
          "program queue once, like '0=2,1=3'; got '" +
          std::string(value) + "'";
      return std::nullopt;
    }
  }
  if (const char* value = secure_getenv("PKTBROKER_TIMEOUT_MS"); value && *value) {
    if (!parse_number(std::string_view(value), settings.timeout_ms) || settings.timeout_ms == 0) {
      error = "PKTBROKER_TIMEOUT_MS must be a positive number of milliseconds; got '" +
              std::string(value) + "'";
      return std::nullopt;
    }
  }
  if (const char* value = secure_getenv("PKTBROKER_FALLBACK"); value && *value) {
    const std::string_view text(value);
    if (text == "accept") {
      settings.fallback = proto::VerdictCode::accept;
    } else if (text == "drop") {
      settings.fallback = proto::VerdictCode::drop;
    } else {
      error = "PKTBROKER_FALLBACK must be accept or drop; got '" + std::string(value) + "'";
      return std::nullopt;
    }
  }
  return settings;
}

std::uint16_t ShimSettings::broker_queue(std::uint16_t number) const {
  const auto found = queue_map.find(number);
  return found == queue_map.end() ? number : found->second;
}

std::string ShimSettings::selector_for(std::uint16_t number) const {
  std::string text = "{queue: " + std::to_string(broker_queue(number));
  if (!selector.empty()) text += ", " + selector;
  return text + "}";
}

}  // namespace pktbroker::nfq
