/*
 * udp_blast - paced IPv4 UDP traffic generator for the benchmark harness.
 *
 * Sends datagrams of --size payload bytes to ADDR:PORT with sendmmsg() in batches of up to 32,
 * paced to --rate packets per second by a CLOCK_MONOTONIC token bucket (sleeping with
 * clock_nanosleep() when ahead), for --duration seconds. Sends never block: datagrams refused
 * with ENOBUFS/EAGAIN (or ECONNREFUSED after an ICMP port unreachable) are counted as errors
 * and not retried.
 *
 * Usage: udp_blast --dst ADDR --port P --size BYTES --rate PPS --duration SECONDS
 *                  [--cpu K] [--src-port-spread N] [--src-port BASE] [--mark-spread M]
 *                  [--payload-file PATH]
 *   --rate 0             send as fast as possible
 *   --payload-file PATH  send the file's bytes (a DNS query, say) instead of --size zeros
 *   --src-port-spread N  rotate over N source ports BASE..BASE+N-1 (default BASE 40000), so the
 *                        traffic spreads over N flows
 *   --mark-spread M      set SO_MARK (i % M) + 1 on socket i, spreading traffic over marks
 *                        1..M (needs CAP_NET_ADMIN)
 *   --cpu K              pin the process to CPU K
 * lcm(N, M) sockets are opened (at most 1000); socket i uses source port BASE + (i % N) and
 * mark (i % M) + 1, so ports and marks are used equally often. The generator switches socket
 * after every batch.
 *
 * Prints one line: `sent=N errors=E seconds=S rate=R` (R = sent / S, integer). Exit 1 on error.
 *
 * Build: gcc -O2 -Wall -Wextra -std=gnu11 udp_blast.c -o udp_blast
 */
#define _GNU_SOURCE /* NOLINT(bugprone-reserved-identifier): glibc asks for this name */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "bench_cli.h"

#define BATCH 32
#define SNDBUF_BYTES (16 << 20)
#define MAX_PAYLOAD 65507
#define MAX_SOCKETS 1000 /* stays below the usual 1024 open files limit */

static void usage(FILE* out) {
  fprintf(out,
          "usage: udp_blast --dst ADDR --port P --size BYTES --rate PPS --duration SECONDS\n"
          "                 [--cpu K] [--src-port-spread N] [--src-port BASE] [--mark-spread M]\n"
          "                 [--payload-file PATH]\n");
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_until(double t) {
  struct timespec ts = {.tv_sec = (time_t)t, .tv_nsec = (long)((t - (double)(time_t)t) * 1e9)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

int main(int argc, char** argv) {
  static const struct option opts[] = {
      {"dst", required_argument, NULL, 'd'},
      {"port", required_argument, NULL, 'P'},
      {"size", required_argument, NULL, 's'},
      {"rate", required_argument, NULL, 'r'},
      {"duration", required_argument, NULL, 't'},
      {"cpu", required_argument, NULL, 'c'},
      {"src-port-spread", required_argument, NULL, 'n'},
      {"src-port", required_argument, NULL, 'b'},
      {"mark-spread", required_argument, NULL, 'm'},
      {"payload-file", required_argument, NULL, 'f'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char* dst = NULL;
  const char* payload_file = NULL;
  long port = -1, size = -1, rate = -1, duration = -1, cpu = -1;
  unsigned long spread = 1, base_port = 40000, marks = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (opt) {
      case 'd': dst = optarg; break;
      case 'P': port = parse_num("--port", optarg, 65535); break;
      case 's': size = parse_num("--size", optarg, MAX_PAYLOAD); break;
      case 'r': rate = parse_num("--rate", optarg, 1000000000); break;
      case 't': duration = parse_num("--duration", optarg, 86400); break;
      case 'c': cpu = parse_num("--cpu", optarg, CPU_SETSIZE - 1); break;
      case 'n': spread = parse_num("--src-port-spread", optarg, MAX_SOCKETS); break;
      case 'b': base_port = parse_num("--src-port", optarg, 65535); break;
      case 'm': marks = parse_num("--mark-spread", optarg, MAX_SOCKETS); break;
      case 'f': payload_file = optarg; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 1;
    }
  }
  char* file_payload = NULL;
  if (payload_file != NULL) { /* the payload is the file's bytes: a DNS query, say */
    FILE* f = fopen(payload_file, "rb");
    if (f == NULL) die("cannot open --payload-file");
    file_payload = calloc(1, MAX_PAYLOAD + 1);
    if (file_payload == NULL) die("out of memory");
    size = (long)fread(file_payload, 1, MAX_PAYLOAD, f);
    fclose(f);
  }
  if (optind != argc || !dst || port < 0 || size < 0 || rate < 0 || duration < 0) {
    usage(stderr);
    return 1;
  }
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, dst, &to.sin_addr) != 1) {
    fprintf(stderr, "udp_blast: invalid IPv4 address '%s'\n", dst);
    return 1;
  }
  if (spread == 0) spread = 1;
  if (spread > 1 && base_port + spread - 1 > 65535) {
    fprintf(stderr, "udp_blast: source ports %lu..%lu out of range\n", base_port,
            base_port + spread - 1);
    return 1;
  }

  if (cpu >= 0) pin_to_cpu((unsigned long)cpu);

  unsigned long nsock = spread;
  if (marks > 0) {
    unsigned long a = spread, b = marks;
    while (b) {
      unsigned long r = a % b;
      a = b;
      b = r;
    }
    nsock = spread / a * marks; /* lcm */
  }
  if (nsock > MAX_SOCKETS) {
    fprintf(stderr, "udp_blast: lcm(--src-port-spread, --mark-spread) = %lu sockets, max %d\n",
            nsock, MAX_SOCKETS);
    return 1;
  }
  int* socks = calloc(nsock, sizeof(*socks));
  if (!socks) die("out of memory");
  for (unsigned long i = 0; i < nsock; i++) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) die("cannot create socket");
    int sndbuf = SNDBUF_BYTES, one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)) < 0)
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    if (marks > 0) {
      int mark = (int)(i % marks) + 1;
      if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0) die("cannot set SO_MARK");
    }
    if (spread > 1) {
      /* With lcm(N, M) > N sockets, several of them share a source port. */
      if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        die("cannot set SO_REUSEPORT");
      struct sockaddr_in src = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)(base_port + i % spread))};
      if (bind(fd, (struct sockaddr*)&src, sizeof(src)) < 0) {
        fprintf(stderr, "udp_blast: cannot bind source port %lu: %s\n", base_port + i % spread,
                strerror(errno));
        return 1;
      }
    }
    if (connect(fd, (struct sockaddr*)&to, sizeof(to)) < 0) die("cannot connect socket");
    socks[i] = fd;
  }

  char* payload = file_payload != NULL ? file_payload : calloc(1, (size_t)size + 1);
  if (!payload) die("out of memory");
  struct iovec iov = {.iov_base = payload, .iov_len = (size_t)size};
  struct mmsghdr msgs[BATCH];
  for (int i = 0; i < BATCH; i++)
    msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov, .msg_iovlen = 1};

  /* Token bucket: `rate` tokens per second, at most 10 ms of traffic (>= one batch) in the
   * bucket. A batch waits until it can carry what accrues in 1 ms (between 1 and 32 packets). */
  double depth = rate / 100.0 > BATCH ? rate / 100.0 : BATCH;
  double min_batch = rate / 1000.0 < 1 ? 1 : (rate / 1000.0 > BATCH ? BATCH : rate / 1000.0);
  double tokens = min_batch, start = now_s(), last = start, end = start + (double)duration;
  uint64_t sent = 0, errors = 0;
  unsigned long next = 0;
  for (double t = start; t < end; t = now_s()) {
    int n = BATCH;
    if (rate > 0) {
      tokens += (t - last) * (double)rate;
      if (tokens > depth) tokens = depth;
      last = t;
      if (tokens < min_batch) {
        double wake = t + (min_batch - tokens) / (double)rate;
        sleep_until(wake < end ? wake : end);
        continue;
      }
      n = tokens < BATCH ? (int)tokens : BATCH;
      tokens -= n;
    }
    int r = sendmmsg(socks[next], msgs, (unsigned)n, MSG_DONTWAIT);
    next = (next + 1) % nsock;
    if (r < 0) {
      if (errno != ENOBUFS && errno != EAGAIN && errno != ECONNREFUSED) die("sendmmsg failed");
      r = 0;
    }
    sent += (uint64_t)r;
    errors += (uint64_t)(n - r);
  }

  double seconds = now_s() - start;
  printf("sent=%" PRIu64 " errors=%" PRIu64 " seconds=%.3f rate=%" PRIu64 "\n", sent, errors,
         seconds, (uint64_t)((double)sent / seconds));
  return 0;
}
