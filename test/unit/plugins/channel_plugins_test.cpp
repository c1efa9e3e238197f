// The shipped channel delivery policies, loaded as the broker loads them: broadcast and the
// learning switch (its ageing driven by the frames' timestamps).
#include "plugins/host/plugin_set.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <string>
#include <vector>

using namespace pktbroker;

namespace {

PluginSpec built(const std::string& name, std::map<std::string, std::string> config = {}) {
  return {name, std::string(BUILT_PLUGIN_DIR) + "/" + name + ".so", std::move(config), "test:1"};
}

/// An Ethernet frame from MAC 02:..:src to MAC dst (0xff: broadcast).
std::vector<std::uint8_t> ethernet(std::uint8_t dst, std::uint8_t src) {
  std::vector<std::uint8_t> frame(60, 0);
  const std::uint8_t to = dst == 0xff ? 0xff : 2;
  frame[0] = to;
  for (int i = 1; i < 5; ++i) frame[i] = dst == 0xff ? 0xff : 0;
  frame[5] = dst;
  frame[6] = 2;
  frame[11] = src;
  frame[12] = 0x88;
  frame[13] = 0xb5;
  return frame;
}

/// One channel of `plugin` with members 1..3, and where its frames go.
class ChannelUnderTest {
 public:
  explicit ChannelUnderTest(const Plugin& plugin, std::uint8_t link = PKTB_LINK_ETHERNET)
      : plugin_(plugin) {
    std::string error;
    state_ = plugin_.call_channel_open("test", link, error);
    error_ = error;
    if (state_ != nullptr) {
      for (const std::uint32_t m : members_) plugin_.call_channel_member(state_, m, true);
    }
  }
  ~ChannelUnderTest() {
    if (state_ != nullptr) plugin_.call_channel_close(state_);
  }
  ChannelUnderTest(const ChannelUnderTest&) = delete;
  ChannelUnderTest& operator=(const ChannelUnderTest&) = delete;

  [[nodiscard]] bool open() const { return state_ != nullptr; }
  [[nodiscard]] const std::string& error() const { return error_; }
  void leave(std::uint32_t member) {
    plugin_.call_channel_member(state_, member, false);
    std::erase(members_, member);
  }
  std::vector<std::uint32_t> send(std::uint32_t from, const std::vector<std::uint8_t>& frame,
                                  std::uint64_t now_ms) {
    const pktb_channel_frame hook{
        frame.data(),       frame.size(),    from,           PKTB_LINK_ETHERNET, {},
        now_ms * 1'000'000, members_.data(), members_.size()};
    std::array<std::uint32_t, 8> out{};
    const auto to = plugin_.call_channel_frame(state_, hook, out);
    return {to.begin(), to.end()};
  }

 private:
  const Plugin& plugin_;
  void* state_ = nullptr;
  std::string error_;
  std::vector<std::uint32_t> members_{1, 2, 3};
};

using Members = std::vector<std::uint32_t>;

}  // namespace

TEST_CASE("broadcast: every receiving member but the sender; the broker's frames to all") {
  const PluginSet set(std::vector{built("broadcast")});
  ChannelUnderTest channel(*set.find("broadcast"));
  REQUIRE(channel.open());
  CHECK(channel.send(2, ethernet(0xff, 2), 0) == Members{1, 3});
  CHECK(channel.send(0, ethernet(1, 9), 0) == Members{1, 2, 3});
  channel.leave(3);
  CHECK(channel.send(1, ethernet(0xff, 1), 0) == Members{2});
}

TEST_CASE("switch: learns, sends to a learnt MAC alone, floods the unknown and broadcasts") {
  const PluginSet set(std::vector{built("switch", {{"ageing_ms", "1000"}})});
  const Plugin& plugin = *set.find("switch");
  ChannelUnderTest channel(plugin);
  REQUIRE(channel.open());
  CHECK(channel.send(1, ethernet(0xff, 0xa1), 0) == Members{2, 3});  // broadcast: flooded
  CHECK(channel.send(2, ethernet(0xa1, 0xb2), 10) == Members{1});    // learnt: unicast
  CHECK(channel.send(1, ethernet(0xb2, 0xa1), 20) == Members{2});
  CHECK(channel.send(3, ethernet(0xcc, 0xc3), 30) == Members{1, 2});  // unknown: flooded
  CHECK(channel.send(1, ethernet(0xa1, 0xa1), 40).empty());           // it lives there: filtered
  SECTION("an entry ages out") {
    CHECK(channel.send(3, ethernet(0xa1, 0xc3), 1039) == Members{1});
    CHECK(channel.send(3, ethernet(0xa1, 0xc3), 1041) == Members{1, 2});
    const auto counters = plugin.counters();
    CHECK(std::find(counters.begin(), counters.end(),
                    std::pair<std::string, std::uint64_t>{"aged", 1}) != counters.end());
  }
  SECTION("a member that leaves takes its entries along") {
    channel.leave(1);
    CHECK(channel.send(2, ethernet(0xa1, 0xb2), 50) == Members{3});
  }
  SECTION("a station that moves is learnt where it is now") {
    CHECK(channel.send(3, ethernet(0xff, 0xa1), 50) == Members{1, 2});
    CHECK(channel.send(2, ethernet(0xa1, 0xb2), 60) == Members{3});
  }
}

TEST_CASE("switch: a full table learns nothing new and counts it; ip channels are refused") {
  const PluginSet set(std::vector{built("switch", {{"max_macs", "2"}})});
  const Plugin& plugin = *set.find("switch");
  {
    ChannelUnderTest channel(plugin);
    REQUIRE(channel.open());
    channel.send(1, ethernet(0xff, 0xa1), 0);
    channel.send(2, ethernet(0xff, 0xb2), 0);
    channel.send(3, ethernet(0xff, 0xc3), 0);                          // no room for c3
    CHECK(channel.send(1, ethernet(0xc3, 0xa1), 1) == Members{2, 3});  // so it is flooded
    CHECK(channel.send(1, ethernet(0xb2, 0xa1), 1) == Members{2});
  }
  const auto counters = plugin.counters();
  CHECK(std::find(counters.begin(), counters.end(),
                  std::pair<std::string, std::uint64_t>{"table_full", 1}) != counters.end());
  ChannelUnderTest ip(plugin, PKTB_LINK_IP);
  CHECK_FALSE(ip.open());
  CHECK(ip.error() == "plugin switch: the switch policy needs an ethernet channel");
}

TEST_CASE("switch: bad config is refused at load") {
  CHECK_THROWS_WITH(
      PluginSet(std::vector{built("switch", {{"ageing_ms", "soon"}})}),
      Catch::Contains("config ageing_ms and max_macs must be positive whole numbers"));
}
