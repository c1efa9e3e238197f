#include "pktbroker/codec.hpp"

#include <catch2/catch.hpp>

#include <random>

using namespace pktbroker::proto;

namespace {

const std::vector<std::uint8_t> payload = {0x45, 0, 0, 20, 1, 2, 3, 4};

std::vector<std::uint8_t> encoded(const Message& message, std::uint32_t request_id = 7) {
  std::vector<std::uint8_t> out;
  REQUIRE_FALSE(encode(message, request_id, out));
  return out;
}

Decoded decoded(const std::vector<std::uint8_t>& bytes) {
  Decoded out;
  const std::error_code error = decode(bytes, out);
  INFO(error.message());
  REQUIRE_FALSE(error);
  return out;
}

std::error_code decode_error(const std::vector<std::uint8_t>& bytes) {
  Decoded out;
  return decode(bytes, out);
}

/// A datagram with `type` and `body` as given, the header's length honest: what a hostile
/// client could send where the encoder would refuse.
std::vector<std::uint8_t> raw_datagram(MessageType type, const std::vector<std::uint8_t>& body) {
  std::vector<std::uint8_t> out = encoded(Ping{}, 3);
  out[3] = static_cast<std::uint8_t>(type);
  const auto size = static_cast<std::uint32_t>(body.size());
  for (int i = 0; i < 4; ++i) out[4 + i] = static_cast<std::uint8_t>(size >> (24 - 8 * i));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

void put_u16(std::vector<std::uint8_t>& out, std::size_t value) {
  out.push_back(static_cast<std::uint8_t>(value >> 8));
  out.push_back(static_cast<std::uint8_t>(value));
}

void put_string(std::vector<std::uint8_t>& out, const std::string& text) {
  put_u16(out, text.size());
  out.insert(out.end(), text.begin(), text.end());
}

/// A PLUGIN_COMMAND body built field by field, without the encoder's checks.
std::vector<std::uint8_t> plugin_command_body(const std::string& plugin,
                                              const std::vector<std::string>& args) {
  std::vector<std::uint8_t> body;
  put_string(body, plugin);
  put_u16(body, 0);  // the u32 count's high half
  put_u16(body, args.size());
  for (const auto& arg : args) put_string(body, arg);
  return body;
}

/// One of each message type, every field set to a non-default value.
std::vector<Message> samples() {
  const Prompt prompt{7,
                      1000,
                      4242,
                      "/usr/bin/curl",
                      "curl",
                      "curl https://example.org/",
                      6,
                      "2001:db8::7",
                      443,
                      "ask-web",
                      3,
                      27000,
                      VerdictCode::drop};
  Packet packet;
  packet.token = 0x0001000000000042;
  packet.subscription_id = 3;
  packet.needs_verdict = true;
  packet.queue = 2;
  packet.hook = 3;
  packet.ct_state = CtStateCode::established;
  packet.mark = 0x11;
  packet.in_ifindex = 4;
  packet.out_ifindex = 5;
  packet.uid = 1000;
  packet.timestamp_ns = 1234567890123;
  packet.wire_length = 1500;
  packet.payload = payload;
  Verdict verdict{42, VerdictCode::repeat, 0x22, payload};
  Packet second = packet;
  second.token = 0x0001000000000043;
  second.gid = 7;
  second.payload = {};
  return {Hello{"dropper", role_verdict | role_observe, 1, 1},
          Welcome{1, 9, role_verdict, "0.1.0"},
          Subscribe{"web", "{proto: tcp, dport: 80}", SubscriptionMode::observe, Clash::chain, -5,
                    128, 250, VerdictCode::drop},
          Subscribed{12},
          Unsubscribe{12},
          packet,
          verdict,
          VerdictBatch{{Verdict{1, VerdictCode::accept, std::nullopt, {}},
                        Verdict{2, VerdictCode::pass, 7U, {}}}},
          StatsRequest{},
          StatsReply{{{"queue 0", "packets", 10}, {"session 3", "timeouts", 2}}},
          SessionsRequest{},
          SessionsReply{{SessionInfo{3, "dropper", 100, 0, 0, role_verdict, 1, 2, 30, 28, 2}}},
          ReloadRequest{},
          ReloadReply{false, "policy.yaml:1:1: error: x"},
          Error{ErrorCode::busy, "held by session 2"},
          Ping{},
          Pong{},
          PluginCommand{"resend", {"wakeup", "--iface", "ppp0", "", "--addr", "10.0.0.5"}},
          PluginCommandReply{true, "woke 10.0.0.5 on ppp0\n"},
          ChannelCreate{"lab",
                        "switch",
                        LinkType::ethernet,
                        8,
                        1518,
                        64,
                        Overflow::backpressure,
                        {{ChannelAccess::Kind::gid, 100, right_receive | right_send}}},
          ChannelJoin{"lab", right_receive},
          ChannelJoined{4, 2, right_receive, LinkType::ip, 65535},
          ChannelSend{4, payload},
          ChannelFrames{4, {{2, payload}, {0, {}}}},
          ChannelLeave{4},
          ChannelLeft{4, "kicked by uid 0 (pktbrokerctl)"},
          ChannelFlow{4, true},
          ChannelsRequest{},
          ChannelsReply{{ChannelInfo{"lab",
                                     "broadcast",
                                     LinkType::ethernet,
                                     Overflow::drop,
                                     8,
                                     1518,
                                     64,
                                     10,
                                     20,
                                     3,
                                     1,
                                     {{1, 7, "chat", 99, 1000, right_send, 5, 6, 7, 8}}}}},
          ChannelKick{"lab", 3},
          Ok{"channel lab created"},
          RulesRequest{},
          RulesReply{{RuleInfo{"no-telnet", "/etc/pktbroker/policy.yaml:12", -10,
                               "{proto: tcp, dport: 23}", "drop", 5, 300}}},
          PromptWatch{PromptScope::all},
          prompt,
          PromptAnswer{7, AnswerDecision::deny, AnswerSpan::minutes, 15},
          PromptClosed{7, PromptEnd::timed_out, VerdictCode::drop, "not answered in time"},
          PendingRequest{},
          PendingReply{{prompt, prompt}},
          AppsRequest{},
          AppsReply{{AppSeen{
              1000, 42, "/usr/bin/curl", "curl", 3, 1500, {"tcp 10.0.0.2:80", "udp [::1]:53"}}}},
          RuleAdd{own_uid, "ask-web", "{dport: 443}", VerdictCode::accept, "2h"},
          RuleDelete{"ans-u1000-3"},
          PacketBatch{{packet, second}}};  // last: the batch tests below take it from the back
}

}  // namespace

TEST_CASE("a prompt answer's minutes go with its span") {
  const auto decodes = [](const PromptAnswer& answer) {
    Decoded out;
    return !decode(encoded(answer, 1), out);
  };
  CHECK(decodes({1, AnswerDecision::allow, AnswerSpan::minutes, 1}));
  CHECK(decodes({1, AnswerDecision::allow, AnswerSpan::minutes, max_answer_minutes}));
  CHECK_FALSE(decodes({1, AnswerDecision::allow, AnswerSpan::minutes, 0}));
  CHECK_FALSE(decodes({1, AnswerDecision::allow, AnswerSpan::minutes, max_answer_minutes + 1}));
  CHECK_FALSE(decodes({1, AnswerDecision::allow, AnswerSpan::always, 5}));
  auto bytes = encoded(PromptAnswer{1, AnswerDecision::allow, AnswerSpan::once, 0}, 1);
  bytes[header_size + 8] = 2;  // no such decision
  Decoded out;
  CHECK(decode(bytes, out) == ProtocolError::bad_value);
}

TEST_CASE("every message type survives a round trip") {
  const auto messages = samples();
  REQUIRE(messages.size() == std::variant_size_v<Message>);
  for (const Message& message : messages) {
    const auto bytes = encoded(message, 99);
    const Decoded d = decoded(bytes);
    CHECK(d.header.request_id == 99);
    CHECK(d.header.type == type_of(message));
    CHECK(d.header.body_length == bytes.size() - header_size);
    CHECK(d.message.index() == message.index());
    // Re-encoding the decoded message gives the same bytes: every field came back.
    CHECK(encoded(d.message, 99) == bytes);
  }
}

TEST_CASE("decoded fields carry the values sent") {
  const auto bytes = encoded(samples()[5]);  // the decoded payload points into these bytes
  const auto d = decoded(bytes);
  const auto& p = std::get<Packet>(d.message);
  CHECK(p.token == 0x0001000000000042);
  CHECK(p.needs_verdict);
  CHECK(p.ct_state == CtStateCode::established);
  CHECK(p.uid == 1000U);
  CHECK_FALSE(p.gid.has_value());
  CHECK(std::vector<std::uint8_t>(p.payload.begin(), p.payload.end()) == payload);
  const auto s = decoded(encoded(samples()[2]));
  const auto& sub = std::get<Subscribe>(s.message);
  CHECK(sub.selector == "{proto: tcp, dport: 80}");
  CHECK(sub.priority == -5);
  CHECK(sub.fallback == VerdictCode::drop);
}

TEST_CASE("every malformed datagram is rejected with its reason") {
  const auto ping = encoded(Ping{});
  auto bad_magic = ping;
  bad_magic[0] = 'X';
  auto bad_version = ping;
  bad_version[2] = 9;
  auto unknown_type = ping;
  unknown_type[3] = 200;
  auto zero_type = ping;
  zero_type[3] = 0;
  auto long_claim = ping;
  long_claim[7] = 4;  // claims 4 body bytes that are not there
  auto trailing = encoded(Subscribed{1});
  trailing.push_back(0);
  trailing[7] += 1;  // keep the length honest: the extra byte is inside the body
  auto truncated = encoded(Hello{"name", 1, 1, 1});
  truncated[17] = 200;  // string length lies
  auto bad_enum = encoded(Subscribe{});
  bad_enum[header_size + 4] = 7;  // mode (after two empty strings)
  auto bad_bool = encoded(samples()[5]);
  bad_bool[header_size + 12] = 2;  // needs_verdict
  auto huge_count = encoded(VerdictBatch{});
  huge_count[header_size] = 0xff;  // 4 billion verdicts in 0 bytes
  auto lying_count = encoded(VerdictBatch{});
  lying_count[header_size + 3] = 10;  // 10 verdicts, no bytes
  const auto batch = encoded(samples().back());
  auto long_entry = batch;
  long_entry[header_size + 7] += 1;  // the first packet claims a byte of the second
  auto short_entry = batch;
  short_entry[header_size + 7] -= 1;  // the first packet's payload runs past its entry
  auto bad_entry = batch;
  bad_entry[header_size + 8 + 12] = 2;  // the first packet's needs_verdict

  using E = ProtocolError;
  const std::vector<std::pair<std::vector<std::uint8_t>, E>> cases = {
      {{}, E::short_header},
      {std::vector<std::uint8_t>(15, 0), E::short_header},
      {bad_magic, E::bad_magic},
      {bad_version, E::bad_version},
      {unknown_type, E::unknown_type},
      {zero_type, E::unknown_type},
      {long_claim, E::length_mismatch},
      {trailing, E::trailing_bytes},
      {truncated, E::truncated_field},
      {bad_enum, E::bad_value},
      {bad_bool, E::bad_value},
      {huge_count, E::oversized},
      {lying_count, E::truncated_field},
      {long_entry, E::trailing_bytes},
      {short_entry, E::truncated_field},
      {bad_entry, E::bad_value},
      {std::vector<std::uint8_t>(max_datagram + 1, 0), E::oversized},
  };
  for (const auto& [bytes, expected] : cases) {
    const std::error_code error = decode_error(bytes);
    INFO("expected " << make_error_code(expected).message() << ", got " << error.message());
    CHECK(error == expected);
    CHECK(error.category() == protocol_category());
  }
}

TEST_CASE("a plugin command and its reply carry their fields, up to their limits") {
  const std::vector<std::string> args = {"status", "--json", "", "--addr", "192.0.2.7"};
  const auto command =
      std::get<PluginCommand>(decoded(encoded(PluginCommand{"resend", args})).message);
  CHECK(command.plugin == "resend");
  CHECK(command.args == args);
  // The hand-built body is the encoder's: the layout is the one proto/README.md gives.
  CHECK(encoded(PluginCommand{"resend", args}, 3) ==
        raw_datagram(MessageType::plugin_command, plugin_command_body("resend", args)));

  const PluginCommand largest{
      std::string(max_plugin_name, 'p'),
      std::vector<std::string>(max_plugin_args, std::string(max_plugin_arg, 'a'))};
  const auto big = std::get<PluginCommand>(decoded(encoded(largest)).message);
  CHECK(big.plugin == largest.plugin);
  CHECK(big.args == largest.args);
  const auto no_args = std::get<PluginCommand>(decoded(encoded(PluginCommand{"p", {}})).message);
  CHECK(no_args.plugin == "p");
  CHECK(no_args.args.empty());

  const PluginCommandReply longest{true, std::string(max_plugin_reply_text, 'x')};
  const auto reply = std::get<PluginCommandReply>(decoded(encoded(longest)).message);
  CHECK(reply.ok);
  CHECK(reply.text == longest.text);
  const auto refusal = std::get<PluginCommandReply>(
      decoded(encoded(PluginCommandReply{false, "no plugin"})).message);
  CHECK_FALSE(refusal.ok);
  CHECK(refusal.text == "no plugin");
}

TEST_CASE("a plugin command over its limits is refused by the decoder with its reason") {
  using E = ProtocolError;
  const auto command = [](const std::string& plugin, const std::vector<std::string>& args) {
    return raw_datagram(MessageType::plugin_command, plugin_command_body(plugin, args));
  };
  auto truncated = encoded(PluginCommand{"resend", {"wakeup", "--iface", "ppp0"}});
  truncated.pop_back();  // the last argument runs past the body
  truncated[7] -= 1;
  auto lying_count = encoded(PluginCommand{"resend", {}});
  lying_count.back() = 3;  // three arguments, no bytes
  auto huge_count = encoded(PluginCommand{"resend", {}});
  huge_count[huge_count.size() - 4] = 0xff;  // 4 billion arguments
  std::vector<std::uint8_t> bad_bool;
  bad_bool.push_back(2);
  put_string(bad_bool, "text");
  auto short_reply = encoded(PluginCommandReply{true, "text"});
  short_reply[header_size + 2] = 5;  // claims five bytes of text, four follow

  const std::vector<std::pair<std::vector<std::uint8_t>, E>> cases = {
      {command("resend", std::vector<std::string>(max_plugin_args + 1, "a")), E::oversized},
      {command("resend", {"ok", std::string(max_plugin_arg + 1, 'a')}), E::oversized},
      {command(std::string(max_plugin_name + 1, 'p'), {}), E::oversized},
      {command("", {"wakeup"}), E::bad_value},
      {truncated, E::truncated_field},
      {lying_count, E::truncated_field},
      {huge_count, E::oversized},
      {raw_datagram(MessageType::plugin_command, {}), E::truncated_field},
      {raw_datagram(MessageType::plugin_command_reply, bad_bool), E::bad_value},
      {short_reply, E::truncated_field},
  };
  for (const auto& [bytes, expected] : cases) {
    const std::error_code error = decode_error(bytes);
    INFO("expected " << make_error_code(expected).message() << ", got " << error.message());
    CHECK(error == expected);
  }
}

TEST_CASE("a plugin command over its limits is refused by the encoder") {
  std::vector<std::uint8_t> out;
  CHECK(encode(PluginCommand{"", {"wakeup"}}, 0, out) == ProtocolError::bad_value);
  CHECK(encode(PluginCommand{std::string(max_plugin_name + 1, 'p'), {}}, 0, out) ==
        ProtocolError::oversized);
  CHECK(encode(PluginCommand{"resend", std::vector<std::string>(max_plugin_args + 1, "a")}, 0,
               out) == ProtocolError::oversized);
  CHECK(encode(PluginCommand{"resend", {std::string(max_plugin_arg + 1, 'a')}}, 0, out) ==
        ProtocolError::oversized);
  CHECK(encode(PluginCommandReply{true, std::string(max_plugin_reply_text + 1, 'x')}, 0, out) ==
        ProtocolError::oversized);
}

TEST_CASE("channel messages refuse empty names and undefined rights") {
  CHECK(decode_error(raw_datagram(MessageType::channel_join, {0, 0, 1})) ==
        ProtocolError::bad_value);
  std::vector<std::uint8_t> join;
  put_string(join, "lab");
  join.push_back(0x08);  // no such right
  CHECK(decode_error(raw_datagram(MessageType::channel_join, join)) == ProtocolError::bad_value);
  std::vector<std::uint8_t> long_name;
  put_string(long_name, std::string(max_channel_name + 1, 'a'));
  long_name.push_back(1);
  CHECK(decode_error(raw_datagram(MessageType::channel_join, long_name)) ==
        ProtocolError::oversized);
  std::vector<std::uint8_t> out;
  CHECK(encode(ChannelJoin{"", 0}, 1, out) == ProtocolError::bad_value);
  CHECK(valid_channel_name("lab-1.x_y"));
  CHECK_FALSE(valid_channel_name("Lab"));
  CHECK_FALSE(valid_channel_name("a/b"));
  CHECK_FALSE(valid_channel_name(""));
}

TEST_CASE("frames appended one by one make a CHANNEL_FRAMES up to the datagram's limit") {
  std::vector<std::uint8_t> datagram;
  const std::vector<std::uint8_t> frame(1500, 0xab);
  REQUIRE_FALSE(append_frame(datagram, 9, 1, frame));
  REQUIRE_FALSE(append_frame(datagram, 9, 2, payload));
  const auto d = decoded(datagram);
  const auto& frames = std::get<ChannelFrames>(d.message);
  CHECK(frames.channel_id == 9);
  REQUIRE(frames.frames.size() == 2);
  CHECK(frames.frames[0].from_member == 1);
  CHECK(frames.frames[0].frame.size() == 1500);
  CHECK(std::vector<std::uint8_t>(frames.frames[1].frame.begin(), frames.frames[1].frame.end()) ==
        payload);
  std::size_t appended = 2;
  while (!append_frame(datagram, 9, 1, frame)) ++appended;
  CHECK(datagram.size() + 1500 + 8 > max_datagram);  // full: the next frame did not fit
  CHECK(datagram.size() <= max_datagram);
  CHECK(std::get<ChannelFrames>(decoded(datagram).message).frames.size() == appended);
  const std::vector<std::uint8_t> too_big(max_frame + 1, 0);
  std::vector<std::uint8_t> fresh;
  CHECK(append_frame(fresh, 9, 1, too_big) == ProtocolError::oversized);
}

TEST_CASE("packets appended one by one make a PACKET, then a PACKET_BATCH") {
  const auto all = samples();
  const Packet& first = std::get<Packet>(all[5]);
  const Packet& second = std::get<PacketBatch>(all.back()).packets[1];
  std::vector<std::uint8_t> datagram;
  REQUIRE_FALSE(append_to_batch(datagram, first));
  CHECK(datagram == encoded(first, 0));  // a lone packet is a plain PACKET
  REQUIRE_FALSE(append_to_batch(datagram, second));
  CHECK(datagram == encoded(PacketBatch{{first, second}}, 0));
  const Decoded d = decoded(datagram);
  const auto& packets = std::get<PacketBatch>(d.message).packets;
  REQUIRE(packets.size() == 2);
  CHECK(std::vector<std::uint8_t>(packets[0].payload.begin(), packets[0].payload.end()) == payload);
  CHECK(packets[1].gid == 7U);
}

TEST_CASE("a full batch refuses the next packet and keeps what it has") {
  Packet big;
  const std::vector<std::uint8_t> bytes(max_payload, 0x45);
  big.payload = bytes;
  std::vector<std::uint8_t> datagram;
  std::size_t packets = 0;
  while (!append_to_batch(datagram, big)) ++packets;
  CHECK(packets == 3);  // four would pass max_datagram
  CHECK(datagram.size() <= max_datagram);
  CHECK(std::get<PacketBatch>(decoded(datagram).message).packets.size() == 3);

  Packet small;
  datagram.clear();
  packets = 0;
  while (!append_to_batch(datagram, small)) ++packets;
  CHECK(packets == 4096);  // the list limit
  CHECK(std::get<PacketBatch>(decoded(datagram).message).packets.size() == 4096);
}

TEST_CASE("oversized messages are refused by the encoder") {
  std::vector<std::uint8_t> out;
  const std::vector<std::uint8_t> big(max_payload + 1, 0);
  CHECK(encode(Verdict{1, VerdictCode::accept, std::nullopt, big}, 0, out) ==
        ProtocolError::oversized);
  CHECK(encode(Error{ErrorCode::internal, std::string(5000, 'x')}, 0, out) ==
        ProtocolError::oversized);
}

TEST_CASE("truncations and byte flips of valid datagrams never crash the decoder") {
  std::mt19937 random(12345);
  std::size_t rejected = 0;
  std::size_t total = 0;
  for (const Message& message : samples()) {
    const auto bytes = encoded(message);
    for (std::size_t length = 0; length < bytes.size(); ++length) {
      const std::vector<std::uint8_t> cut(bytes.begin(),
                                          bytes.begin() + static_cast<std::ptrdiff_t>(length));
      CHECK(decode_error(cut));  // every proper prefix is invalid
      ++total;
    }
    for (int round = 0; round < 5000; ++round) {
      auto mutated = bytes;
      const int flips = 1 + static_cast<int>(random() % 4);
      for (int f = 0; f < flips; ++f)
        mutated[random() % mutated.size()] = static_cast<std::uint8_t>(random());
      Decoded out;
      rejected += decode(mutated, out) ? 1 : 0;
      ++total;
    }
  }
  CHECK(total > 80000);
  CHECK(rejected > 0);
}

TEST_CASE("error codes have readable messages") {
  CHECK(make_error_code(ProtocolError::length_mismatch).message() ==
        "body length does not match the datagram");
  CHECK(std::string(protocol_category().name()) == "pktbroker.protocol");
}

TEST_CASE("HELLO and WELCOME carry features only when asked, and older peers still decode") {
  const auto plain = encoded(Hello{"old", role_verdict, 1, 1});
  const auto asking = encoded(Hello{"new", role_verdict, 1, 1, feature_packet_batch});
  CHECK(asking.size() == plain.size() + 4);  // a client that asks for nothing sends what it did
  Decoded decoded;
  REQUIRE_FALSE(decode(plain, decoded));
  CHECK(std::get<Hello>(decoded.message).features == 0);
  REQUIRE_FALSE(decode(asking, decoded));
  CHECK(std::get<Hello>(decoded.message).features == feature_packet_batch);

  const auto old_welcome = encoded(Welcome{1, 9, role_verdict, "0.1.0"});
  REQUIRE_FALSE(decode(old_welcome, decoded));
  CHECK(std::get<Welcome>(decoded.message).features == 0);
  REQUIRE_FALSE(decode(encoded(Welcome{1, 9, role_verdict, "0.1.0", 1}), decoded));
  CHECK(std::get<Welcome>(decoded.message).features == 1);

  auto zero_features = plain;  // a features word of 0 is sent as no word at all
  zero_features.insert(zero_features.end(), 4, 0);
  zero_features[7] += 4;
  CHECK(decode(zero_features, decoded) == make_error_code(ProtocolError::bad_value));

  auto short_features = asking;  // two of the four feature bytes
  short_features.erase(short_features.end() - 2, short_features.end());
  short_features[7] -= 2;
  CHECK(decode(short_features, decoded) == make_error_code(ProtocolError::truncated_field));
}

TEST_CASE("a Decoded reused for verdict batches reads each batch whole, and keeps its vector") {
  Decoded reused;
  REQUIRE_FALSE(decode(encoded(VerdictBatch{{Verdict{1, VerdictCode::accept, 5, {}},
                                             Verdict{2, VerdictCode::drop, std::nullopt, {}},
                                             Verdict{3, VerdictCode::pass, 9, {}}}}),
                       reused));
  const Verdict* storage = std::get<VerdictBatch>(reused.message).verdicts.data();
  REQUIRE_FALSE(
      decode(encoded(VerdictBatch{{Verdict{4, VerdictCode::drop, std::nullopt, {}}}}), reused));
  const auto& batch = std::get<VerdictBatch>(reused.message);
  REQUIRE(batch.verdicts.size() == 1);
  CHECK(batch.verdicts[0].token == 4);
  CHECK(batch.verdicts[0].verdict == VerdictCode::drop);
  CHECK_FALSE(batch.verdicts[0].mark);
  CHECK(batch.verdicts.data() == storage);  // no new allocation
  REQUIRE_FALSE(decode(encoded(Ping{}), reused));
  REQUIRE(std::holds_alternative<Ping>(reused.message));
  REQUIRE_FALSE(decode(encoded(VerdictBatch{}), reused));
  CHECK(std::get<VerdictBatch>(reused.message).verdicts.empty());
}
