#include "broker/policy/policy.hpp"

#include "broker/policy/matcher.hpp"

#include <algorithm>

namespace pktbroker {

namespace {

std::vector<const Matcher*> matchers_of(const std::vector<Rule>& rules) {
  std::vector<const Matcher*> matchers;
  matchers.reserve(rules.size());
  for (const Rule& rule : rules) {
    matchers.push_back(rule.answers.empty() ? rule.matcher.get() : nullptr);
  }
  return matchers;
}

std::string summarize(const std::vector<Diagnostic>& diagnostics) {
  if (diagnostics.empty()) return "invalid policy";
  std::string text = diagnostics.front().to_string();
  if (diagnostics.size() > 1) {
    text += " (and " + std::to_string(diagnostics.size() - 1) + " more)";
  }
  return text;
}

}  // namespace

Policy::Policy(BrokerConfig broker, std::vector<Rule> rules)
    : broker_(std::move(broker)), rules_(std::move(rules)), index_(matchers_of(rules_)) {
  const auto names = [](const Matcher& m) {
    return m.required().dst_name || m.excluded().dst_name;
  };
  uses_dst_name_ =
      std::any_of(rules_.begin(), rules_.end(), [&](const Rule& r) { return names(*r.matcher); }) ||
      std::any_of(broker_.clients.begin(), broker_.clients.end(),
                  [&](const ClientGrant& g) { return g.allowed && names(*g.allowed); });
  // A prompt names the process: an ask rule needs it as much as an app.* field does.
  const auto app_rule = std::find_if(rules_.begin(), rules_.end(), [](const Rule& r) {
    return r.answers.empty() && (r.matcher->uses_app() || r.ask);
  });
  uses_ask_ = std::any_of(rules_.begin(), rules_.end(), [](const Rule& r) { return r.ask; });
  if (app_rule != rules_.end())
    first_app_rule_ = static_cast<std::size_t>(app_rule - rules_.begin());
}

std::optional<std::chrono::system_clock::time_point> Policy::next_expiry() const noexcept {
  std::optional<std::chrono::system_clock::time_point> next;
  for (const Rule& rule : rules_) {
    if (rule.until && (!next || *rule.until < *next)) next = rule.until;
  }
  return next;
}

std::vector<ProcessRef> Policy::app_exits() const {
  std::vector<ProcessRef> processes;
  for (const Rule& rule : rules_) {
    if (rule.until_exit) processes.push_back(*rule.until_exit);
  }
  return processes;
}

std::size_t Policy::match(const PacketMeta& meta, const PacketView& view) const noexcept {
  static_assert(no_match == RuleIndex::no_match);
  return index_.first_match(meta, view);
}

std::string Diagnostic::to_string() const {
  if (line == 0) return file + ": error: " + message;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": error: " + message;
}

PolicyError::PolicyError(std::vector<Diagnostic> diagnostics)
    : std::runtime_error(summarize(diagnostics)), diagnostics_(std::move(diagnostics)) {}

}  // namespace pktbroker
