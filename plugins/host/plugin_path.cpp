#include "plugins/host/plugin_path.hpp"

#include "plugins/host/plugin.hpp"

#include <cstdlib>

namespace pktbroker {
namespace fs = std::filesystem;

std::vector<fs::path> plugin_search_path() {
  std::vector<fs::path> dirs;
  if (const char* env = std::getenv("PKTBROKER_PLUGIN_PATH"); env != nullptr) {
    const std::string list = env;
    std::size_t start = 0;
    while (start <= list.size()) {
      const auto end = std::min(list.find(':', start), list.size());
      if (end > start) dirs.emplace_back(list.substr(start, end - start));
      start = end + 1;
    }
  }
  // A binary run from its build tree finds the plugins built beside it.
  std::error_code ignored;
  const fs::path self = fs::read_symlink("/proc/self/exe", ignored);
  const fs::path build_dir = PKTBROKER_BINARY_DIR;
  if (!self.empty() && self.string().starts_with(build_dir.string() + "/")) {
    dirs.push_back(build_dir / "plugins");
  } else if (!self.empty()) {
    // An installed binary finds the plugins installed with it, wherever the prefix was moved.
    const fs::path beside = (self.parent_path() / PKTBROKER_PLUGIN_DIR_FROM_BIN).lexically_normal();
    if (beside != fs::path(PKTBROKER_PLUGIN_DIR)) dirs.push_back(beside);
  }
  dirs.emplace_back(PKTBROKER_PLUGIN_DIR);
  return dirs;
}

fs::path find_plugin(const std::string& name, const std::string& origin) {
  const std::string file = name + ".so";
  std::string tried;
  for (const fs::path& dir : plugin_search_path()) {
    std::error_code error;
    if (fs::is_regular_file(dir / file, error)) return dir / file;
    tried += (tried.empty() ? "" : ", ") + dir.string();
  }
  throw PluginError("plugin '" + name + "' (" + origin + "): no " + file + " in " + tried +
                    "; give its path or set PKTBROKER_PLUGIN_PATH");
}

}  // namespace pktbroker
