#include "plugins/ftp/ftp_line.hpp"

#include <catch2/catch.hpp>

using namespace pktbroker::plugins::ftp;

TEST_CASE("passive replies announce where the server listens") {
  DataEndpoint endpoint;
  REQUIRE(parse_line("227 Entering Passive Mode (127,0,0,1,156,64).", true, endpoint) ==
          Announcement::passive);
  CHECK(endpoint.family == 4);
  CHECK(endpoint.address[0] == 127);
  CHECK(endpoint.address[3] == 1);
  CHECK(endpoint.port == 156 * 256 + 64);
  REQUIRE(parse_line("229 Entering Extended Passive Mode (|||40005|)", true, endpoint) ==
          Announcement::extended_passive);
  CHECK(endpoint.port == 40005);
  CHECK(parse_line("227 Entering Passive Mode (127,0,0,1,256,1)", true, endpoint) ==
        Announcement::malformed);
  CHECK(parse_line("229 Entering Extended Passive Mode (|||0|)", true, endpoint) ==
        Announcement::malformed);
  CHECK(parse_line("229 Entering Extended Passive Mode |||1|", true, endpoint) ==
        Announcement::malformed);
  CHECK(parse_line("230 Login successful.", true, endpoint) == Announcement::none);
  CHECK(parse_line("227 from the client is not a reply", false, endpoint) == Announcement::none);
}

TEST_CASE("PORT and EPRT announce where the client listens") {
  DataEndpoint endpoint;
  REQUIRE(parse_line("PORT 10,0,0,2,4,1", false, endpoint) == Announcement::active);
  CHECK(endpoint.address[3] == 2);
  CHECK(endpoint.port == 1025);
  REQUIRE(parse_line("eprt |1|132.235.1.2|6275|", false, endpoint) == Announcement::active);
  CHECK(endpoint.family == 4);
  CHECK(endpoint.address[0] == 132);
  CHECK(endpoint.port == 6275);
  REQUIRE(parse_line("EPRT |2|fd00::5|5282|", false, endpoint) == Announcement::active);
  CHECK(endpoint.family == 6);
  CHECK(endpoint.address[0] == 0xfd);
  CHECK(endpoint.address[15] == 5);
  CHECK(parse_line("EPRT |3|x|1|", false, endpoint) == Announcement::malformed);
  CHECK(parse_line("PORT 10,0,0,2,4", false, endpoint) == Announcement::malformed);
  CHECK(parse_line("PORTS are fun", false, endpoint) == Announcement::none);
  CHECK(parse_line("RETR file.bin", false, endpoint) == Announcement::none);
}
