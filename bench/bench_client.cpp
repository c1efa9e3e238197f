// A libpktbroker client for the benchmark: accepts (or observes) every packet its selector
// matches until SIGTERM, then prints `packets=N`.
//   bench_client SOCKET verdict|observe [SELECTOR] [--cpu K] [--busy-poll MICROSECONDS]
#include "pktbroker/client.hpp"

#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

volatile std::sig_atomic_t stopping = 0;

void on_signal(int) {
  stopping = 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: %s SOCKET verdict|observe [SELECTOR] [--cpu K] "
                 "[--busy-poll MICROSECONDS]\n",
                 argv[0]);
    return 2;
  }
  const std::string mode = argv[2];
  std::string selector;
  std::chrono::microseconds busy_poll{0};
  for (int i = 3; i < argc; ++i) {
    if (std::strcmp(argv[i], "--cpu") == 0 && i + 1 < argc) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(std::atoi(argv[++i]), &set);
      sched_setaffinity(0, sizeof set, &set);
    } else if (std::strcmp(argv[i], "--busy-poll") == 0 && i + 1 < argc) {
      busy_poll = std::chrono::microseconds(std::atoi(argv[++i]));
    } else {
      selector = argv[i];
    }
  }
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);

  pktbroker::Client client;
  if (const auto error = client.connect(argv[1], "bench-" + mode)) {
    std::fprintf(stderr, "bench_client: connect: %s\n", error.message().c_str());
    return 1;
  }
  client.set_busy_poll(busy_poll);
  pktbroker::proto::Subscribe request;
  request.name = "bench-" + std::to_string(getpid());  // exclusive subscriptions need own names
  request.selector = selector;
  request.snaplen = 128;
  // Packets the broker sheds (this client's 1,024 outstanding reached, or its socket full) are
  // dropped, not accepted: every packet the bench counts as delivered went through the client.
  request.fallback = pktbroker::proto::VerdictCode::drop;
  request.mode = mode == "observe" ? pktbroker::proto::SubscriptionMode::observe
                                   : pktbroker::proto::SubscriptionMode::verdict;
  std::uint32_t id = 0;
  if (const auto error = client.subscribe(request, id)) {
    std::fprintf(stderr, "bench_client: subscribe: %s: %s\n", error.message().c_str(),
                 client.last_error().text.c_str());
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  std::uint64_t packets = 0;
  std::vector<pktbroker::ReceivedPacket> batch;
  std::vector<pktbroker::proto::Verdict> verdicts;
  while (stopping == 0) {
    // Everything already waiting, answered in one VERDICT_BATCH.
    if (client.next_packets(batch, 64, 200)) continue;  // timeout: check stopping
    packets += batch.size();
    verdicts.clear();
    for (const auto& packet : batch) {
      if (packet.info().needs_verdict) {
        verdicts.push_back({packet.info().token, pktbroker::proto::VerdictCode::accept, {}, {}});
      }
    }
    if (!verdicts.empty()) client.verdicts(verdicts);
  }
  std::printf("packets=%llu\n", static_cast<unsigned long long>(packets));
  return 0;
}
