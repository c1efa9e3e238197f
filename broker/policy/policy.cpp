#include "broker/policy/policy.hpp"

#include "broker/policy/matcher.hpp"

namespace pktbroker {

Policy::Policy(BrokerConfig broker, std::vector<Rule> rules)
    : broker_(std::move(broker)), rules_(std::move(rules)) {}

std::size_t Policy::match(const PacketMeta& meta, const PacketView& view) const noexcept {
  for (std::size_t i = 0; i < rules_.size(); ++i) {
    if (rules_[i].matcher->matches(meta, view)) return i;
  }
  return no_match;
}

std::string Diagnostic::to_string() const {
  if (line == 0) return file + ": error: " + message;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": error: " + message;
}

namespace {

std::string summarize(const std::vector<Diagnostic>& diagnostics) {
  if (diagnostics.empty()) return "invalid policy";
  std::string text = diagnostics.front().to_string();
  if (diagnostics.size() > 1) {
    text += " (and " + std::to_string(diagnostics.size() - 1) + " more)";
  }
  return text;
}

}  // namespace

PolicyError::PolicyError(std::vector<Diagnostic> diagnostics)
    : std::runtime_error(summarize(diagnostics)), diagnostics_(std::move(diagnostics)) {}

}  // namespace pktbroker
