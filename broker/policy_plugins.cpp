#include "broker/policy_plugins.hpp"

#include "broker/policy/matcher.hpp"
#include "plugins/host/plugin_path.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <string>

namespace pktbroker {
namespace fs = std::filesystem;
namespace {

fs::path resolve(const PluginSpec& spec) {
  std::error_code error;
  if (spec.path.empty()) return find_plugin(spec.name, spec.origin);
  return fs::is_directory(spec.path, error) ? spec.path / (spec.name + ".so") : spec.path;
}

void check_fields(const Rule& rule, const MatchFields& fields, const PluginSet& plugins) {
  for (const FieldMatch& match : fields.plugin_fields) {
    const auto dot = match.field.find('.');
    const std::string plugin_name = match.field.substr(0, dot);
    const std::string field = match.field.substr(dot + 1);
    const auto plugin = plugins.find(plugin_name);
    const std::string where = fmt::format("{}:{}: rule '{}': ", rule.file, rule.line, rule.name);
    if (!plugin) throw PluginError(fmt::format("{}plugin '{}' is not loaded", where, plugin_name));
    if (!plugin->has_field(field)) {
      const auto& known = plugin->fields();
      throw PluginError(fmt::format(
          "{}plugin '{}' has no field '{}' (it publishes: {})", where, plugin_name, field,
          known.empty() ? "nothing" : fmt::format("{}", fmt::join(known, ", "))));
    }
  }
}

}  // namespace

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
