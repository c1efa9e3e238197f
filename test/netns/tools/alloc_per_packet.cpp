// Counts the heap allocations the broker makes per packet, on the real kernel queue: in a
// network namespace of its own, UDP to 127.0.0.1 goes through NFQUEUE to a Daemon running in
// this process on one thread, the only thread whose operator new calls count. Each case warms
// up, then sends 50,000 packets and fails if the broker's thread allocated more than once per
// 10,000 of them (see max_allocations).
// Every packet must also reach the receiving socket: each got its one accept verdict.
//   alloc_per_packet [policy|client|observers]...   (default: all three, each in a child)
// Exit status 77 (skipped) without root.
#include "broker/daemon.hpp"
#include "broker/policy/policy.hpp"
#include "broker/policy_plugins.hpp"
#include "pktbroker/client.hpp"

#include <arpa/inet.h>
#include <execinfo.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <new>
#include <string>
#include <thread>
#include <vector>

namespace {

thread_local bool broker_thread = false;
std::atomic<std::uint64_t> broker_allocations{0};
// With ALLOC_TRACE=N, the stacks of the first N allocations counted while measuring.
std::atomic<bool> measuring{false};
std::atomic<int> traces_left{0};

void* counted_allocation(std::size_t size, std::size_t alignment = 0) {
  if (broker_thread) {
    broker_allocations.fetch_add(1, std::memory_order_relaxed);
    if (measuring.load() && traces_left.fetch_sub(1) > 0) {
      void* frames[32];
      std::fprintf(stderr, "-- allocation of %zu bytes:\n", size);
      backtrace_symbols_fd(frames, backtrace(frames, 32), STDERR_FILENO);
    }
  }
  if (size == 0) size = 1;
  return alignment == 0
             ? std::malloc(size)
             : std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
}

}  // namespace

void* operator new(std::size_t size) {
  if (void* p = counted_allocation(size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) {
  if (void* p = counted_allocation(size)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t size, std::align_val_t alignment) {
  if (void* p = counted_allocation(size, static_cast<std::size_t>(alignment))) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size, std::align_val_t alignment) {
  if (void* p = counted_allocation(size, static_cast<std::size_t>(alignment))) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return counted_allocation(size);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return counted_allocation(size);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}

namespace {

constexpr std::uint16_t port = 9999;
constexpr std::size_t warm_up = 20'000;
constexpr std::size_t measured = 50'000;
constexpr std::size_t burst = 64;
// Zero per packet, with room for Asio's handler memory: each thread recycles a few blocks, and
// when the machine is busy more handlers are in flight at once than it keeps (0 on an idle
// machine, 2 in 50,000 packets with two busy loops on the CPUs).
constexpr std::uint64_t max_allocations = measured / 10'000;

int fail(const std::string& why) {
  std::fprintf(stderr, "alloc_per_packet: %s\n", why.c_str());
  return 1;
}

std::atomic<std::uint64_t> decided{0}, observed{0};  // packets the clients got

// A client that answers accept to every packet it must decide, until the broker goes away.
void serve(const std::string& socket, bool verdicts, std::atomic<int>& ready) {
  pktbroker::Client client;
  if (client.connect(socket, "alloc-test")) return;
  pktbroker::proto::Subscribe request;
  request.name = verdicts ? "decider" : "observer-" + std::to_string(ready.load());
  request.selector = "{proto: udp, dport: " + std::to_string(port) + "}";
  request.snaplen = 128;
  request.mode = verdicts ? pktbroker::proto::SubscriptionMode::verdict
                          : pktbroker::proto::SubscriptionMode::observe;
  std::uint32_t id = 0;
  if (client.subscribe(request, id)) return;
  ++ready;
  std::vector<pktbroker::ReceivedPacket> batch;
  std::vector<pktbroker::proto::Verdict> answers;
  for (;;) {
    const auto error = client.next_packets(batch, 64, 200);
    if (error == pktbroker::ClientError::timeout) continue;
    if (error) return;
    answers.clear();
    for (const auto& packet : batch) {
      if (packet.info().needs_verdict) {
        answers.push_back({packet.info().token, pktbroker::proto::VerdictCode::accept, {}, {}});
      }
    }
    (verdicts ? decided : observed) += verdicts ? answers.size() : batch.size();
    if (!answers.empty() && client.verdicts(answers)) return;
  }
}

// Waits (at most 10 s) for the observers to have read `total` copies: they lag the kernel.
void copies_reach(std::uint64_t total) {
  for (int i = 0; i < 1000 && observed.load() < total; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// Sends `count` datagrams in bursts, each burst only once the last has arrived (the kernel
// queue never overflows); false when some never arrive.
bool send_through(int sender, int receiver, const sockaddr_in& to, std::size_t count) {
  std::vector<std::uint8_t> payload(64, 0x5a);
  std::vector<std::uint8_t> sink(2048);
  timeval wait{5, 0};
  setsockopt(receiver, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
  for (std::size_t sent = 0; sent < count;) {
    const std::size_t n = std::min(burst, count - sent);
    for (std::size_t i = 0; i < n; ++i) {
      if (sendto(sender, payload.data(), payload.size(), 0, reinterpret_cast<const sockaddr*>(&to),
                 sizeof to) < 0) {
        return false;
      }
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (recv(receiver, sink.data(), sink.size(), 0) < 0) return false;  // lost, or timed out
    }
    sent += n;
  }
  return true;
}

int run_case(const std::string& name) {
  if (unshare(CLONE_NEWNET) != 0) return fail("unshare(CLONE_NEWNET) failed");
  const std::string rule = "ip link set lo up && iptables -A OUTPUT -o lo -p udp --dport " +
                           std::to_string(port) + " -j NFQUEUE --queue-num 0";
  if (std::system(rule.c_str()) != 0) return fail("could not queue the test traffic: " + rule);
  char dir_template[] = "/tmp/alloc_per_packet.XXXXXX";
  if (mkdtemp(dir_template) == nullptr) return fail("mkdtemp failed");
  const std::filesystem::path dir = dir_template;
  const std::string socket = (dir / "broker.sock").string();
  const int clients = name == "policy" ? 0 : name == "client" ? 1 : 5;
  {
    // Policy only: a rule accepts. With clients, no rule: the subscriptions take the packets.
    std::ofstream policy(dir / "policy.yaml");
    policy << "broker:\n  queues: [{num: 0, max_len: 8192, copy_range: 128}]\n"
              "  default_verdict: accept\nsocket: {path: "
           << socket << "}\nrules:\n";
    if (clients == 0) {
      policy << "  - {name: test, match: {proto: udp, dport: " << port << "}, verdict: accept}\n";
    }
  }
  spdlog::set_level(spdlog::level::warn);
  auto policy = pktbroker::load_policy(dir / "policy.yaml");
  pktbroker::Daemon daemon(dir / "policy.yaml", policy, pktbroker::load_policy_plugins(*policy), 1);
  std::thread broker([&daemon] {
    broker_thread = true;
    daemon.run();
  });
  std::atomic<int> ready{0};
  std::vector<std::thread> client_threads;
  for (int i = 0; i < clients; ++i) {
    while (!std::filesystem::exists(socket))
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    client_threads.emplace_back(serve, socket, i == 0, std::ref(ready));
    while (ready.load() <= i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const int sender = ::socket(AF_INET, SOCK_DGRAM, 0);
  const int receiver = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int result = 0;
  if (bind(receiver, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
    result = fail("bind failed");
  } else if (!send_through(sender, receiver, to, warm_up)) {
    result = fail(name + ": packets were lost while warming up");
  } else {
    if (const char* trace = std::getenv("ALLOC_TRACE")) traces_left = std::atoi(trace);
    const std::uint64_t observers = clients > 1 ? clients - 1 : 0;
    copies_reach(observers * warm_up);  // the observers' last copies
    const std::uint64_t before = broker_allocations.load();
    const std::uint64_t decided_before = decided.load(), observed_before = observed.load();
    measuring = true;
    const bool all_arrived = send_through(sender, receiver, to, measured);
    measuring = false;
    const std::uint64_t allocations = broker_allocations.load() - before;
    copies_reach(observers * (warm_up + measured));
    const std::uint64_t by_client = decided.load() - decided_before;
    const std::uint64_t copies = observed.load() - observed_before;
    std::printf("%s: the client decided %llu packets, observers got %llu copies\n", name.c_str(),
                static_cast<unsigned long long>(by_client),
                static_cast<unsigned long long>(copies));
    if (clients > 0 && by_client != measured)
      result = fail(name + ": the client did not decide each packet once");
    if (copies != measured * observers) result = fail(name + ": observers missed copies");
    std::printf("%s: %llu allocations on the broker's thread for %zu packets (%.4f per packet)\n",
                name.c_str(), static_cast<unsigned long long>(allocations), measured,
                static_cast<double>(allocations) / measured);
    std::fflush(stdout);
    if (!all_arrived) result = fail(name + ": packets were lost");
    if (allocations > max_allocations) {
      result = fail(name + ": the broker allocated while packets passed");
    }
  }
  kill(getpid(), SIGTERM);  // the daemon's signal set: a clean shutdown
  broker.join();
  for (auto& thread : client_threads) thread.join();
  std::filesystem::remove_all(dir);
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  if (geteuid() != 0) {
    std::puts("alloc_per_packet: needs root (a network namespace, iptables): skipped");
    return 77;
  }
  std::vector<std::string> cases(argv + 1, argv + argc);
  if (cases.empty()) cases = {"policy", "client", "observers"};
  int failed = 0;
  for (const std::string& name : cases) {
    std::fflush(stdout);
    const pid_t child = fork();  // a fresh process, and namespace, per case
    if (child == 0) _exit(run_case(name));
    int status = 0;
    waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::fprintf(stderr, "alloc_per_packet: case %s failed\n", name.c_str());
      failed = 1;
    }
  }
  return failed;
}
