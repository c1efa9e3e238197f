// How a policy asks for a plugin (a `plugins:` entry): plain data, no loading.
#pragma once

#include <filesystem>
#include <map>
#include <string>

namespace pktbroker {

struct PluginSpec {
  std::string name;
  std::filesystem::path path;                 ///< the shared object; empty: search the plugin path
  std::map<std::string, std::string> config;  ///< scalar values, as text
  std::string origin;                         ///< "file:line", for messages

  friend bool operator==(const PluginSpec&, const PluginSpec&) = default;
};

}  // namespace pktbroker
