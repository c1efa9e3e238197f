// The resend plugin: address rewriting with checksums checked by an independent sum, the
// reply table's bounds, and the plugin itself driven through a FlowInspector.
#include "plugins/resend/address_rewrite.hpp"
#include "plugins/resend/reply_table.hpp"
#include "test/unit/plugins/plugin_driver.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

using namespace pktbroker;
using namespace pktbroker::test;
using pktbroker::plugins::resend::address_of;
using pktbroker::plugins::resend::Endpoint;
using pktbroker::plugins::resend::ReplyKey;
using pktbroker::plugins::resend::ReplyTable;
using pktbroker::plugins::resend::rewrite_address;

namespace {

// RFC 1071, written out here so the test does not trust the helpers it checks.
std::uint32_t sum16(std::span<const std::uint8_t> bytes, std::uint32_t sum = 0) {
  for (std::size_t i = 0; i < bytes.size(); i += 2) {
    sum += static_cast<std::uint32_t>(bytes[i] << 8) | (i + 1 < bytes.size() ? bytes[i + 1] : 0);
  }
  return sum;
}

std::uint16_t fold(std::uint32_t sum) {
  while ((sum >> 16) != 0) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(sum);
}

bool ipv4_header_valid(const Bytes& p) {
  return fold(sum16({p.data(), std::size_t{p[0] & 0x0fu} * 4})) == 0xffff;
}

/// Whether the TCP or UDP checksum verifies over the pseudo-header.
bool transport_valid(const Bytes& p) {
  const bool v4 = (p[0] >> 4) == 4;
  const std::size_t l4 = v4 ? std::size_t{p[0] & 0x0fu} * 4 : 40;
  const std::uint8_t protocol = v4 ? p[9] : p[6];
  const std::span<const std::uint8_t> segment(p.data() + l4, p.size() - l4);
  std::uint32_t sum = v4 ? sum16({p.data() + 12, 8}) : sum16({p.data() + 8, 32});
  sum += protocol + static_cast<std::uint32_t>(segment.size());
  return fold(sum16(segment, sum)) == 0xffff;
}

/// Fills in correct checksums, as a sender would.
Bytes with_checksums(Bytes p) {
  const bool v4 = (p[0] >> 4) == 4;
  const std::size_t l4 = v4 ? 20 : 40;
  const std::size_t at = l4 + (p[v4 ? 9 : 6] == IPPROTO_TCP ? 16 : 6);
  p[at] = p[at + 1] = 0;
  std::uint32_t sum = v4 ? sum16({p.data() + 12, 8}) : sum16({p.data() + 8, 32});
  sum += p[v4 ? 9 : 6] + static_cast<std::uint32_t>(p.size() - l4);
  const std::uint16_t check =
      static_cast<std::uint16_t>(~fold(sum16({p.data() + l4, p.size() - l4}, sum)));
  p[at] = static_cast<std::uint8_t>(check >> 8);
  p[at + 1] = static_cast<std::uint8_t>(check);
  if (v4) {
    p[10] = p[11] = 0;
    const std::uint16_t header = static_cast<std::uint16_t>(~fold(sum16({p.data(), 20})));
    p[10] = static_cast<std::uint8_t>(header >> 8);
    p[11] = static_cast<std::uint8_t>(header);
  }
  return p;
}

const std::array<std::uint8_t, 4> new_v4{192, 0, 2, 7};

Bytes udp4(std::string_view data, std::initializer_list<std::uint8_t> src = {10, 0, 0, 1},
           std::initializer_list<std::uint8_t> dst = {10, 0, 0, 2}) {
  Bytes l4 = udp_header(40000, 53, static_cast<std::uint16_t>(data.size()));
  l4.insert(l4.end(), data.begin(), data.end());
  return with_checksums(ipv4(IPPROTO_UDP, l4, 0, src, dst));
}

}  // namespace

TEST_CASE("resend: a rewritten source carries checksums a receiver accepts") {
  SECTION("IPv4 UDP, also from a partial (offloaded) checksum") {
    Bytes p = udp4("query");
    p[26] = 0x12;  // what an offloaded packet carries: not the full sum
    REQUIRE(rewrite_address(p, Endpoint::source, new_v4));
    CHECK(Bytes(p.begin() + 12, p.begin() + 16) == Bytes{192, 0, 2, 7});
    CHECK(ipv4_header_valid(p));
    CHECK(transport_valid(p));
  }
  SECTION("IPv4 UDP without a checksum keeps none") {
    Bytes p = udp4("query");
    p[26] = p[27] = 0;
    REQUIRE(rewrite_address(p, Endpoint::source, new_v4));
    CHECK((p[26] == 0 && p[27] == 0));
    CHECK(ipv4_header_valid(p));
  }
  SECTION("IPv4 TCP, destination") {
    Bytes p = with_checksums(ipv4(IPPROTO_TCP, tcp_header(80, 40000, 0x12), 0, {10, 0, 0, 2}));
    REQUIRE(rewrite_address(p, Endpoint::destination, new_v4));
    CHECK(Bytes(p.begin() + 16, p.begin() + 20) == Bytes{192, 0, 2, 7});
    CHECK(ipv4_header_valid(p));
    CHECK(transport_valid(p));
  }
  SECTION("IPv6 UDP and TCP") {
    std::array<std::uint8_t, 16> fresh{0xfd, 0x77};
    fresh[15] = 2;
    Bytes l4 = udp_header(40000, 53, 5);
    l4.insert(l4.end(), {'h', 'e', 'l', 'l', 'o'});
    Bytes udp = with_checksums(ipv6(IPPROTO_UDP, l4));
    REQUIRE(rewrite_address(udp, Endpoint::source, fresh));
    CHECK(address_of(udp, Endpoint::source)[15] == 2);
    CHECK(transport_valid(udp));
    Bytes tcp = with_checksums(ipv6(IPPROTO_TCP, tcp_header(40000, 80)));
    REQUIRE(rewrite_address(tcp, Endpoint::source, fresh));
    CHECK(transport_valid(tcp));
  }
  SECTION("what cannot be rewritten whole is left alone") {
    const Bytes fragment = with_checksums(
        ipv4(IPPROTO_UDP, udp_header(40000, 53), 0, {10, 0, 0, 1}, {10, 0, 0, 2}, 0x2000));
    Bytes p = fragment;
    CHECK_FALSE(rewrite_address(p, Endpoint::source, new_v4));
    CHECK(p == fragment);
    Bytes v6_address_for_v4 = udp4("x");
    CHECK_FALSE(
        rewrite_address(v6_address_for_v4, Endpoint::source, std::array<std::uint8_t, 16>{}));
    Bytes icmp = ipv4(IPPROTO_ICMP, icmp_header(8));
    CHECK_FALSE(rewrite_address(icmp, Endpoint::source, new_v4));
    Bytes hop_by_hop = ipv6_extension(0, IPPROTO_UDP);
    const Bytes udp = udp_header(1, 2);
    hop_by_hop.insert(hop_by_hop.end(), udp.begin(), udp.end());
    Bytes behind_extension = ipv6(0, hop_by_hop);
    CHECK_FALSE(
        rewrite_address(behind_extension, Endpoint::source, std::array<std::uint8_t, 16>{}));
    Bytes empty;
    CHECK_FALSE(rewrite_address(empty, Endpoint::source, new_v4));
  }
}

TEST_CASE("resend: the reply table forgets expired translations and is bounded") {
  ReplyTable table(2);
  const ReplyTable::Address old_address{10, 0, 0, 1};
  ReplyKey a{IPPROTO_UDP, 4, 53, 40000, {10, 0, 0, 2}, {192, 0, 2, 7}};
  ReplyKey b = a;
  b.local_port = 40001;
  ReplyKey c = a;
  c.local_port = 40002;
  CHECK(table.add(a, old_address, 100, 0));
  CHECK(table.add(b, old_address, 200, 0));
  CHECK_FALSE(table.add(c, old_address, 300, 50));  // full, nothing expired yet
  CHECK(table.use(a, 99, 120) == old_address);      // traffic keeps it alive: until 120 now
  CHECK(table.use(a, 110, 0) == old_address);
  CHECK_FALSE(table.use(a, 120, 0));
  CHECK(table.add(c, old_address, 300, 150));  // a expired and made room
  table.remove(c);
  CHECK_FALSE(table.use(c, 150, 0));
  CHECK(table.add(c, old_address, 300, 150));
  CHECK(table.live(150) == 2);
  ReplyKey other_remote = b;
  other_remote.remote[3] = 3;
  CHECK_FALSE(table.use(other_remote, 150, 0));  // another server's packet is not a reply
}

namespace {

constexpr std::uint32_t loopback = 1;  // the plugin serves "lo" in these tests

struct ResendDriver {
  explicit ResendDriver(const std::map<std::string, std::string>& config)
      : driver(shipped_plugins({"resend"}, config)) {}

  /// A packet leaving by (out) or arriving on (in) the served interface.
  Inspection send(Bytes packet, bool leaving = true) {
    driver.packets.push_back(std::make_unique<Bytes>(std::move(packet)));
    const Bytes& bytes = *driver.packets.back();
    PacketView view;
    REQUIRE(parse_packet(bytes, view) == ParseError::none);
    PacketMeta meta;
    meta.packet_id = static_cast<std::uint32_t>(driver.packets.size());
    meta.payload = bytes;
    meta.wire_length = static_cast<std::uint32_t>(bytes.size());
    (leaving ? meta.out_ifindex : meta.in_ifindex) = loopback;
    return driver.inspector.inspect(meta, view, driver.packets.size(), Clock::now());
  }

  std::pair<bool, std::string> command(std::vector<std::string> args) {
    return plugin().command(args);
  }
  const Plugin& plugin() { return *driver.plugin_set->find("resend"); }
  void fire_timers() { driver.inspector.fire_timers(plugin(), Clock::now()); }

  PluginDriver driver;
};

}  // namespace

TEST_CASE("resend: held until the wakeup, then released from the new address; replies go back") {
  ResendDriver resend({{"interface", "lo"}, {"hold_packets", "1"}});
  const Inspection first = resend.send(udp4("query"));
  CHECK(first.decision.action == PKTB_HOLD);
  CHECK(first.decision.hold_ms == 11'000);
  // A retry while the first waits is dropped (it would leave from the old address), and does
  // not take the held one with it.
  const Inspection retry = resend.send(udp4("query"));
  CHECK(retry.decision.action == PKTB_DROP);
  CHECK((retry.decision.flags & PKTB_DECISION_LEAVE_HELD) != 0);
  // Nothing changes on a refused wakeup.
  CHECK(resend.command({"wakeup", "--iface", "eth9", "--addr", "127.0.0.1"}) ==
        std::pair<bool, std::string>{false, "resend serves interface 'lo', not 'eth9'"});
  CHECK(resend.command({"wakeup", "--iface", "lo", "--addr", "192.0.2.999"}) ==
        std::pair<bool, std::string>{false, "'192.0.2.999' is not an IPv4 or IPv6 address"});
  CHECK_FALSE(resend.command({"wakeup", "--iface", "lo"}).first);
  // Only an address the link has: a manage user cannot make flows leave from any address.
  CHECK(resend.command({"wakeup", "--iface", "lo", "--addr", "192.0.2.7"}) ==
        std::pair<bool, std::string>{false, "192.0.2.7 is not an address of lo"});
  resend.fire_timers();
  CHECK(resend.driver.released.empty());
  const auto [ok, text] = resend.command({"wakeup", "--iface", "lo", "--addr", "127.0.0.1"});
  CHECK(ok);
  CHECK(text == "lo ipv4 is up at 127.0.0.1; 1 held packet(s) are released");
  resend.fire_timers();  // what pktb_host::wake makes the broker do
  REQUIRE(resend.driver.released.size() == 1);
  CHECK(resend.driver.released[0] ==
        std::pair<std::uint64_t, pktb_action>{1, PKTB_ACCEPT_MODIFIED});
  // The flow's later packets leave from the new address too.
  const Inspection later = resend.send(udp4("again"));
  REQUIRE(later.decision.action == PKTB_ACCEPT_MODIFIED);
  const Bytes moved(later.replacement.begin(), later.replacement.end());
  CHECK(Bytes(moved.begin() + 12, moved.begin() + 16) == Bytes{127, 0, 0, 1});
  CHECK(transport_valid(moved));
  // The answer to the new address is handed to the old one.
  Bytes answer_l4 = udp_header(53, 40000, 6);
  answer_l4.insert(answer_l4.end(), {'a', 'n', 's', 'w', 'e', 'r'});
  const Inspection answer = resend.send(
      with_checksums(ipv4(IPPROTO_UDP, answer_l4, 0, {10, 0, 0, 2}, {127, 0, 0, 1})), false);
  REQUIRE(answer.decision.action == PKTB_ACCEPT_MODIFIED);
  const Bytes back(answer.replacement.begin(), answer.replacement.end());
  CHECK(Bytes(back.begin() + 16, back.begin() + 20) == Bytes{10, 0, 0, 1});
  CHECK(ipv4_header_valid(back));
  CHECK(transport_valid(back));
  // Another server's packet to the new address is not a reply.
  const Inspection stranger = resend.send(
      with_checksums(ipv4(IPPROTO_UDP, answer_l4, 0, {10, 0, 0, 3}, {127, 0, 0, 1})), false);
  CHECK(stranger.decision.action == PKTB_PASS);
  CHECK(resend.driver.counter("resend", "rewritten") == 1);
  CHECK(resend.driver.counter("resend", "translated_out") == 1);
  CHECK(resend.driver.counter("resend", "translated_in") == 1);
  CHECK(resend.driver.counter("resend", "dropped_while_held") == 1);
  CHECK(resend.driver.counter("resend", "bad_commands") == 4);
  // Up now: a new flow is not held.
  CHECK(resend.send(udp4("new", {10, 0, 0, 1}, {10, 0, 0, 9})).decision.action == PKTB_PASS);
  // Down again (ip-down): new flows wait once more.
  CHECK(resend.command({"down", "--iface", "lo"}) ==
        std::pair<bool, std::string>{true, "lo is down: new flows through it are held"});
  CHECK(resend.send(udp4("after", {10, 0, 0, 1}, {10, 0, 0, 8})).decision.action == PKTB_HOLD);
  CHECK(resend.command({"wakeup", "--iface", "lo", "--addr", "127.0.0.1"}).first);
  const auto status = resend.command({"status", "--json"});
  CHECK(status.second.starts_with(
      R"({"interface":"lo","ipv4":{"up":true,"address":"127.0.0.1"},"ipv6":{"up":false,"address":null},"held":1,"translations":1,)"));
}

TEST_CASE(
    "resend: without a wakeup the held packet goes unchanged, or is dropped, at the wait's end") {
  for (const std::string at_timeout : {"release", "drop"}) {
    ResendDriver resend({{"interface", "lo"}, {"wakeup_wait_ms", "1"}, {"on_timeout", at_timeout}});
    CHECK(resend.send(udp4("query")).decision.action == PKTB_HOLD);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    resend.driver.inspector.maintain(Clock::now() + std::chrono::milliseconds(5));
    REQUIRE(resend.driver.released.size() == 1);
    CHECK(resend.driver.released[0].second == (at_timeout == "drop" ? PKTB_DROP : PKTB_ACCEPT));
    CHECK(resend.driver.counter("resend", "timeouts") == 1);
    CHECK(resend.driver.counter("resend", "rewritten") == 0);
  }
}

TEST_CASE(
    "resend: packets of another interface, arriving ones and other protocols are left alone") {
  ResendDriver resend(std::map<std::string, std::string>{{"interface", "lo"}});
  PluginDriver& d = resend.driver;
  CHECK(d.send(udp4("elsewhere")).decision.action == PKTB_PASS);  // no interface at all
  CHECK(resend.send(udp4("in"), false).decision.action == PKTB_PASS);
  CHECK(resend.send(ipv4(IPPROTO_ICMP, icmp_header(8))).decision.action == PKTB_PASS);
  CHECK(d.counter("resend", "held") == 0);
}

TEST_CASE("resend: bad configuration is refused at load, naming the key") {
  const auto error = [](std::map<std::string, std::string> config) {
    try {
      shipped_plugins({"resend"}, config);
    } catch (const PluginError& e) {
      return std::string(e.what());
    }
    return std::string("loaded");
  };
  CHECK(error({}).ends_with("init failed: config 'interface' is required: the demand-dial link"));
  CHECK(error({{"interface", "a b"}}).ends_with("config 'interface' is not an interface name"));
  CHECK(error({{"interface", "lo"}, {"hold_packets", "17"}})
            .ends_with("config 'hold_packets' must be a number from 1 to 16"));
  CHECK(error({{"interface", "lo"}, {"wakeup_wait_ms", "25001"}})
            .ends_with("config 'wakeup_wait_ms' must be a number of milliseconds from 1 to 25000"));
  CHECK(error({{"interface", "lo"}, {"initial_state", "sideways"}})
            .ends_with("config 'initial_state' must be 'down' (held until a wakeup) or 'up' (the "
                       "link's addresses now)"));
  CHECK(error({{"interface", "lo"}, {"on_timeout", "later"}})
            .ends_with("config 'on_timeout' must be 'release' (send unchanged) or 'drop'"));
  CHECK(error({{"interface", "lo"}, {"watch_addresses", "maybe"}})
            .ends_with("config 'watch_addresses' must be true or false"));
  CHECK(error({{"interface", "lo"}, {"watch_addresses", "true"}}) == "loaded");
}

TEST_CASE("resend: initial_state up takes the link's addresses at start-up (a restart)") {
  ResendDriver resend({{"interface", "lo"}, {"initial_state", "up"}});
  CHECK(resend.send(udp4("query")).decision.action == PKTB_PASS);
  CHECK(resend.command({"status", "--json"})
            .second.starts_with(R"({"interface":"lo","ipv4":{"up":true,"address":"127.0.0.1"})"));
}
