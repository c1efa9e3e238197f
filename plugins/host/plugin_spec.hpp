// How a policy asks for a plugin (a `plugins:` entry): plain data, no loading.
#pragma once

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>

namespace pktbroker {

/// Plugin and field names: 1 to 32 of a-z, 0-9 and _ (they prefix policy fields: dns.qname).
inline bool valid_plugin_name(std::string_view name) {
  return !name.empty() && name.size() <= 32 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

struct PluginSpec {
  std::string name;
  std::filesystem::path path;                 ///< the shared object; empty: search the plugin path
  std::map<std::string, std::string> config;  ///< scalar values, as text
  std::string origin;                         ///< "file:line", for messages

  friend bool operator==(const PluginSpec&, const PluginSpec&) = default;
};

}  // namespace pktbroker
