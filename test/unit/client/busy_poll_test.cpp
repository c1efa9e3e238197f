// libpktbroker's busy-poll against a broker stand-in on a Unix socket: the spin saves the sleep
// when a message comes within it, and stays within its bound when none comes.
#include "pktbroker/client.hpp"

#include <catch2/catch.hpp>

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

namespace pb = pktbroker;
using namespace std::chrono_literals;

namespace {

// Accepts one client and answers its HELLO; send() then sends what a test wants.
class BrokerStandIn {
 public:
  BrokerStandIn() {
    char dir[] = "/tmp/pktbroker-busy-poll-XXXXXX";
    REQUIRE(::mkdtemp(dir) != nullptr);
    directory_ = dir;
    path_ = directory_ + "/broker.sock";
    listener_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    path_.copy(address.sun_path, path_.size());
    REQUIRE(::bind(listener_, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(listener_, 1) == 0);
    welcomer_ = std::thread([this] {
      peer_ = ::accept(listener_, nullptr, nullptr);
      if (peer_ < 0) return;
      std::vector<std::uint8_t> hello(pb::proto::max_datagram);
      const ssize_t size = ::recv(peer_, hello.data(), hello.size(), 0);
      pb::proto::Decoded decoded;
      if (size <= 0 ||
          pb::proto::decode(std::span(hello.data(), static_cast<std::size_t>(size)), decoded)) {
        ::shutdown(peer_, SHUT_RDWR);  // the client's connect() fails instead of waiting
        return;
      }
      pb::proto::Welcome welcome;
      welcome.session_id = 1;
      welcome.roles = pb::proto::role_verdict;
      send(welcome, decoded.header.request_id);
    });
  }
  ~BrokerStandIn() {
    ::shutdown(listener_, SHUT_RDWR);  // wakes an accept() no client reached
    if (welcomer_.joinable()) welcomer_.join();
    if (peer_ >= 0) ::close(peer_);
    ::close(listener_);
    ::unlink(path_.c_str());
    ::rmdir(directory_.c_str());
  }
  BrokerStandIn(const BrokerStandIn&) = delete;
  BrokerStandIn& operator=(const BrokerStandIn&) = delete;

  void connect(pb::Client& client) {
    const auto error = client.connect(path_, "busy-poll-test");
    welcomer_.join();
    REQUIRE_FALSE(error);
  }
  /// Safe on any thread (no Catch2 assertion): true when the whole datagram went out.
  bool send(const pb::proto::Message& message, std::uint32_t request_id = 0) const {
    std::vector<std::uint8_t> datagram;
    if (pb::proto::encode(message, request_id, datagram)) return false;
    return ::send(peer_, datagram.data(), datagram.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(datagram.size());
  }

 private:
  std::string directory_;
  std::string path_;
  int listener_ = -1;
  int peer_ = -1;
  std::thread welcomer_;
};

// This thread's CPU time and the times it went to sleep (voluntary context switches).
struct ThreadUsage {
  std::chrono::microseconds cpu;
  long sleeps;
};

ThreadUsage thread_usage() {
  rusage usage{};
  ::getrusage(RUSAGE_THREAD, &usage);
  const auto micros = [](const timeval& t) {
    return std::chrono::seconds(t.tv_sec) + std::chrono::microseconds(t.tv_usec);
  };
  return {micros(usage.ru_utime) + micros(usage.ru_stime), usage.ru_nvcsw};
}

pb::proto::Packet packet(std::uint64_t token) {
  pb::proto::Packet p;
  p.token = token;
  p.needs_verdict = true;
  return p;
}

// Sends a packet `delay` after it has started (the caller waits for that before it measures).
class LateSender {
 public:
  LateSender(const BrokerStandIn& broker, std::uint64_t token, std::chrono::milliseconds delay)
      : thread_([&broker, token, delay, this] {
          started_ = true;
          std::this_thread::sleep_for(delay);
          sent_ = broker.send(packet(token));
        }) {
    while (!started_) std::this_thread::yield();
  }
  bool join() {
    thread_.join();
    return sent_;
  }

 private:
  std::atomic<bool> started_{false};
  bool sent_ = false;
  std::thread thread_;
};

// This thread's usage across one wait, with a spin of `spin`, for the packet a LateSender
// sends `delay` into it.
struct Wait {
  ThreadUsage before;
  ThreadUsage after;
};

Wait wait_for_late_packet(std::chrono::microseconds spin, std::chrono::milliseconds delay) {
  constexpr std::uint64_t token = 7;
  BrokerStandIn broker;
  pb::Client client;
  broker.connect(client);
  client.set_busy_poll(spin);
  LateSender late(broker, token, delay);
  const auto before = thread_usage();
  pb::ReceivedPacket received;
  const auto error = client.next_packet(received);
  const auto after = thread_usage();
  REQUIRE(late.join());
  REQUIRE_FALSE(error);
  CHECK(received.info().token == token);
  return {before, after};
}

}  // namespace

TEST_CASE("a packet that comes within the spin is read without sleeping", "[client]") {
  const auto wait = wait_for_late_packet(10s, 20ms);
  CHECK(wait.after.sleeps == wait.before.sleeps);  // it spun through the 20 ms
}

TEST_CASE("without a spin the same wait sleeps", "[client]") {
  const auto wait = wait_for_late_packet(0us, 300ms);
  CHECK(wait.after.sleeps > wait.before.sleeps);
}

TEST_CASE("a spin ends at its bound and the wait sleeps on", "[client]") {
  const auto wait = wait_for_late_packet(20ms, 1s);  // the packet comes long after the spin
  CHECK(wait.after.sleeps > wait.before.sleeps);
  // Spinning through the whole second would take about a second of CPU; the bound is 20 ms.
  CHECK(wait.after.cpu - wait.before.cpu < 500ms);
}

TEST_CASE("a spin as long as the wait's timeout ends the wait: no sleep after it", "[client]") {
  BrokerStandIn broker;
  pb::Client client;
  broker.connect(client);
  client.set_busy_poll(30s);
  const auto before = thread_usage();
  pb::ReceivedPacket received;
  CHECK(client.next_packet(received, 100) == pb::ClientError::timeout);
  CHECK(client.next_packet(received, 0) == pb::ClientError::timeout);  // no wait, no spin
  const auto after = thread_usage();
  // The spin took the whole 100 ms; a sleep after it would outlast the timeout.
  CHECK(after.sleeps == before.sleeps);
  CHECK(after.cpu - before.cpu < 5s);  // a spin of the full 30 s would use about 30
}

TEST_CASE("a spin ends when the broker closes the session", "[client]") {
  auto broker = std::make_unique<BrokerStandIn>();
  pb::Client client;
  broker->connect(client);
  client.set_busy_poll(30s);
  std::atomic<bool> started{false};
  std::thread closer([&] {
    started = true;
    std::this_thread::sleep_for(20ms);
    broker.reset();
  });
  while (!started) std::this_thread::yield();
  const auto before = thread_usage();
  pb::ReceivedPacket received;
  const auto error = client.next_packet(received);
  const auto after = thread_usage();
  closer.join();
  CHECK(error == pb::ClientError::closed);
  // The spin saw the end itself: no sleep, and not the 30 s of CPU a spin blind to it burns.
  CHECK(after.sleeps == before.sleeps);
  CHECK(after.cpu - before.cpu < 5s);
}
