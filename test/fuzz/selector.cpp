// A subscription selector (a `match:` expression in YAML flow form, as clients send it): it
// compiles or is refused with diagnostics; a compiled one matches the sample packets.
#include "broker/policy/matcher.hpp"
#include "broker/policy/policy.hpp"
#include "test/fuzz/fuzz_check.hpp"
#include "test/fuzz/sample_packets.hpp"

#include <string_view>

using namespace pktbroker;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::shared_ptr<const Matcher> matcher;
  try {
    matcher = compile_match(text, "selector");
  } catch (const PolicyError& error) {
    FUZZ_REQUIRE(!error.diagnostics().empty());
    for (const Diagnostic& diagnostic : error.diagnostics()) {
      FUZZ_REQUIRE(!diagnostic.to_string().empty());
    }
    return 0;
  }
  FUZZ_REQUIRE(matcher != nullptr);
  std::size_t matched = 0;
  for (const auto& sample : fuzz::sample_packets()) {
    matched += matcher->matches(sample.meta, sample.view) ? 1 : 0;
  }
  FUZZ_REQUIRE(!matcher->required().empty() || !matcher->excluded().empty() ||
               matched == fuzz::sample_packets().size());
  return 0;
}
