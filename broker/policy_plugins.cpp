#include "broker/policy_plugins.hpp"

#include "broker/policy/matcher.hpp"

#include <cstdlib>
#include <string>

namespace pktbroker {
namespace fs = std::filesystem;
namespace {

fs::path resolve(const PluginSpec& spec) {
  const std::string file = spec.name + ".so";
  std::error_code error;
  if (!spec.path.empty()) {
    return fs::is_directory(spec.path, error) ? spec.path / file : spec.path;
  }
  std::string tried;
  for (const fs::path& dir : plugin_search_path()) {
    if (fs::is_regular_file(dir / file, error)) return dir / file;
    tried += (tried.empty() ? "" : ", ") + dir.string();
  }
  throw PluginError("plugin '" + spec.name + "' (" + spec.origin + "): no " + file + " in " +
                    tried + "; give its path: in the policy or set PKTBROKER_PLUGIN_PATH");
}

void check_fields(const Rule& rule, const MatchFields& fields, const PluginSet& plugins) {
  for (const FieldMatch& match : fields.plugin_fields) {
    const auto dot = match.field.find('.');
    const std::string plugin_name = match.field.substr(0, dot);
    const std::string field = match.field.substr(dot + 1);
    const auto plugin = plugins.find(plugin_name);
    const std::string where =
        rule.file + ":" + std::to_string(rule.line) + ": rule '" + rule.name + "': ";
    if (!plugin) throw PluginError(where + "plugin '" + plugin_name + "' is not loaded");
    if (!plugin->has_field(field)) {
      std::string known;
      for (const auto& name : plugin->fields()) known += (known.empty() ? "" : ", ") + name;
      throw PluginError(where + "plugin '" + plugin_name + "' has no field '" + field +
                        "' (it publishes: " + (known.empty() ? "nothing" : known) + ")");
    }
  }
}

}  // namespace

std::vector<fs::path> plugin_search_path() {
  std::vector<fs::path> dirs;
  if (const char* env = std::getenv("PKTBROKER_PLUGIN_PATH"); env != nullptr) {
    std::string list = env;
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
  }
  dirs.emplace_back(PKTBROKER_PLUGIN_DIR);
  return dirs;
}

std::shared_ptr<const PluginSet> load_policy_plugins(const Policy& policy,
                                                     const Policy* current_policy,
                                                     std::shared_ptr<const PluginSet> current) {
  std::shared_ptr<const PluginSet> plugins;
  if (current && current_policy != nullptr &&
      current_policy->broker().plugins == policy.broker().plugins) {
    plugins = std::move(current);
  } else {
    std::vector<PluginSpec> specs = policy.broker().plugins;
    for (PluginSpec& spec : specs) spec.path = resolve(spec);
    plugins = std::make_shared<const PluginSet>(specs);
  }
  for (const Rule& rule : policy.rules()) {
    check_fields(rule, rule.matcher->required(), *plugins);
    check_fields(rule, rule.matcher->excluded(), *plugins);
  }
  return plugins;
}

}  // namespace pktbroker
