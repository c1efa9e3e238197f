#include "plugins/tls/client_hello.hpp"
#include "test/unit/plugins/client_hello_builder.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace pktbroker::plugins::tls;
using Bytes = std::vector<std::uint8_t>;
using pktbroker::test::append16;
using pktbroker::test::client_hello;

namespace {

/// The handshake message split into records of at most `record_size` bytes.
Bytes records(const Bytes& message, std::size_t record_size) {
  Bytes out;
  for (std::size_t at = 0; at < message.size(); at += record_size) {
    const std::size_t n = std::min(record_size, message.size() - at);
    out.insert(out.end(), {22, 3, 1});
    append16(out, n);
    out.insert(out.end(), message.begin() + static_cast<long>(at),
               message.begin() + static_cast<long>(at + n));
  }
  return out;
}

}  // namespace

TEST_CASE("the SNI of a ClientHello, in one record or spread over several") {
  for (const std::size_t record_size : {16384, 100, 7}) {
    std::string name;
    INFO(record_size);
    CHECK(parse_client_hello(records(client_hello("WWW.Example.com"), record_size), name) ==
          HelloStatus::server_name);
    CHECK(name == "www.example.com");
  }
  std::string name;
  CHECK(parse_client_hello(records(client_hello(""), 16384), name) == HelloStatus::no_sni);
}

TEST_CASE("every prefix of a ClientHello is incomplete") {
  const Bytes whole = records(client_hello("a.test"), 50);
  for (std::size_t size = 0; size < whole.size(); ++size) {
    std::string name;
    INFO(size);
    CHECK(parse_client_hello({whole.data(), size}, name) == HelloStatus::incomplete);
  }
}

TEST_CASE("streams that are not a ClientHello are told apart from ones that are broken") {
  std::string name;
  const std::string http = "GET / HTTP/1.1\r\n";
  CHECK(parse_client_hello({reinterpret_cast<const std::uint8_t*>(http.data()), http.size()},
                           name) == HelloStatus::not_tls);
  Bytes server_hello = records(client_hello("a.test"), 16384);
  server_hello[5] = 2;
  CHECK(parse_client_hello(server_hello, name) == HelloStatus::malformed);
  Bytes bad_extension = records(client_hello("a.test"), 16384);
  bad_extension[bad_extension.size() - 11] = 0xff;  // the server name list's length
  CHECK(parse_client_hello(bad_extension, name) == HelloStatus::malformed);
  Bytes control_char = records(client_hello("a.test"), 16384);
  control_char.back() = '\n';
  CHECK(parse_client_hello(control_char, name) == HelloStatus::malformed);
}
