#include "plugins/dns/dns_message.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace pktbroker::plugins::dns;
using Bytes = std::vector<std::uint8_t>;

namespace {

Bytes name_bytes(const std::string& dotted) {
  Bytes out;
  std::size_t start = 0;
  while (start < dotted.size()) {
    const auto end = std::min(dotted.find('.', start), dotted.size());
    out.push_back(static_cast<std::uint8_t>(end - start));
    out.insert(out.end(), dotted.begin() + static_cast<long>(start),
               dotted.begin() + static_cast<long>(end));
    start = end + 1;
  }
  out.push_back(0);
  return out;
}

Bytes query(const std::string& name, std::uint16_t qtype = 1) {
  Bytes m = {0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
  const Bytes n = name_bytes(name);
  m.insert(m.end(), n.begin(), n.end());
  m.insert(m.end(),
           {static_cast<std::uint8_t>(qtype >> 8), static_cast<std::uint8_t>(qtype), 0, 1});
  return m;
}

/// A response to query(name) with one A record (compressed owner name) and one AAAA record.
Bytes response(const std::string& name) {
  Bytes m = query(name);
  m[2] = 0x81;
  m[3] = 0x80;
  m[7] = 2;  // ANCOUNT
  m.insert(m.end(), {0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 10, 1, 2, 3});
  m.insert(m.end(), {0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16});
  for (int i = 0; i < 16; ++i) m.push_back(static_cast<std::uint8_t>(i));
  return m;
}

}  // namespace

TEST_CASE("a query yields its name (lowercase) and type") {
  DnsMessage message;
  REQUIRE(parse_message(query("WWW.Example.com", 28), message) == DnsError::none);
  CHECK(message.id == 0xabcd);
  CHECK_FALSE(message.response);
  CHECK(message.qname == "www.example.com");
  CHECK(message.qtype == 28);
  CHECK(qtype_name(message.qtype) == "AAAA");
  CHECK(qtype_name(15) == "MX");
  CHECK(qtype_name(4242) == "4242");
  REQUIRE(parse_message(query(""), message) == DnsError::none);
  CHECK(message.qname == ".");
}

TEST_CASE("a response yields its address answers, through compression pointers") {
  DnsMessage message;
  REQUIRE(parse_message(response("host.test"), message) == DnsError::none);
  CHECK(message.response);
  REQUIRE(message.answers.size() == 2);
  CHECK(message.answers[0].name == "host.test");
  CHECK(message.answers[0].family == 4);
  CHECK(message.answers[0].address[0] == 10);
  CHECK(message.answers[0].address[3] == 3);
  CHECK(message.answers[0].ttl == 3600);
  CHECK(message.answers[1].family == 6);
  CHECK(message.answers[1].address[15] == 15);
}

TEST_CASE("every truncation of a valid message is reported, never read past") {
  for (const Bytes& whole : {query("a.b.example.org"), response("host.test")}) {
    for (std::size_t size = 0; size < whole.size(); ++size) {
      const Bytes part(whole.begin(), whole.begin() + static_cast<long>(size));
      DnsMessage message;
      INFO("size " << size);
      CHECK(parse_message(part, message) == DnsError::truncated);
    }
  }
}

TEST_CASE("pointer loops, forward pointers, bad labels and long names are rejected") {
  DnsMessage message;
  Bytes self = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1};
  CHECK(parse_message(self, message) == DnsError::pointer_loop);
  Bytes forward = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 14, 1, 'a', 0, 0, 1, 0, 1};
  CHECK(parse_message(forward, message) == DnsError::pointer_loop);
  // Two pointers chasing each other through the answer section.
  Bytes pair = response("x.test");
  pair.insert(pair.end(), {0xc0, static_cast<std::uint8_t>(pair.size() + 2), 0xc0,
                           static_cast<std::uint8_t>(pair.size())});
  pair[7] = 3;
  CHECK(parse_message(pair, message) == DnsError::pointer_loop);
  Bytes extended = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x41, 'a', 0, 0, 1, 0, 1};
  CHECK(parse_message(extended, message) == DnsError::bad_label);
  std::string longest;
  for (int i = 0; i < 5; ++i) longest += std::string(63, 'a') + ".";
  longest.pop_back();
  CHECK(parse_message(query(longest), message) == DnsError::name_too_long);
  Bytes no_question = {0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  CHECK(parse_message(no_question, message) == DnsError::no_question);
  CHECK(to_string(DnsError::pointer_loop) == "pointer_loop");
}
