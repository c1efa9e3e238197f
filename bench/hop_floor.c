/*
 * hop_floor - the cost of one client hop without a broker: two processes pinned to one CPU
 * answer each other over a SOCK_SEQPACKET pair, paced like the latency probe. This is the least
 * a packet handed to a client process on the consumer's CPU can add to a round trip (two
 * context switches and two Unix datagrams), measured on this machine.
 *
 *   hop_floor --cpu K --count N --interval-us U
 *
 * Prints `count=N p50_us=X p99_us=Y` (nearest-rank percentiles, fractional microseconds).
 */
#define _GNU_SOURCE /* NOLINT(bugprone-reserved-identifier): glibc asks for this name */
#include "bench_cli.h"

#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
  unsigned long cpu = 1, count = 2000, interval_us = 300;
  static const struct option options[] = {{"cpu", required_argument, NULL, 'c'},
                                          {"count", required_argument, NULL, 'n'},
                                          {"interval-us", required_argument, NULL, 'i'},
                                          {NULL, 0, NULL, 0}};
  for (int opt; (opt = getopt_long(argc, argv, "", options, NULL)) != -1;) {
    switch (opt) {
      case 'c': cpu = parse_num("--cpu", optarg, CPU_SETSIZE - 1); break;
      case 'n': count = parse_num("--count", optarg, 10000000); break;
      case 'i': interval_us = parse_num("--interval-us", optarg, 1000000); break;
      default: fprintf(stderr, "usage: %s --cpu K --count N --interval-us U\n", argv[0]); return 2;
    }
  }
  if (count == 0) count = 1;
  pin_to_cpu(cpu);
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, pair) != 0) die("socketpair");
  const pid_t echo = fork();  // inherits the CPU
  if (echo < 0) die("fork");
  if (echo == 0) {
    close(pair[0]);  // so that the parent's close ends the loop below
    char byte;
    while (recv(pair[1], &byte, 1, 0) == 1) {
      if (send(pair[1], &byte, 1, 0) != 1) break;
    }
    _exit(0);
  }
  close(pair[1]);
  double* rtt = malloc(count * sizeof *rtt);
  if (rtt == NULL) die("malloc");
  const struct timespec pause = {0, (long)interval_us * 1000};
  for (unsigned long i = 0; i < count; ++i) {
    nanosleep(&pause, NULL);
    char byte = 1;
    const double start = now_us();
    if (send(pair[0], &byte, 1, 0) != 1 || recv(pair[0], &byte, 1, 0) != 1) die("round trip");
    rtt[i] = now_us() - start;
  }
  close(pair[0]);
  waitpid(echo, NULL, 0);
  qsort(rtt, count, sizeof *rtt, by_value);
  printf("count=%lu p50_us=%.1f p99_us=%.1f\n", count, rtt[(count - 1) / 2],
         rtt[(count * 99 + 99) / 100 - 1]);
  return 0;
}
