#include "plugins/http/http_request.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace pktbroker::plugins::http;

namespace {

HeadStatus parse(std::string_view text, RequestHead& head) {
  return parse_request_head({reinterpret_cast<const std::uint8_t*>(text.data()), text.size()},
                            head);
}

}  // namespace

TEST_CASE("a request head yields method, path and the normalized Host") {
  RequestHead head;
  REQUIRE(parse("GET /index.html?q=1 HTTP/1.1\r\nUser-Agent: t\r\nHOST: WWW.Example.com:8080"
                "\r\nAccept: */*\r\n\r\nbody",
                head) == HeadStatus::complete);
  CHECK(head.method == "GET");
  CHECK(head.path == "/index.html?q=1");
  CHECK(head.version == "HTTP/1.1");
  CHECK(head.host == "www.example.com");
  REQUIRE(parse("POST /x HTTP/1.0\n\n", head) == HeadStatus::complete);  // bare LF, no Host
  CHECK(head.host.empty());
  CHECK(normalize_host(" [::1]:80 ") == "::1");
  CHECK(normalize_host("example.com.") == "example.com");
}

TEST_CASE("every prefix of a head is incomplete, never a wrong answer") {
  const std::string whole = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
  for (std::size_t size = 0; size < whole.size(); ++size) {
    RequestHead head;
    INFO(size);
    CHECK(parse(std::string_view(whole).substr(0, size), head) == HeadStatus::incomplete);
  }
}

TEST_CASE("streams that are not HTTP requests are recognized early") {
  RequestHead head;
  CHECK(parse("\x16\x03\x01\x02\x00", head) == HeadStatus::not_http);  // a TLS record
  CHECK(parse("HTTP/1.1 200 OK\r\n\r\n", head) == HeadStatus::not_http);
  CHECK(parse("GET /\r\n\r\n", head) == HeadStatus::not_http);
  CHECK(parse("GET / HTTP/1.1\r\nno colon here\r\n\r\n", head) == HeadStatus::bad_header);
  CHECK(parse("GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n", head) == HeadStatus::bad_header);
}
