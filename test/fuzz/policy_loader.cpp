// A policy file's text: it compiles or is refused with positioned diagnostics, never anything
// else; a compiled policy answers every sample packet as its rules do one by one.
#include "broker/policy/matcher.hpp"
#include "broker/policy/policy.hpp"
#include "test/fuzz/fuzz_check.hpp"
#include "test/fuzz/sample_packets.hpp"

#include <string_view>

using namespace pktbroker;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::shared_ptr<const Policy> policy;
  try {
    policy = parse_policy(text, "fuzz.yaml");
  } catch (const PolicyError& error) {
    FUZZ_REQUIRE(!error.diagnostics().empty());
    for (const Diagnostic& diagnostic : error.diagnostics()) {
      FUZZ_REQUIRE(diagnostic.file == "fuzz.yaml" && !diagnostic.message.empty());
      FUZZ_REQUIRE(!diagnostic.to_string().empty());
    }
    return 0;
  }
  FUZZ_REQUIRE(policy != nullptr && !policy->broker().queues.empty());
  const auto rules = policy->rules();
  for (const auto& sample : fuzz::sample_packets()) {
    std::size_t expected = Policy::no_match;
    for (std::size_t i = 0; i < rules.size() && expected == Policy::no_match; ++i) {
      FUZZ_REQUIRE(rules[i].matcher != nullptr);
      if (rules[i].matcher->matches(sample.meta, sample.view)) expected = i;
    }
    FUZZ_REQUIRE(policy->match(sample.meta, sample.view) == expected);
    FUZZ_REQUIRE(policy->candidates(sample.meta, sample.view) <= rules.size());
  }
  return 0;
}
