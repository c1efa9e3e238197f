#include "plugins/host/plugin_set.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using pktbroker::CallSink;
using pktbroker::Plugin;
using pktbroker::PluginError;
using pktbroker::PluginSet;
using pktbroker::PluginSpec;

namespace {

PluginSpec spec(const std::string& name, std::map<std::string, std::string> config = {}) {
  return {name, std::string(TEST_PLUGIN_DIR) + "/" + name + ".so", std::move(config), "test:1"};
}

std::string load_error(const std::vector<PluginSpec>& specs) {
  try {
    PluginSet set(specs);
  } catch (const PluginError& error) {
    return error.what();
  }
  return "loaded";
}

/// Records what a plugin asks of the host for the current flow.
struct RecordingSink : CallSink {
  std::vector<std::pair<std::string, std::string>> fields;
  int set_field(const Plugin&, std::string_view field, std::string_view value) override {
    fields.emplace_back(field, value);
    return 0;
  }
  int expect(const Plugin&, const pktb_tuple&, std::uint32_t, std::uint32_t) override { return -1; }
  int release(const Plugin&, std::uint64_t, const pktb_decision&) override { return -1; }
  int set_timer(const Plugin&, std::uint32_t) override { return -1; }
  int remember_name(const Plugin&, const pktbroker::IpAddress&, std::string_view,
                    std::uint32_t) override {
    return -1;
  }
};

pktb_decision decide(const Plugin& plugin, CallSink& sink, std::string_view payload) {
  std::vector<std::uint8_t> state(plugin.descriptor().flow_state_size);
  pktb_flow flow{};
  flow.state = state.data();
  pktb_packet packet{};
  packet.l4_data = reinterpret_cast<const std::uint8_t*>(payload.data());
  packet.l4_len = payload.size();
  return plugin.call_on_packet(sink, flow, packet);
}

std::uint64_t counter(const Plugin& plugin, const std::string& name) {
  for (const auto& [key, value] : plugin.counters()) {
    if (key == name) return value;
  }
  return UINT64_MAX;
}

}  // namespace

TEST_CASE("a valid plugin loads, claims its ports and publishes its fields") {
  const PluginSet set(std::vector{spec("valid")});
  REQUIRE(set.plugins().size() == 1);
  const auto plugin = set.find("valid");
  REQUIRE(plugin);
  CHECK(plugin->version() == "test");
  CHECK(plugin->fields() == std::vector<std::string>{"value"});
  CHECK(set.for_flow(17, 9000) == plugin);
  CHECK(set.for_flow(17, 9001) == plugin);
  CHECK(set.for_flow(17, 9002) == nullptr);
  CHECK(set.for_flow(6, 9000) == nullptr);
  CHECK(set.find("other") == nullptr);
}

TEST_CASE("each loader failure is refused with a message naming the file and the reason") {
  const std::string dir = TEST_PLUGIN_DIR;
  CHECK(load_error({spec("missing")}) ==
        "plugin 'missing' (" + dir + "/missing.so): cannot load: " + dir +
            "/missing.so: cannot open shared object file: No such file or directory");
  CHECK(load_error({spec("no_entry")}) == "plugin 'no_entry' (" + dir +
                                              "/no_entry.so): no pktb_plugin_entry symbol: "
                                              "not a pktbroker plugin");
  CHECK(load_error({spec("null_descriptor")})
            .ends_with(": pktb_plugin_entry returned no descriptor"));
  CHECK(load_error({spec("abi_mismatch")})
            .ends_with(": built for plugin ABI 4, this host speaks ABI 1 to 3: rebuild it "
                       "against this pktbroker's plugin.h"));
  CHECK(load_error({spec("struct_too_small")})
            .ends_with(": its descriptor is 16 bytes, ABI 3 needs " +
                       std::to_string(sizeof(pktb_plugin))));
  CHECK(load_error({spec("init_fails")}).ends_with(": init failed: missing license file"));
  CHECK(load_error({spec("bad_name")})
            .ends_with(": bad plugin name 'Bad Name!': expected 1 to 32 of a-z, 0-9, _"));
  CHECK(load_error({{"other", dir + "/valid.so", {}, "test:1"}})
            .ends_with(": the file holds plugin 'valid', not 'other'"));
}

TEST_CASE("a plugin built for ABI 1 still loads and runs; it takes no commands") {
  const PluginSet set(std::vector{spec("abi_v1")});
  const auto plugin = set.find("abi_v1");
  REQUIRE(plugin);
  CHECK(plugin->abi() == 1);
  CHECK(plugin->command(std::vector<std::string>{"status"}) ==
        std::pair<bool, std::string>{false, "plugin abi_v1 takes no commands"});
  // ABI 2's flag means nothing to it: garbage, counted.
  pktb_decision leave{};
  leave.flags = PKTB_DECISION_LEAVE_HELD;
  CHECK_FALSE(plugin->check(leave));
  CHECK(plugin->invalid_decisions() == 1);
  CHECK(set.find("abi_v1") == plugin);
  const PluginSet current(std::vector{spec("valid")});
  CHECK(current.find("valid")->check(leave));
  CHECK(current.find("valid")->command(std::vector<std::string>{"status"}).first == false);
}

TEST_CASE("a plugin built for ABI 2 still loads; it delivers no channels") {
  const PluginSet set(std::vector{spec("abi_v2")});
  const auto plugin = set.find("abi_v2");
  REQUIRE(plugin);
  CHECK(plugin->abi() == 2);
  CHECK_FALSE(plugin->delivers_channels());
  CHECK(plugin->command(std::vector<std::string>{"status"}).first == false);
}

TEST_CASE("a channel policy needs channel_open and channel_frame together") {
  CHECK(load_error({spec("half_channel")})
            .ends_with(": a channel delivery policy needs both channel_open and channel_frame"));
}

TEST_CASE("a duplicate name and two plugins claiming one port are refused, naming both") {
  CHECK(load_error({spec("valid"), spec("valid")}) ==
        "plugin 'valid' (test:1) is loaded twice: also from " + std::string(TEST_PLUGIN_DIR) +
            "/valid.so");
  CHECK(load_error({spec("valid"), spec("claims_same_port")}) ==
        "plugins 'valid' and 'claims_same_port' both claim protocol 17 ports 9000-9001 / "
        "protocol 17 port 9001: give one of them other ports");
}

TEST_CASE("host services: counters, config and fields reach the plugin") {
  const PluginSet set(std::vector{spec("valid", {{"mode", "strict"}})});
  const Plugin& plugin = *set.find("valid");
  RecordingSink sink;
  CHECK(decide(plugin, sink, "accept me").action == PKTB_ACCEPT);
  CHECK(decide(plugin, sink, "drop me").action == PKTB_DROP);  // strict mode from the config
  const pktb_decision marked = decide(plugin, sink, "mark me");
  CHECK(marked.action == PKTB_ACCEPT);
  CHECK(marked.flags == PKTB_DECISION_SET_MARK);
  CHECK(marked.set_mark == 7);
  CHECK(counter(plugin, "packets") == 3);
  CHECK(sink.fields == std::vector<std::pair<std::string, std::string>>{
                           {"value", "accept me"}, {"value", "drop me"}, {"value", "mark me"}});

  const PluginSet lenient(std::vector{spec("valid")});
  CHECK(decide(*lenient.find("valid"), sink, "drop me").action == PKTB_PASS);
}

TEST_CASE("garbage decisions and escaping exceptions are counted and become pass") {
  const PluginSet set(std::vector{spec("valid"), spec("throws")});
  RecordingSink sink;
  const Plugin& valid = *set.find("valid");
  CHECK(decide(valid, sink, "garbage").action == PKTB_PASS);
  CHECK(valid.invalid_decisions() == 1);
  const Plugin& throws = *set.find("throws");
  CHECK(decide(throws, sink, "anything").action == PKTB_PASS);
  CHECK(decide(throws, sink, "again").action == PKTB_PASS);
  CHECK(throws.invalid_decisions() == 2);
  CHECK(counter(throws, "invalid_decisions") == 2);
}
