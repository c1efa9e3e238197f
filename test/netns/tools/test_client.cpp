// A scriptable libpktbroker client for the integration tests. Prints one line per event:
//   ready id=SUBSCRIPTION session=ID     packet token=T mark=M sport=S dport=D len=L
//   error code=C text=...                 done packets=N
// Options (all --key=value): socket, name, roles (bits), features (HELLO's feature bits; 0: no
// PACKET_BATCH, as an older client), mode (verdict|observe),
// clash (exclusive|chain|balance), priority, selector, verdict (accept|drop|repeat|pass|none),
// set-mark, timeout-ms, fallback (accept|drop), count (exit after N packets),
// die-after (exit at once, without verdicts, after N packets), stall (never read),
// foreign-token (send a verdict for this token first), batch (read up to N packets at a time
// with next_packets and answer them with one verdicts call; batch-delay-ms waits before each
// read so packets pile up), rewrite-dport (send the packet back to this UDP port instead:
// a replacement that moves it), uppercase (upper-case the UDP payload:
// a replacement-payload verdict), quiet (no per-packet lines), bad-payload (answer with a
// malformed replacement), raw (send these hex bytes as a
// datagram and print the answer).
#include "pktbroker/client.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>

using namespace pktbroker;

namespace {

std::map<std::string, std::string> options;

std::string option(const std::string& key, const std::string& fallback = "") {
  const auto found = options.find(key);
  return found == options.end() ? fallback : found->second;
}

long number(const std::string& key, long fallback) {
  const auto text = option(key);
  return text.empty() ? fallback : std::strtol(text.c_str(), nullptr, 0);
}

proto::VerdictCode verdict_code(const std::string& name) {
  if (name == "drop") return proto::VerdictCode::drop;
  if (name == "repeat") return proto::VerdictCode::repeat;
  if (name == "pass") return proto::VerdictCode::pass;
  return proto::VerdictCode::accept;
}

void say(const char* format, auto... args) {
  std::printf(format, args...);
  std::printf("\n");
  std::fflush(stdout);
}

// Sends raw bytes over a fresh connection and reports what the broker answers.
int send_raw(const std::string& hex) {
  std::vector<std::uint8_t> bytes;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes.push_back(static_cast<std::uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  const int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, option("socket").c_str(), sizeof address.sun_path - 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) return 1;
  send(fd, bytes.data(), bytes.size(), 0);
  std::vector<std::uint8_t> reply(proto::max_datagram);
  const ssize_t size = recv(fd, reply.data(), reply.size(), 0);
  proto::Decoded decoded;
  if (size > 0 &&
      !proto::decode(std::span(reply.data(), static_cast<std::size_t>(size)), decoded)) {
    if (const auto* error = std::get_if<proto::Error>(&decoded.message)) {
      say("error code=%d text=%s", static_cast<int>(error->code), error->text.c_str());
    }
  }
  const ssize_t after = recv(fd, reply.data(), reply.size(), 0);
  say("closed=%d", after == 0 ? 1 : 0);
  close(fd);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (!arg.starts_with("--")) continue;
    const auto equals = arg.find('=');
    options[arg.substr(2, equals - 2)] = equals == std::string::npos ? "1" : arg.substr(equals + 1);
  }
  if (!option("raw").empty()) return send_raw(option("raw"));

  Client client;
  const auto roles =
      static_cast<std::uint8_t>(number("roles", proto::role_verdict | proto::role_observe));
  const auto features = static_cast<std::uint32_t>(number("features", proto::feature_packet_batch));
  if (const auto error =
          client.connect(option("socket"), option("name", "test"), roles, features)) {
    say("error code=%d text=%s connect=%s", static_cast<int>(client.last_error().code),
        client.last_error().text.c_str(), error.message().c_str());
    return 1;
  }
  proto::Subscribe request;
  request.name = option("name", "test");
  request.selector = option("selector");
  request.mode = option("mode") == "observe" ? proto::SubscriptionMode::observe
                                             : proto::SubscriptionMode::verdict;
  const std::string clash = option("clash", "exclusive");
  request.clash = clash == "chain"     ? proto::Clash::chain
                  : clash == "balance" ? proto::Clash::balance
                                       : proto::Clash::exclusive;
  request.priority = static_cast<std::int32_t>(number("priority", 0));
  request.timeout_ms = static_cast<std::uint32_t>(number("timeout-ms", 1000));
  request.fallback = verdict_code(option("fallback", "accept"));
  std::uint32_t id = 0;
  if (const auto error = client.subscribe(request, id)) {
    say("error code=%d text=%s", static_cast<int>(client.last_error().code),
        client.last_error().text.c_str());
    return 1;
  }
  say("ready id=%u session=%u", id, client.welcome().session_id);
  if (!option("stall").empty()) {
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  if (!option("foreign-token").empty()) {
    client.verdict(std::strtoull(option("foreign-token").c_str(), nullptr, 0),
                   proto::VerdictCode::drop);
  }
  const long count = number("count", -1);
  const long die_after = number("die-after", -1);
  const std::string verdict = option("verdict", "accept");
  const auto mark =
      options.count("set-mark") != 0
          ? std::optional<std::uint32_t>(static_cast<std::uint32_t>(number("set-mark", 0)))
          : std::nullopt;
  long packets = 0;
  if (const long batch = number("batch", 0); batch > 0) {
    std::vector<ReceivedPacket> received;
    std::vector<proto::Verdict> verdicts;
    std::size_t largest = 0;
    while (count < 0 || packets < count) {
      std::this_thread::sleep_for(std::chrono::milliseconds(number("batch-delay-ms", 0)));
      if (client.next_packets(received, static_cast<std::size_t>(batch),
                              static_cast<int>(number("idle-ms", -1)))) {
        break;
      }
      packets += static_cast<long>(received.size());
      largest = std::max(largest, received.size());
      verdicts.clear();
      for (const auto& p : received)
        verdicts.push_back({p.info().token, verdict_code(verdict), mark, {}});
      client.verdicts(verdicts);
    }
    say("done packets=%ld largest_batch=%zu", packets, largest);
    return 0;
  }
  ReceivedPacket packet;
  const long idle_ms = number("idle-ms", -1);
  while (count < 0 || packets < count) {
    // Without idle-ms, wake up now and then to report the broker's notices.
    const auto error = client.next_packet(packet, static_cast<int>(idle_ms < 0 ? 100 : idle_ms));
    for (const proto::Error& notice : client.take_notices()) {
      say("error code=%d text=%s", static_cast<int>(notice.code), notice.text.c_str());
    }
    if (error == ClientError::timeout && idle_ms < 0) continue;
    if (error) break;
    ++packets;
    if (!option("quiet").empty()) {  // benchmark mode: answer at once, print nothing
      client.verdict(packet.info().token, verdict_code(verdict), mark);
      continue;
    }
    PacketView view;
    (void)packet.parse(view);
    say("packet token=%llu mark=%u sport=%u dport=%u len=%u verdict_needed=%d",
        static_cast<unsigned long long>(packet.info().token), packet.info().mark, view.src_port,
        view.dst_port, packet.info().wire_length, packet.info().needs_verdict ? 1 : 0);
    if (die_after >= 0 && packets >= die_after) _exit(3);
    if (!packet.info().needs_verdict || verdict == "none") continue;
    if (!option("bad-payload").empty()) {  // four bytes that are no IP packet
      const std::uint8_t garbage[] = {0x45, 0, 0, 99};
      client.verdict(packet.info().token, proto::VerdictCode::accept, mark, garbage);
    } else if ((!option("uppercase").empty() || !option("rewrite-dport").empty()) &&
               view.has_ports) {
      std::vector<std::uint8_t> bytes(packet.payload().begin(), packet.payload().end());
      if (!option("uppercase").empty()) {
        for (std::size_t i = view.payload_offset; i < bytes.size(); ++i) {
          bytes[i] = static_cast<std::uint8_t>(std::toupper(bytes[i]));
        }
      } else {
        const auto port = static_cast<std::uint16_t>(number("rewrite-dport", 0));
        bytes[view.l4_offset + 2] = static_cast<std::uint8_t>(port >> 8);
        bytes[view.l4_offset + 3] = static_cast<std::uint8_t>(port & 0xff);
      }
      bytes[view.l4_offset + 6] = 0;  // UDP over IPv4: checksum 0 means none
      bytes[view.l4_offset + 7] = 0;
      client.verdict(packet.info().token, proto::VerdictCode::accept, mark, bytes);
    } else {
      client.verdict(packet.info().token, verdict_code(verdict), mark);
    }
  }
  say("done packets=%ld", packets);
  return 0;
}
