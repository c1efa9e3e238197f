/* Error and argument helpers shared by the bench programs (messages carry the program name). */
#ifndef PKTBROKER_BENCH_CLI_H
#define PKTBROKER_BENCH_CLI_H

#include <errno.h> /* program_invocation_short_name: define _GNU_SOURCE before any include */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Reports what failed with errno's text and exits 1. */
static void die(const char* what) {
  fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what, strerror(errno));
  exit(1);
}

/* A decimal number from 0 to max for option opt, or a message and exit 1. */
static unsigned long parse_num(const char* opt, const char* s, unsigned long max) {
  char* end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || *s == '\0' || *end != '\0' || s[0] == '-' || v > max) {
    fprintf(stderr, "%s: invalid value for %s: '%s'\n", program_invocation_short_name, opt, s);
    exit(1);
  }
  return v;
}

/* Runs the calling process (and what it forks) on CPU `cpu` only, or exits 1. */
static inline void pin_to_cpu(unsigned long cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) die("cannot pin to cpu");
}

/* Microseconds on CLOCK_MONOTONIC, for latency samples. */
static inline double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* qsort comparator for doubles, ascending (nearest-rank percentiles of latency samples). */
static inline int by_value(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

#endif
