// parse_packet on any bytes: a parsed view stays inside them and is self-consistent; the example
// policy then matches it the same way through its rule index as rule by rule.
#include "pktbroker/packet_view.hpp"

#include "broker/policy/matcher.hpp"
#include "broker/policy/policy.hpp"
#include "test/fuzz/fuzz_check.hpp"

#include <netinet/in.h>

using namespace pktbroker;

namespace {

const Policy& example_policy() {
  static const auto policy = load_policy(PKTBROKER_SOURCE_DIR "/config/policy.yaml");
  return *policy;
}

std::size_t first_match_by_rule(const Policy& policy, const PacketMeta& meta,
                                const PacketView& view) {
  const auto rules = policy.rules();
  for (std::size_t i = 0; i < rules.size(); ++i) {
    if (rules[i].matcher->matches(meta, view)) return i;
  }
  return Policy::no_match;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)example_policy();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  PacketView view;
  const ParseError error = parse_packet(bytes, view);
  FUZZ_REQUIRE(!to_string(error).empty());
  if (error != ParseError::none) return 0;

  FUZZ_REQUIRE(view.ip_version == 4 || view.ip_version == 6);
  FUZZ_REQUIRE(view.src.family == view.ip_version && view.dst.family == view.ip_version);
  FUZZ_REQUIRE(view.captured_truncated == (size < view.ip_length));
  if (view.has_ports) {
    FUZZ_REQUIRE(view.protocol == IPPROTO_TCP || view.protocol == IPPROTO_UDP ||
                 view.protocol == IPPROTO_UDPLITE);
    FUZZ_REQUIRE(view.l4_offset < view.payload_offset && view.payload_offset <= size);
  }
  const auto payload = view.payload();
  FUZZ_REQUIRE(payload.empty() ||
               (payload.data() >= data && payload.data() + payload.size() <= data + size));
  unsigned sum = 0;
  for (const std::uint8_t byte : payload) sum += byte;  // ASan: every byte is readable
  FUZZ_REQUIRE(!view.src.to_string().empty() && !view.dst.to_string().empty());

  PacketMeta meta;
  meta.payload = bytes;
  meta.wire_length = view.ip_length;
  meta.mark = sum;
  const Policy& policy = example_policy();
  FUZZ_REQUIRE(policy.match(meta, view) == first_match_by_rule(policy, meta, view));
  return 0;
}
