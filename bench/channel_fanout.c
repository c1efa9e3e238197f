/*
 * channel_fanout - the bare reference for the channel benchmark: the same fan-out as a broker
 * broadcast channel, without the broker.
 *
 *   channel_fanout hub IN_PATH OUT_PATH MEMBERS
 *       accepts MEMBERS receivers on OUT_PATH, then one sender on IN_PATH; reads the sender's
 *       datagrams with recvmmsg (up to 64 at once) and writes each batch to every receiver with
 *       sendmmsg, blocking while a receiver is full (so nothing is lost); exits when the sender
 *       closes.
 *   channel_fanout send IN_PATH COUNT SIZE
 *       sends COUNT datagrams of SIZE bytes with sendmmsg, 64 at a time.
 *   channel_fanout receive OUT_PATH COUNT
 *       reads COUNT datagrams, then prints `received COUNT seconds S`.
 *
 * All sockets are AF_UNIX SOCK_SEQPACKET, as the broker's. Prints `ready` once listening or
 * connected. Exit 1 on error.
 */
#define _GNU_SOURCE /* NOLINT(bugprone-reserved-identifier): glibc asks for this name */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum { batch = 64, max_members = 64, max_size = 65536 };

static struct sockaddr_un address_of(const char* path) {
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  strncpy(address.sun_path, path, sizeof address.sun_path - 1);
  return address;
}

static int listening(const char* path) {
  const struct sockaddr_un address = address_of(path);
  const int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  unlink(path);
  if (fd < 0 || bind(fd, (const struct sockaddr*)&address, sizeof address) != 0 ||
      listen(fd, max_members) != 0) {
    perror(path);
    exit(1);
  }
  return fd;
}

static int connected(const char* path) {
  const struct sockaddr_un address = address_of(path);
  const int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  if (fd < 0 || connect(fd, (const struct sockaddr*)&address, sizeof address) != 0) {
    perror(path);
    exit(1);
  }
  return fd;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static char buffers[batch][max_size];
static struct iovec parts[batch];
static struct mmsghdr messages[batch];

static void prepare(size_t size) {
  for (int i = 0; i < batch; ++i) {
    parts[i] = (struct iovec){buffers[i], size};
    messages[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &parts[i], .msg_iovlen = 1}};
  }
}

/* Writes n prepared messages whole, blocking as needed. */
static void send_all(int fd, unsigned n) {
  for (unsigned sent = 0; sent < n;) {
    const int done = sendmmsg(fd, messages + sent, n - sent, 0);
    if (done < 0) {
      perror("sendmmsg");
      exit(1);
    }
    sent += (unsigned)done;
  }
}

static int hub(const char* in_path, const char* out_path, int members) {
  int receivers[max_members];
  const int out = listening(out_path);
  const int in = listening(in_path);
  printf("ready\n");
  fflush(stdout);
  for (int i = 0; i < members; ++i) receivers[i] = accept(out, NULL, NULL);
  const int sender = accept(in, NULL, NULL);
  prepare(max_size);
  for (;;) {
    for (int i = 0; i < batch; ++i) parts[i].iov_len = max_size;
    const int n = recvmmsg(sender, messages, batch, MSG_WAITFORONE, NULL);
    int data = 0; /* the datagrams before the end of the stream (an empty one) */
    while (data < n && messages[data].msg_len > 0) {
      parts[data].iov_len = messages[data].msg_len;
      ++data;
    }
    for (int r = 0; r < members && data > 0; ++r) send_all(receivers[r], (unsigned)data);
    if (n <= 0 || data < n) break; /* the sender closed */
  }
  for (int r = 0; r < members; ++r) close(receivers[r]);
  return 0;
}

static int sender(const char* path, long count, size_t size) {
  const int fd = connected(path);
  prepare(size);
  for (long sent = 0; sent < count;) {
    const unsigned n = count - sent < batch ? (unsigned)(count - sent) : batch;
    send_all(fd, n);
    sent += n;
  }
  printf("sent %ld\n", count);
  return 0;
}

static int receiver(const char* path, long count) {
  const int fd = connected(path);
  printf("ready\n");
  fflush(stdout);
  prepare(max_size);
  const double started = now();
  long received = 0;
  while (received < count) {
    for (int i = 0; i < batch; ++i) parts[i].iov_len = max_size;
    const int n = recvmmsg(fd, messages, batch, MSG_WAITFORONE, NULL);
    int data = 0;
    while (data < n && messages[data].msg_len > 0) ++data;
    received += data;
    if (data < n || n <= 0) break; /* the hub closed */
  }
  printf("received %ld seconds %.6f\n", received, now() - started);
  return received == count ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc == 5 && strcmp(argv[1], "hub") == 0) return hub(argv[2], argv[3], atoi(argv[4]));
  if (argc == 5 && strcmp(argv[1], "send") == 0) {
    return sender(argv[2], atol(argv[3]), (size_t)atol(argv[4]));
  }
  if (argc == 4 && strcmp(argv[1], "receive") == 0) return receiver(argv[2], atol(argv[3]));
  fprintf(stderr,
          "usage: channel_fanout hub IN OUT MEMBERS | send IN COUNT SIZE | receive OUT COUNT\n");
  return 2;
}
