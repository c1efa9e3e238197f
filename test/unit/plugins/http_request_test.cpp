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

TEST_CASE("a head says how long it is and how its body ends") {
  RequestHead head;
  REQUIRE(parse("POST /u HTTP/1.1\r\nContent-Length: 12\r\n\r\nhello world!", head) ==
          HeadStatus::complete);
  CHECK(head.length == 40);  // up to the body
  CHECK(head.body == BodyKind::length);
  CHECK(head.content_length == 12);
  REQUIRE(parse("POST /u HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                head) == HeadStatus::complete);
  CHECK(head.body == BodyKind::chunked);  // chunked wins over Content-Length
  CHECK(head.content_length == 0);
  REQUIRE(parse("GET / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n", head) ==
          HeadStatus::complete);  // a repeated, equal length is fine
  CHECK(head.content_length == 3);
  REQUIRE(parse("GET / HTTP/1.1\r\n\r\n", head) == HeadStatus::complete);
  CHECK(head.body == BodyKind::none);
  REQUIRE(parse("POST / HTTP/1.1\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                head) == HeadStatus::complete);
  CHECK(head.body == BodyKind::chunked);  // Content-Length does not count then
  // Lengths a server and the plugin could read differently: the head is read (its fields
  // published) but what follows cannot be.
  for (const char* bad :
       {"Content-Length: 3\r\nContent-Length: 4", "Content-Length: -1", "Content-Length: 1 2",
        "Content-Length: 0x10", "Content-Length:", "Transfer-Encoding: gzip",
        "Transfer-Encoding: chunked, gzip", "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip",
        "Content-Length: 99999999999999999999"}) {
    INFO(bad);
    REQUIRE(parse("POST /p HTTP/1.1\r\n" + std::string(bad) + "\r\n\r\n", head) ==
            HeadStatus::complete);
    CHECK(head.path == "/p");
    CHECK(head.body == BodyKind::unknown);
  }
}

namespace {

// Feeds `body` to a chunked reader `step` bytes at a time; returns the bytes it consumed.
std::size_t consumed_by_chunked(std::string_view body, std::size_t step, ChunkedBody& reader) {
  reader.start();
  std::size_t total = 0;
  for (std::size_t at = 0; at < body.size() && reader.active(); at += step) {
    const std::string_view part = body.substr(at, step);
    const std::size_t used =
        reader.consume({reinterpret_cast<const std::uint8_t*>(part.data()), part.size()});
    total += used;
    if (used < part.size()) break;
  }
  return total;
}

}  // namespace

TEST_CASE("a chunked body is followed to its end, however it is split") {
  const std::string body = "5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n";
  const std::string next = "GET /next HTTP/1.1\r\n\r\n";
  for (std::size_t step = 1; step <= body.size() + next.size(); ++step) {
    INFO("step " << step);
    ChunkedBody reader{};
    CHECK(consumed_by_chunked(body + next, step, reader) == body.size());
    CHECK(reader.state == ChunkedBody::State::off);
  }
  ChunkedBody reader{};
  CHECK(consumed_by_chunked("0\r\n\r\n", 1, reader) == 5);  // no data, no trailers
  CHECK(reader.state == ChunkedBody::State::off);
}

TEST_CASE("a malformed chunked body stops the reader") {
  const std::string long_extension = "5;" + std::string(5000, 'x');
  const std::string long_trailer = "0\r\n" + std::string(5000, 'x');
  for (const std::string& bad :
       {std::string("5\r\nhelloXX"), std::string("zz\r\n"), std::string("ffffffffffffffffff\r\n"),
        long_extension, long_trailer}) {
    INFO(bad.substr(0, 20));
    ChunkedBody reader{};
    consumed_by_chunked(bad, 1, reader);
    CHECK(reader.state == ChunkedBody::State::failed);
  }
}
