#include "shim_settings.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>

using pktbroker::nfq::ShimSettings;

namespace {

/// Sets PKTBROKER_* variables for one test and clears them afterwards.
struct Environment {
  Environment(std::initializer_list<std::pair<const char*, const char*>> values) {
    for (const char* name : names) unsetenv(name);
    for (const auto& [name, value] : values) setenv(name, value, 1);
  }
  ~Environment() {
    for (const char* name : names) unsetenv(name);
  }
  static constexpr const char* names[] = {"PKTBROKER_SOCKET",    "PKTBROKER_SELECTOR",
                                          "PKTBROKER_QUEUE_MAP", "PKTBROKER_TIMEOUT_MS",
                                          "PKTBROKER_FALLBACK",  "PKTBROKER_NAME"};
};

std::string error_of(std::initializer_list<std::pair<const char*, const char*>> values) {
  const Environment environment(values);
  std::string error;
  CHECK_FALSE(ShimSettings::from_environment(error));
  return error;
}

}  // namespace

TEST_CASE("without variables the shim asks for the program's queue, drop on timeout") {
  const Environment environment({});
  std::string error;
  const auto settings = ShimSettings::from_environment(error);
  REQUIRE(settings);
  CHECK(settings->socket_path == "/run/pktbroker/broker.sock");
  CHECK(settings->selector_for(3) == "{queue: 3}");
  CHECK(settings->timeout_ms == 1000);
  CHECK(settings->fallback == pktbroker::proto::VerdictCode::drop);
  CHECK(settings->name.find('[') != std::string::npos);  // program[pid]
}

TEST_CASE("the selector, queue map, timeout and fallback come from the environment") {
  const Environment environment({{"PKTBROKER_SELECTOR", " {mark: 0x10, proto: udp} "},
                                 {"PKTBROKER_QUEUE_MAP", "0=2, 5 = 0x7"},
                                 {"PKTBROKER_TIMEOUT_MS", "250"},
                                 {"PKTBROKER_FALLBACK", "accept"},
                                 {"PKTBROKER_SOCKET", "/tmp/b.sock"},
                                 {"PKTBROKER_NAME", "ids"}});
  std::string error;
  const auto settings = ShimSettings::from_environment(error);
  REQUIRE(settings);
  CHECK(settings->selector_for(0) == "{queue: 2, mark: 0x10, proto: udp}");
  CHECK(settings->selector_for(5) == "{queue: 7, mark: 0x10, proto: udp}");
  CHECK(settings->selector_for(1) == "{queue: 1, mark: 0x10, proto: udp}");  // unmapped
  CHECK(settings->timeout_ms == 250);
  CHECK(settings->fallback == pktbroker::proto::VerdictCode::accept);
  CHECK(settings->socket_path == "/tmp/b.sock");
  CHECK(settings->name == "ids");
}

TEST_CASE("a value that only contains the word queue is not a queue key") {
  const Environment environment({{"PKTBROKER_SELECTOR", "{http.host: queue.example, mark: 1}"}});
  std::string error;
  const auto settings = ShimSettings::from_environment(error);
  REQUIRE(settings);
  CHECK(settings->selector_for(0) == "{queue: 0, http.host: queue.example, mark: 1}");
}

TEST_CASE("malformed variables are refused with the variable's name and what it needs") {
  CHECK(error_of({{"PKTBROKER_SELECTOR", "mark: 1"}}).starts_with("PKTBROKER_SELECTOR must be"));
  for (const char* queue : {"{queue: 1}", "{mark: 1, queue : 2}", "{mark: 1,queue: 2}"}) {
    INFO(queue);
    CHECK(error_of({{"PKTBROKER_SELECTOR", queue}}).find("may not name a queue") !=
          std::string::npos);
  }
  for (const char* map : {"0", "0=", "=1", "0=1,0=2", "0=70000", "a=b", "0=1,"}) {
    INFO(map);
    CHECK(error_of({{"PKTBROKER_QUEUE_MAP", map}}).starts_with("PKTBROKER_QUEUE_MAP must be"));
  }
  for (const char* timeout : {"0", "-1", "1s", "99999999999"}) {
    INFO(timeout);
    CHECK(error_of({{"PKTBROKER_TIMEOUT_MS", timeout}}).starts_with("PKTBROKER_TIMEOUT_MS"));
  }
  CHECK(error_of({{"PKTBROKER_FALLBACK", "repeat"}}).starts_with("PKTBROKER_FALLBACK must be"));
}
