/*
 * tcp_connects - what a queue adds to opening TCP connections, for the identity benchmark.
 *
 *   tcp_connects --listen PORT
 *       accepts connections on 127.0.0.1:PORT and closes them, until killed
 *   tcp_connects --port PORT --count N
 *       opens N connections one after another; prints `count=N p50_us=X p99_us=Y`, the time
 *       connect() took (nearest-rank percentiles)
 *   tcp_connects --port PORT --programs K --each M
 *       K processes each open M connections at once, all started together; prints
 *       `connections=K*M all_ms=T`, the time until every one of them was established
 */
#define _GNU_SOURCE /* NOLINT(bugprone-reserved-identifier): glibc asks for this name */
#include "bench_cli.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in loopback(unsigned long port) {
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

static void serve(unsigned long port) {
  const struct sockaddr_in address = loopback(port);
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  const int yes = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  if (bind(listener, (const struct sockaddr*)&address, sizeof address) != 0) die("bind");
  if (listen(listener, 4096) != 0) die("listen");
  for (;;) {
    const int peer = accept(listener, NULL, NULL);
    if (peer >= 0) close(peer);
  }
}

static void one_after_another(unsigned long port, unsigned long count) {
  const struct sockaddr_in address = loopback(port);
  double* took = calloc(count, sizeof *took);
  if (took == NULL) die("calloc");
  for (unsigned long i = 0; i < count; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    const double start = now_us();
    if (connect(fd, (const struct sockaddr*)&address, sizeof address) != 0) die("connect");
    took[i] = now_us() - start;
    close(fd);
  }
  qsort(took, count, sizeof *took, by_value);
  printf("count=%lu p50_us=%.1f p99_us=%.1f\n", count, took[(count - 1) / 2],
         took[(count * 99 + 99) / 100 - 1]);
  free(took);
}

/* A child: waits for the start byte, opens `each` connections at once, waits for them all. */
static void open_together(int start, unsigned long port, unsigned long each) {
  const struct sockaddr_in address = loopback(port);
  char go;
  if (read(start, &go, 1) != 1) die("waiting for the start");
  struct pollfd* fds = calloc(each, sizeof *fds);
  if (fds == NULL) die("calloc");
  for (unsigned long i = 0; i < each; ++i) {
    fds[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    fds[i].events = POLLOUT;
    if (connect(fds[i].fd, (const struct sockaddr*)&address, sizeof address) != 0 &&
        errno != EINPROGRESS) {
      die("connect");
    }
  }
  for (unsigned long open = each; open > 0;) {
    if (poll(fds, each, 10000) <= 0) die("poll (connections not established in 10 s)");
    for (unsigned long i = 0; i < each; ++i) {
      if (fds[i].fd >= 0 && (fds[i].revents & (POLLOUT | POLLERR | POLLHUP)) != 0) {
        int error = 0;
        socklen_t length = sizeof error;
        getsockopt(fds[i].fd, SOL_SOCKET, SO_ERROR, &error, &length);
        if (error != 0) {
          errno = error;
          die("connect");
        }
        close(fds[i].fd);
        fds[i].fd = -1;
        --open;
      }
    }
  }
  exit(0);
}

static void all_at_once(unsigned long port, unsigned long programs, unsigned long each) {
  int start[2];
  if (pipe(start) != 0) die("pipe");
  for (unsigned long i = 0; i < programs; ++i) {
    const pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
      close(start[1]);
      open_together(start[0], port, each);
    }
  }
  close(start[0]);
  usleep(100000);  // every child waits on the pipe
  char go[1024] = {0};
  const double begun = now_us();
  if (write(start[1], go, programs) != (ssize_t)programs) die("starting the children");
  int failed = 0;
  for (unsigned long i = 0; i < programs; ++i) {
    int status = 0;
    wait(&status);
    failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
  }
  if (failed) {
    fprintf(stderr, "tcp_connects: a child failed\n");
    exit(1);
  }
  printf("connections=%lu all_ms=%.2f\n", programs * each, (now_us() - begun) / 1000);
}

int main(int argc, char** argv) {
  unsigned long listen_port = 0, port = 0, count = 0, programs = 0, each = 0;
  static const struct option options[] = {
      {"listen", required_argument, NULL, 'l'}, {"port", required_argument, NULL, 'p'},
      {"count", required_argument, NULL, 'n'},  {"programs", required_argument, NULL, 'k'},
      {"each", required_argument, NULL, 'e'},   {NULL, 0, NULL, 0}};
  for (int opt; (opt = getopt_long(argc, argv, "", options, NULL)) != -1;) {
    switch (opt) {
      case 'l': listen_port = parse_num("--listen", optarg, 65535); break;
      case 'p': port = parse_num("--port", optarg, 65535); break;
      case 'n': count = parse_num("--count", optarg, 1000000); break;
      case 'k': programs = parse_num("--programs", optarg, 1024); break;
      case 'e': each = parse_num("--each", optarg, 10000); break;
      default: return 2;
    }
  }
  if (listen_port != 0) serve(listen_port);
  if (port != 0 && count != 0) {
    one_after_another(port, count);
  } else if (port != 0 && programs != 0 && each != 0) {
    all_at_once(port, programs, each);
  } else {
    fprintf(stderr,
            "usage: tcp_connects --listen PORT | --port PORT --count N | --port PORT "
            "--programs K --each M\n");
    return 2;
  }
  return 0;
}
