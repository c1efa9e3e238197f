#include "broker/telemetry/event_log.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using pktbroker::EventLog;
using pktbroker::EventsConfig;
using pktbroker::PacketEvent;

namespace {

std::vector<std::string> lines_of(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

struct TempDir {
  std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("pktbroker-events-" + std::to_string(::getpid()));
  TempDir() { std::filesystem::create_directories(path); }
  ~TempDir() { std::filesystem::remove_all(path); }
};

PacketEvent udp_drop() {
  PacketEvent event{.type = "drop", .decided_by = "rule", .rule = "no-dns"};
  event.packet.queue = 2;
  event.packet.packet_id = 17;
  event.packet.parsed = true;
  event.packet.src.family = 4;
  event.packet.src.bytes = {10, 0, 0, 1};
  event.packet.dst.family = 4;
  event.packet.dst.bytes = {10, 0, 0, 2};
  event.packet.protocol = 17;
  event.packet.has_ports = true;
  event.packet.src_port = 41000;
  event.packet.dst_port = 53;
  event.packet.length = 60;
  event.fields = {{"dns.qname", "blocked.test"},
                  {"dns.qtype", "1"},
                  {"ftp.command", "RETR"},
                  {"src_ip.x", "a plugin may not add a second src_ip"}};
  return event;
}

}  // namespace

TEST_CASE("json strings survive whatever bytes a packet carried") {
  CHECK(pktbroker::json_string("plain") == "\"plain\"");
  CHECK(pktbroker::json_string("a\"b\\c") == "\"a\\\"b\\\\c\"");
  CHECK(pktbroker::json_string(std::string("\n\x01\x7f", 3)) == "\"\\u000a\\u0001\\u007f\"");
  // Not UTF-8 (a DNS label may hold any byte): each byte escaped, the line stays valid JSON.
  CHECK(pktbroker::json_string("\xff\xc3(") == "\"\\u00ff\\u00c3(\"");
  CHECK(pktbroker::json_string(std::string("\0", 1)) == "\"\\u0000\"");
}

TEST_CASE("a packet event reads like Suricata's EVE, with pktbroker's fields and the plugins'") {
  const auto when = std::chrono::system_clock::time_point(
      std::chrono::microseconds(1'796'108'400'123'456));  // 2026-12-01T07:00:00.123456Z
  const std::string line = pktbroker::format_packet_event(when, udp_drop());
  CHECK(line.starts_with(
      R"({"timestamp":"2026-12-01T07:00:00.123456+0000","event_type":"drop","flow_id":)"));
  CHECK(
      line.find(
          R"(,"src_ip":"10.0.0.1","src_port":41000,"dest_ip":"10.0.0.2","dest_port":53,"proto":"UDP",)") !=
      std::string::npos);
  CHECK(
      line.find(
          R"("pktbroker":{"queue":2,"packet_id":17,"length":60,"mark":0,"decided_by":"rule","rule":"no-dns"})") !=
      std::string::npos);
  CHECK(
      line.ends_with(R"(,"dns":{"rrname":"blocked.test","rrtype":"1"},"ftp":{"command":"RETR"},)"
                     R"("pktbroker_fields":{"src_ip.x":"a plugin may not add a second src_ip"}})"));
  // Both directions of a flow share its flow_id.
  PacketEvent reply = udp_drop();
  std::swap(reply.packet.src, reply.packet.dst);
  std::swap(reply.packet.src_port, reply.packet.dst_port);
  const auto flow_id = [](const std::string& text) {
    const auto at = text.find("\"flow_id\":");
    return text.substr(at, text.find(',', at) - at);
  };
  CHECK(flow_id(pktbroker::format_packet_event(when, reply)) == flow_id(line));
}

TEST_CASE("the event log writes each event once, and only as many a second as allowed") {
  TempDir dir;
  const auto file = dir.path / "eve.json";
  EventsConfig config;
  config.file = file.string();
  config.rate_limit = 5;
  {
    EventLog log(config);
    log.start();
    for (int i = 0; i < 50; ++i) log.packet(udp_drop());
    const auto counters = log.counters();
    CHECK(counters.suppressed >= 44);  // 5 tokens, and what a few milliseconds refill
    CHECK(counters.lost == 0);
  }  // the destructor writes what is queued
  const auto lines = lines_of(file);
  CHECK(lines.size() >= 5);
  CHECK(lines.size() <= 6);
  for (const auto& line : lines) CHECK(line.find("\"event_type\":\"drop\"") != std::string::npos);
}

TEST_CASE("a writer that falls behind loses events past the queue's bound, counted") {
  TempDir dir;
  const auto file = dir.path / "eve.json";
  EventsConfig config;
  config.file = file.string();
  config.rate_limit = 10'000'000;  // the bound, not the rate limit, is what this tries
  {
    EventLog log(config);  // not started: nothing drains the queue
    for (int i = 0; i < 70'000; ++i) log.packet(udp_drop());
    const auto counters = log.counters();
    CHECK(counters.lost == 70'000 - 65'536);
    CHECK(counters.suppressed == 0);
  }  // what was queued is still written
  CHECK(lines_of(file).size() == 65'536);
}

TEST_CASE("after reopen() the events go to a new file where the old one was") {
  TempDir dir;
  const auto file = dir.path / "eve.json";
  EventsConfig config;
  config.file = file.string();
  EventLog log(config);
  log.start();
  log.packet(udp_drop());
  for (int i = 0; i < 500 && lines_of(file).empty(); ++i) ::usleep(10'000);
  std::filesystem::rename(file, dir.path / "eve.json.1");  // what logrotate does
  log.reopen();
  log.other(pktbroker::EventType::reload, "reload", R"("pktbroker":{"reload":{"ok":true}})");
  for (int i = 0; i < 500 && lines_of(file).empty(); ++i) ::usleep(10'000);
  REQUIRE(lines_of(dir.path / "eve.json.1").size() == 1);
  const auto lines = lines_of(file);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find(R"("event_type":"reload","pktbroker":{"reload":{"ok":true}}})") !=
        std::string::npos);
  CHECK(log.counters().written == 2);
}

TEST_CASE("an event log that cannot be opened is an error at start") {
  EventsConfig config;
  config.file = "/nonexistent-dir/eve.json";
  CHECK_THROWS_AS(EventLog(config), std::system_error);
}

TEST_CASE("types not asked for are not logged") {
  TempDir dir;
  EventsConfig config;
  config.file = (dir.path / "eve.json").string();
  config.types = pktbroker::event_type_bit(pktbroker::EventType::drop);
  {
    EventLog log(config);
    log.start();
    CHECK(log.wants(pktbroker::EventType::drop));
    CHECK_FALSE(log.wants(pktbroker::EventType::accept));
    log.other(pktbroker::EventType::session, "session", R"("pktbroker":{})");
    log.other(pktbroker::EventType::drop, "drop", R"("pktbroker":{})");
  }
  const auto lines = lines_of(dir.path / "eve.json");
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("\"event_type\":\"drop\"") != std::string::npos);
}
