// Where plugins named without a path are found, for pktbrokerd and pktreplay alike.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace pktbroker {

/// Each directory of $PKTBROKER_PLUGIN_PATH (colon-separated); the build tree's plugins when the
/// running binary is in the build tree, else the plugin directory at the same place relative to
/// the binary (an installed prefix moved elsewhere); then the installed plugin directory.
std::vector<std::filesystem::path> plugin_search_path();

/// `NAME.so` in the first directory of plugin_search_path() holding it; throws PluginError
/// naming the directories tried. `origin` says who asked ("policy.yaml:12", "--plugin").
std::filesystem::path find_plugin(const std::string& name, const std::string& origin);

}  // namespace pktbroker
