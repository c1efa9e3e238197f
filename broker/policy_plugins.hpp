// Loads the plugins a policy names and checks the policy's use of them.
#pragma once

#include "broker/policy/policy.hpp"
#include "plugins/host/plugin_set.hpp"

#include <filesystem>
#include <memory>
#include <vector>

namespace pktbroker {

/// Loads `policy.broker().plugins` (those without a path: from plugin_search_path()), or reuses
/// `current` when the list is unchanged, and checks that every plugin field a rule matches is
/// one its plugin publishes. Throws PluginError.
std::shared_ptr<const PluginSet> load_policy_plugins(
    const Policy& policy, const Policy* current_policy = nullptr,
    std::shared_ptr<const PluginSet> current = nullptr);

}  // namespace pktbroker
