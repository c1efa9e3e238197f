/*
 * udp_echo_latency - UDP round-trip latency probe for the benchmark harness (IPv4).
 *
 * Server: udp_echo_latency --server ADDR PORT
 *   Binds ADDR:PORT and sends every datagram back to its sender until SIGINT/SIGTERM.
 *
 * Client: udp_echo_latency --client ADDR PORT --count N --interval-us U
 *   Sends N probes to ADDR:PORT, one every U microseconds. Each probe carries a sequence number
 *   and its CLOCK_MONOTONIC send time; the client waits up to 200 ms for its echo (stale echoes
 *   of earlier probes are discarded) and counts a loss otherwise. Prints one line:
 *   `count=N lost=L p50_us=X p99_us=Y max_us=Z` (round trip, nearest-rank percentiles over the
 *   answered probes; all 0 if none was answered).
 *
 * Build: gcc -O2 -Wall -Wextra -std=gnu11 udp_echo_latency.c -o udp_echo_latency
 */
#define _GNU_SOURCE /* NOLINT(bugprone-reserved-identifier): glibc asks for this name */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_cli.h"

#define TIMEOUT_NS (200 * 1000000LL)

struct probe {
  uint64_t seq;
  uint64_t sent_ns;
};

static void usage(FILE* out) {
  fprintf(out,
          "usage: udp_echo_latency --server ADDR PORT\n"
          "       udp_echo_latency --client ADDR PORT --count N --interval-us U\n");
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void on_signal(int sig) {
  (void)sig;
  _exit(0);
}

static _Noreturn void serve(int fd) {
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  char buf[65536];
  for (;;) {
    struct sockaddr_in peer;
    socklen_t plen = sizeof(peer);
    ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr*)&peer, &plen);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("recvfrom failed");
    }
    /* A lost echo is the client's problem to count; never stop serving because of it. */
    sendto(fd, buf, (size_t)n, MSG_DONTWAIT, (struct sockaddr*)&peer, plen);
  }
}

/* Waits for the echo of probe `seq` until `deadline_ns`; returns its round trip or -1 if lost. */
static int64_t await_echo(int fd, uint64_t seq, uint64_t deadline_ns) {
  for (;;) {
    uint64_t now = now_ns();
    if (now >= deadline_ns) return -1;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int timeout_ms = (int)((deadline_ns - now + 999999) / 1000000);
    if (poll(&pfd, 1, timeout_ms) < 0 && errno != EINTR) die("poll failed");
    struct probe p;
    ssize_t n = recv(fd, &p, sizeof(p), MSG_DONTWAIT);
    uint64_t got = now_ns();
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      if (errno == ECONNREFUSED) return -1; /* nobody listening: ICMP port unreachable */
      die("recv failed");
    }
    if (n == (ssize_t)sizeof(p) && p.seq == seq) return (int64_t)(got - p.sent_ns);
  }
}

static int cmp_u64(const void* a, const void* b) {
  uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
  return (x > y) - (x < y);
}

static uint64_t percentile_us(const uint64_t* sorted, size_t n, unsigned pct) {
  if (n == 0) return 0;
  size_t rank = (n * pct + 99) / 100; /* nearest rank, 1-based */
  return (sorted[rank - 1] + 500) / 1000;
}

static int run_client(int fd, unsigned long count, unsigned long interval_us) {
  uint64_t* rtt = calloc(count ? count : 1, sizeof(*rtt));
  if (!rtt) die("out of memory");
  size_t answered = 0;
  uint64_t start = now_ns();
  for (unsigned long seq = 0; seq < count; seq++) {
    uint64_t due = start + seq * interval_us * 1000ULL;
    struct timespec ts = {.tv_sec = (time_t)(due / 1000000000ULL),
                          .tv_nsec = (long)(due % 1000000000ULL)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
    struct probe p = {.seq = seq, .sent_ns = now_ns()};
    if (send(fd, &p, sizeof(p), 0) < 0) {
      if (errno == ECONNREFUSED) continue; /* error of an earlier probe's ICMP: this one lost */
      die("send failed");
    }
    int64_t r = await_echo(fd, seq, p.sent_ns + TIMEOUT_NS);
    if (r >= 0) rtt[answered++] = (uint64_t)r;
  }
  qsort(rtt, answered, sizeof(*rtt), cmp_u64);
  printf("count=%lu lost=%lu p50_us=%" PRIu64 " p99_us=%" PRIu64 " max_us=%" PRIu64 "\n", count,
         count - answered, percentile_us(rtt, answered, 50), percentile_us(rtt, answered, 99),
         percentile_us(rtt, answered, 100));
  free(rtt);
  return 0;
}

int main(int argc, char** argv) {
  if (argc >= 2 && strcmp(argv[1], "--help") == 0) {
    usage(stdout);
    return 0;
  }
  int server = argc >= 4 && strcmp(argv[1], "--server") == 0;
  if (argc < 4 || (!server && strcmp(argv[1], "--client") != 0)) {
    usage(stderr);
    return 1;
  }
  struct sockaddr_in addr = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)parse_num("PORT", argv[3], 65535))};
  if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1) {
    fprintf(stderr, "udp_echo_latency: invalid IPv4 address '%s'\n", argv[2]);
    return 1;
  }
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) die("cannot create socket");

  if (server) {
    if (argc != 4) {
      usage(stderr);
      return 1;
    }
    if (bind(fd, (struct sockaddr*)&addr, sizeof(addr)) < 0) die("cannot bind");
    serve(fd);
  }

  static const struct option opts[] = {
      {"count", required_argument, NULL, 'n'},
      {"interval-us", required_argument, NULL, 'i'},
      {NULL, 0, NULL, 0},
  };
  long count = -1, interval_us = -1;
  int opt;
  optind = 4;
  while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (opt) {
      case 'n': count = (long)parse_num("--count", optarg, 100000000); break;
      case 'i': interval_us = (long)parse_num("--interval-us", optarg, 60000000); break;
      default: usage(stderr); return 1;
    }
  }
  if (optind != argc || count < 0 || interval_us < 0) {
    usage(stderr);
    return 1;
  }
  if (connect(fd, (struct sockaddr*)&addr, sizeof(addr)) < 0) die("cannot connect");
  return run_client(fd, (unsigned long)count, (unsigned long)interval_us);
}
