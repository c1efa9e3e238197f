// The shipped plugins on crafted traffic an attacker controls: what each must refuse to
// believe, publish or let through unseen (the trust issue, items 8-10).
#include "test/unit/plugins/plugin_driver.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace pktbroker;
using namespace pktbroker::test;

namespace {

std::string dns_name(const std::string& dotted) {
  std::string out;
  std::size_t start = 0;
  while (start < dotted.size()) {
    const auto end = std::min(dotted.find('.', start), dotted.size());
    out += static_cast<char>(end - start);
    out += dotted.substr(start, end - start);
    start = end + 1;
  }
  return out + '\0';
}

/// A query (or, with `answer`, its response giving out 10.9.9.9) for name, type A.
std::string dns_message(std::uint16_t id, const std::string& name, bool answer) {
  std::string m = {static_cast<char>(id >> 8),
                   static_cast<char>(id),
                   answer ? '\x81' : '\x01',
                   answer ? '\x80' : '\x00',
                   0,
                   1,
                   0,
                   answer ? '\x01' : '\x00',
                   0,
                   0,
                   0,
                   0};
  m += dns_name(name);
  m += std::string("\0\x01\0\x01", 4);
  if (answer) m += std::string("\xc0\x0c\0\x01\0\x01\0\0\x0e\x10\0\x04\x0a\x09\x09\x09", 16);
  return m;
}

IpAddress given_out() {
  IpAddress address;
  address.family = 4;
  address.bytes = {10, 9, 9, 9};
  return address;
}

}  // namespace

TEST_CASE("dns: only the server's answer to a query seen on its flow names an address") {
  PluginDriver driver(shipped_plugins({"dns"}));
  const auto now = Clock::now();
  // Unsolicited: a message with the response bit sent towards port 53.
  driver.send(datagram(40000, 53, dns_message(7, "bank.test", true)));
  CHECK(driver.names->lookup(given_out(), now).empty());
  // A query, then answers that do not match it: another id, another name, from the client.
  driver.send(datagram(40002, 53, dns_message(8, "www.test", false)));
  driver.send(datagram(53, 40002, dns_message(9, "www.test", true), true));
  driver.send(datagram(53, 40002, dns_message(8, "bank.test", true), true));
  driver.send(datagram(40002, 53, dns_message(8, "www.test", true)));
  CHECK(driver.names->lookup(given_out(), now).empty());
  CHECK(driver.counter("dns", "unsolicited_answer") == 4);
  // The real answer, once; the same answer again is unsolicited.
  driver.send(datagram(53, 40002, dns_message(8, "WWW.test", true), true));
  CHECK(driver.names->lookup(given_out(), now) == std::vector<std::string>{"www.test"});
  driver.send(datagram(53, 40002, dns_message(8, "www.test", true), true));
  CHECK(driver.counter("dns", "unsolicited_answer") == 5);
  CHECK(driver.counter("dns", "addresses") == 1);
}

namespace {

struct FtpControl {
  PluginDriver& driver;
  std::uint32_t client_seq = 1000;
  std::uint32_t server_seq = 5000;

  Inspection client(std::string_view line) {
    const Inspection result = driver.send(segment(40000, 21, client_seq, line));
    client_seq += static_cast<std::uint32_t>(line.size());
    return result;
  }
  Inspection server(std::string_view line) {
    const Inspection result = driver.send(segment(21, 40000, server_seq, line, 0x18, true));
    server_seq += static_cast<std::uint32_t>(line.size());
    return result;
  }
};

}  // namespace

TEST_CASE("ftp: PORT, EPRT and 227 name the control connection's own hosts, or are refused") {
  PluginDriver driver(shipped_plugins({"ftp"}));
  FtpControl control{driver};
  driver.send(segment(40000, 21, 999, "", 0x02));
  control.client("PORT 10,0,0,99,200,10\r\n");                          // bounce: a third host
  control.client("EPRT |1|192.168.1.1|51210|\r\n");                     // the same with EPRT
  control.client("EPRT |2|fd00::1|51210|\r\n");                         // another family
  control.server("227 Entering Passive Mode (10,0,0,99,200,20).\r\n");  // the server lies
  CHECK(driver.counter("ftp", "foreign_address") == 4);
  CHECK(driver.inspector.counters().pending_expectations == 0);
  control.client("PORT 10,0,0,1,200,10\r\n");
  control.server("227 Entering Passive Mode (10,0,0,2,200,20).\r\n");
  control.server("229 Entering Extended Passive Mode (|||51230|)\r\n");
  CHECK(driver.inspector.counters().pending_expectations == 3);
  CHECK(driver.counter("ftp", "data_connections") == 3);
}

TEST_CASE("ftp: a control connection keeps at most four announcements outstanding") {
  PluginDriver driver(shipped_plugins({"ftp"}));
  FtpControl control{driver};
  driver.send(segment(40000, 21, 999, "", 0x02));
  for (int port = 1; port <= 6; ++port) {
    control.server("229 Entering Extended Passive Mode (|||5000" + std::to_string(port) + "|)\r\n");
  }
  CHECK(driver.inspector.counters().pending_expectations == 4);
  CHECK(driver.counter("ftp", "expectations_over_limit") == 2);
  // A data connection to one of them uses it: room for one more.
  const Inspection data = driver.send(segment(50000, 50002, 7000, "", 0x02));
  REQUIRE(data.flow != nullptr);
  CHECK(data.flow->parent_id != 0);
  control.server("229 Entering Extended Passive Mode (|||50007|)\r\n");
  control.server("229 Entering Extended Passive Mode (|||50008|)\r\n");
  CHECK(driver.inspector.counters().pending_expectations == 4);
  CHECK(driver.counter("ftp", "expectations_over_limit") == 3);
}

namespace {

/// One client connection to port 80 (or 443), segment by segment.
struct Connection {
  PluginDriver& driver;
  std::uint16_t port = 80;
  std::uint16_t client_port = 40000;
  std::uint32_t seq = 1000;

  void open() { driver.send(segment(client_port, port, seq - 1, "", 0x02)); }
  Inspection send(std::string_view data) {
    const Inspection result = driver.send(segment(client_port, port, seq, data));
    seq += static_cast<std::uint32_t>(data.size());
    return result;
  }
  Inspection send_at(std::uint32_t at, std::string_view data) {
    return driver.send(segment(client_port, port, at, data));
  }
};

}  // namespace

TEST_CASE("http: absolute-form targets and encoded or dotted paths publish the path served") {
  PluginDriver driver(shipped_plugins({"http"}));
  std::uint16_t client_port = 41000;
  const auto request = [&](const std::string& head) {
    Connection c{driver, 80, ++client_port};
    c.open();
    return c.send(head);
  };
  Inspection r =
      request("GET http://Admin.Example:8080/admin?x=1 HTTP/1.1\r\nHost: ok.test\r\n\r\n");
  CHECK(PluginDriver::field(r, "http.path") == "/admin?x=1");
  CHECK(PluginDriver::field(r, "http.host") == "admin.example");  // the Host header is ignored
  for (const char* evasive : {"/%61dmin", "/%2e%2E/admin", "/x/../admin", "//admin", "/./admin/.",
                              "/public/..%2Fadmin", "/%2Fadmin"}) {
    INFO(evasive);
    r = request(std::string("GET ") + evasive + " HTTP/1.1\r\nHost: ok.test\r\n\r\n");
    CHECK(PluginDriver::field(r, "http.path").starts_with("/admin"));
  }
  r = request("\r\nGET  /%7euser/a%2fb%3f HTTP/1.1\r\nHost: ok.test\r\n\r\n");
  CHECK(PluginDriver::field(r, "http.path") == "/~user/a/b%3F");
}

TEST_CASE(
    "http: a head over 4 KiB is read whole; one over the limit is published as an error "
    "and dropped") {
  PluginDriver driver(shipped_plugins({"http"}));
  const std::string padding = "X-Pad: " + std::string(1000, 'p') + "\r\n";
  Connection c{driver};
  c.open();
  std::string head = "GET /admin HTTP/1.1\r\n";
  for (int i = 0; i < 6; ++i) head += padding;
  head += "Host: ok.test\r\n\r\n";
  // In 1,400-byte segments: held until the last one, which is decided by the head.
  for (std::size_t at = 0; at < head.size(); at += 1400) {
    const Inspection r = c.send(std::string_view(head).substr(at, 1400));
    const bool last = at + 1400 >= head.size();
    CHECK(r.decision.action == (last ? PKTB_PASS : PKTB_HOLD));
  }
  CHECK(PluginDriver::field(c.send_at(c.seq, ""), "http.path") == "/admin");
  CHECK(PluginDriver::field(c.send_at(c.seq, ""), "http.host") == "ok.test");

  Connection big{driver, 80, 40001};
  big.open();
  std::string huge = "GET /admin HTTP/1.1\r\n";
  while (huge.size() < 40 * 1024) huge += padding;
  Inspection last;
  for (std::size_t at = 0; at < huge.size(); at += 1400) {
    last = big.send(std::string_view(huge).substr(at, 1400));
    if (last.decision.action == PKTB_DROP) break;
  }
  CHECK(last.decision.action == PKTB_DROP);
  CHECK(PluginDriver::field(last, "http.error") == "oversized_head");
  CHECK(PluginDriver::field(last, "http.path") == "/admin");
  CHECK(PluginDriver::field(last, "http.host").empty());
  CHECK(big.send("more").decision.action == PKTB_DROP);  // and so is the rest
  CHECK(driver.counter("http", "oversized_head") == 1);
}

TEST_CASE("http: a too long head passes with fail_open (still published)") {
  PluginDriver driver(
      shipped_plugins({"http"}, {{"fail_open", "true"}, {"max_head_bytes", "1024"}}));
  Connection c{driver};
  c.open();
  const Inspection r = c.send("GET /admin HTTP/1.1\r\nX: " + std::string(2000, 'x') + "\r\n\r\n");
  CHECK(r.decision.action == PKTB_PASS);
  CHECK(PluginDriver::field(r, "http.error") == "oversized_head");
  CHECK(PluginDriver::field(r, "http.path") == "/admin");
}

TEST_CASE("http: segments out of order are kept, held, and read in order") {
  PluginDriver driver(shipped_plugins({"http"}));
  Connection c{driver};
  c.open();
  // "GET /ad" comes last: before, "min HTTP/1.1..." passed unseen and "GET /ad" alone was
  // held until its deadline.
  const std::string first = "GET /ad";
  const std::string second = "min HTTP/1.1\r\nHost: ok.test\r\n\r\n";
  const Inspection early = c.send_at(c.seq + static_cast<std::uint32_t>(first.size()), second);
  CHECK(early.decision.action == PKTB_HOLD);
  CHECK(PluginDriver::field(early, "http.path") == "(none)");
  const Inspection filler = c.send(first);
  CHECK(filler.decision.action == PKTB_PASS);  // decided now, by the whole head
  CHECK(PluginDriver::field(filler, "http.path") == "/admin");
  CHECK(driver.counter("http", "out_of_order") == 1);
  // A body's segments may come in any order: the next head is still found.
  c.seq += static_cast<std::uint32_t>(second.size());
  c.send("POST /up HTTP/1.1\r\nHost: ok.test\r\nContent-Length: 6\r\n\r\n");
  CHECK(c.send_at(c.seq + 3, "def").decision.action == PKTB_PASS);
  c.send("abc");
  c.seq += 3;
  const Inspection next = c.send("GET /next HTTP/1.1\r\nHost: ok.test\r\n\r\n");
  CHECK(PluginDriver::field(next, "http.path") == "/next");
}

namespace {

void put16(std::string& b, std::size_t n) {
  b += static_cast<char>(n >> 8);
  b += static_cast<char>(n);
}

/// A ClientHello of about `size` bytes (a padding extension before the SNI), as records of at
/// most 16,384 bytes.
std::string big_client_hello(const std::string& sni, std::size_t size) {
  std::string body = {3, 3};
  body += std::string(32, '\x11');
  body += '\0';
  put16(body, 2);
  body += "\x13\x01";
  body += std::string("\x01\x00", 2);
  std::string extensions;
  const std::size_t pad = size - 100;
  put16(extensions, 21);  // padding
  put16(extensions, pad);
  extensions += std::string(pad, '\0');
  put16(extensions, 0);
  put16(extensions, sni.size() + 5);
  put16(extensions, sni.size() + 3);
  extensions += '\0';
  put16(extensions, sni.size());
  extensions += sni;
  put16(body, extensions.size());
  body += extensions;
  std::string message = {1, 0};
  put16(message, body.size());
  message += body;
  std::string records;
  for (std::size_t at = 0; at < message.size(); at += 16384) {
    const std::size_t n = std::min<std::size_t>(16384, message.size() - at);
    records += std::string("\x16\x03\x01", 3);
    put16(records, n);
    records += message.substr(at, n);
  }
  return records;
}

}  // namespace

TEST_CASE("tls: a ClientHello over 8 KiB, in one record or two, publishes its SNI") {
  for (const std::size_t size : {12'000, 16'300}) {
    PluginDriver driver(shipped_plugins({"tls"}));
    Connection c{driver, 443};
    c.open();
    const std::string hello = big_client_hello("Big.Example", size);
    Inspection r;
    for (std::size_t at = 0; at < hello.size(); at += 1400) {
      r = c.send(std::string_view(hello).substr(at, 1400));
    }
    INFO(size);
    CHECK(r.decision.action == PKTB_PASS);
    CHECK(PluginDriver::field(r, "tls.sni") == "big.example");
  }
}
