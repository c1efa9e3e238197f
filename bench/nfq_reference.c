/*
 * nfq_reference - the "physical limit" NFQUEUE consumer for the benchmark harness.
 *
 * Binds one NFQUEUE (copy mode packet, GSO flag, queue max length 8192) and
 * accepts every packet as cheaply as possible: datagrams are received with recvmmsg() in
 * batches of up to 64, and after each batch ONE NFQNL_MSG_VERDICT_BATCH message accepts every
 * queued id up to the highest id seen in that batch. It does no policy work at all, so its
 * throughput is the upper bound any real consumer (pktbroker) can reach on the same setup.
 *
 * Usage: nfq_reference [--queue N] [--copy-range BYTES] [--cpu K] [--fail-open] [--uid-gid]
 *                      [--hop N]
 *   --queue N           queue number to bind (default 0)
 *   --copy-range BYTES  bytes of each packet copied to user space (default 128, max 65535)
 *   --cpu K             pin the process to CPU K
 *   --fail-open         let the kernel accept packets when the queue is full (default: drop,
 *                       so every packet delivered has been through this program)
 *   --uid-gid           ask for the sending socket's uid and gid (pktbrokerd's default)
 *   --hop N             hand every batch to N more processes (datagram i to process i mod N)
 *                       and wait for all their answers before the verdict: each one's share
 *                       goes over a SOCK_SEQPACKET socket pair in one message, the answer is
 *                       one small message back. What handing batches to other processes
 *                       costs, with no policy, codec or bookkeeping. It is not a floor: it
 *                       waits for every answer before it reads on, and a design that overlaps
 *                       the two (pktbrokerd) can do better.
 *
 * Runs until SIGINT/SIGTERM, then prints `packets=N batches=M` (M = verdict batches sent) to
 * stdout and exits 0. Errors go to stderr with exit status 1. Needs CAP_NET_ADMIN.
 *
 * Build: gcc -O2 -Wall -Wextra -std=gnu11 nfq_reference.c -o nfq_reference \
 *            -lnetfilter_queue -lmnl
 */
#define _GNU_SOURCE /* NOLINT(bugprone-reserved-identifier): glibc asks for this name */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>

#include "bench_cli.h"

#define BATCH 64                   /* datagrams per recvmmsg() */
#define DGRAM_SIZE (0xffff + 4096) /* largest packet copy plus netlink/nfqueue metadata */
#define QUEUE_MAXLEN 8192
#define RCVBUF_BYTES (64 << 20)

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static void usage(FILE* out) {
  fprintf(out,
          "usage: nfq_reference [--queue N] [--copy-range BYTES] [--cpu K] [--fail-open] "
          "[--uid-gid] [--hop N]\n");
}

/* Id bookkeeping for one recvmmsg() batch. Kernel ids are a wrapping u32 sequence, so
 * "highest" is decided with serial-number arithmetic, as the kernel does for verdict batches. */
struct batch {
  uint32_t max_id;
  unsigned packets;
  int error;  /* first netlink error reported by the kernel, 0 if none */
  bool acked; /* a success ack was seen */
};

static void note_id(struct batch* b, uint32_t id) {
  if (b->packets == 0 || (int32_t)(id - b->max_id) > 0) b->max_id = id;
  b->packets++;
}

/* Walks every netlink message of one datagram: packets update the batch, acks/errors are noted. */
static void walk_datagram(const void* buf, size_t len, struct batch* b) {
  int remaining = (int)len;
  for (const struct nlmsghdr* nlh = buf; mnl_nlmsg_ok(nlh, remaining);
       nlh = mnl_nlmsg_next(nlh, &remaining)) {
    if (nlh->nlmsg_type == NLMSG_ERROR) {
      const struct nlmsgerr* err = mnl_nlmsg_get_payload(nlh);
      if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*err))) continue;
      if (err->error == 0) {
        b->acked = true;
      } else if (b->error == 0) {
        b->error = -err->error;
      }
      continue;
    }
    if (NFNL_MSG_TYPE(nlh->nlmsg_type) != NFQNL_MSG_PACKET) continue;
    const struct nlattr* attr;
    mnl_attr_for_each(attr, nlh, sizeof(struct nfgenmsg)) {
      if (mnl_attr_get_type(attr) != NFQA_PACKET_HDR) continue;
      if (mnl_attr_get_payload_len(attr) < sizeof(struct nfqnl_msg_packet_hdr)) break;
      const struct nfqnl_msg_packet_hdr* ph = mnl_attr_get_payload(attr);
      note_id(b, ntohl(ph->packet_id));
      break;
    }
  }
}

/* The --hop process: answers each datagram with the number of bytes it read, until the pair
 * closes. */
static void answer_hops(int fd) {
  static char in[BATCH * DGRAM_SIZE];
  for (;;) {
    ssize_t n = recv(fd, in, sizeof in, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(0);
    uint32_t answer = (uint32_t)n;
    if (send(fd, &answer, sizeof answer, MSG_NOSIGNAL) < 0) _exit(1);
  }
}

#define MAX_HOPS 64

/* Sends each --hop process its share of one batch as one message, then waits for every answer. */
static void hop(const int* fds, int hops, struct mmsghdr* msgs, struct iovec* parts, int n) {
  int sent = 0;
  for (int h = 0; h < hops && h < n; h++, sent++) {
    size_t count = 0;
    for (int i = h; i < n; i += hops)
      parts[count++] =
          (struct iovec){.iov_base = msgs[i].msg_hdr.msg_iov->iov_base, .iov_len = msgs[i].msg_len};
    struct msghdr m = {.msg_iov = parts, .msg_iovlen = count};
    while (sendmsg(fds[h], &m, MSG_NOSIGNAL) < 0)
      if (errno != EINTR) die("cannot hand the batch over");
  }
  for (int h = 0; h < sent; h++) {
    uint32_t answer;
    while (recv(fds[h], &answer, sizeof answer, 0) < 0)
      if (errno != EINTR) die("no answer from a hop process");
  }
}

int main(int argc, char** argv) {
  static const struct option opts[] = {
      {"queue", required_argument, NULL, 'q'}, {"copy-range", required_argument, NULL, 'c'},
      {"cpu", required_argument, NULL, 'p'},   {"fail-open", no_argument, NULL, 'f'},
      {"uid-gid", no_argument, NULL, 'u'},     {"hop", required_argument, NULL, 'o'},
      {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
  };
  unsigned queue = 0, copy_range = 128;
  uint32_t flags = NFQA_CFG_F_GSO;
  long cpu = -1;
  int hops = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (opt) {
      case 'q': queue = parse_num("--queue", optarg, 65535); break;
      case 'c': copy_range = parse_num("--copy-range", optarg, 65535); break;
      case 'p': cpu = parse_num("--cpu", optarg, CPU_SETSIZE - 1); break;
      case 'f': flags |= NFQA_CFG_F_FAIL_OPEN; break;
      case 'u': flags |= NFQA_CFG_F_UID_GID; break;
      case 'o': hops = (int)parse_num("--hop", optarg, MAX_HOPS); break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 1;
    }
  }
  if (optind != argc) {
    usage(stderr);
    return 1;
  }

  if (cpu >= 0) pin_to_cpu((unsigned long)cpu);

  int hop_fds[MAX_HOPS];
  for (int h = 0; h < hops; h++) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, pair) < 0) die("cannot make the hop socket pair");
    int big = BATCH * DGRAM_SIZE; /* one whole batch fits in one message */
    if (setsockopt(pair[0], SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) < 0)
      setsockopt(pair[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    pid_t child = fork();
    if (child < 0) die("cannot start the hop process");
    if (child == 0) {
      close(pair[0]);
      for (int earlier = 0; earlier < h; earlier++) close(hop_fds[earlier]); /* their EOF */
      answer_hops(pair[1]);
    }
    close(pair[1]);
    hop_fds[h] = pair[0];
  }

  struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: recvmmsg must return */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  struct mnl_socket* nl = mnl_socket_open(NETLINK_NETFILTER);
  if (nl == NULL) die("cannot open netlink socket");
  if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) die("cannot bind netlink socket");
  int fd = mnl_socket_get_fd(nl);
  int one = 1, rcvbuf = RCVBUF_BYTES;
  /* Without CAP_NET_ADMIN in the initial namespace, fall back to a buffer capped by rmem_max. */
  bool rcvbuf_forced = setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) == 0;
  if (!rcvbuf_forced) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  if (mnl_socket_setsockopt(nl, NETLINK_NO_ENOBUFS, &one, sizeof(one)) < 0)
    die("cannot set NETLINK_NO_ENOBUFS");
  /* Wake up periodically so a signal that lands just before recvmmsg() is never missed. */
  struct timeval tick = {.tv_sec = 0, .tv_usec = 200 * 1000};
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tick, sizeof(tick)) < 0)
    die("cannot set SO_RCVTIMEO");

  static char bufs[BATCH][DGRAM_SIZE];
  static struct iovec iov[BATCH];
  static struct mmsghdr msgs[BATCH];
  static struct iovec hop_parts[BATCH];
  for (int i = 0; i < BATCH; i++) {
    iov[i] = (struct iovec){.iov_base = bufs[i], .iov_len = DGRAM_SIZE};
    msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1};
  }

  /* One config message: bind, copy mode, max length and flags, acknowledged by the kernel. */
  char cfg[MNL_SOCKET_BUFFER_SIZE];
  struct nlmsghdr* nlh = nfq_nlmsg_put(cfg, NFQNL_MSG_CONFIG, queue);
  nlh->nlmsg_flags |= NLM_F_ACK;
  nfq_nlmsg_cfg_put_cmd(nlh, AF_UNSPEC, NFQNL_CFG_CMD_BIND);
  nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, (int)copy_range);
  mnl_attr_put_u32(nlh, NFQA_CFG_QUEUE_MAXLEN, htonl(QUEUE_MAXLEN));
  mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(flags));
  mnl_attr_put_u32(nlh, NFQA_CFG_MASK,
                   htonl(NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_UID_GID));
  if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) die("cannot send queue config");

  char vbuf[256];
  uint64_t packets = 0, batches = 0;
  bool bound = false;
  while (!stop) {
    int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ENOBUFS) continue;
      die("recvmmsg failed");
    }
    struct batch b = {0};
    for (int i = 0; i < n; i++) walk_datagram(bufs[i], msgs[i].msg_len, &b);
    if (!bound) {
      if (b.error) {
        fprintf(stderr, "nfq_reference: cannot bind queue %u: %s\n", queue, strerror(b.error));
        return 1;
      }
      bound = b.acked;
      if (bound && !rcvbuf_forced)
        fprintf(stderr, "nfq_reference: SO_RCVBUFFORCE not permitted, receive buffer capped\n");
    } else if (b.error) {
      fprintf(stderr, "nfq_reference: kernel reported: %s\n", strerror(b.error));
    }
    if (b.packets == 0) continue;
    if (hops > 0) hop(hop_fds, hops, msgs, hop_parts, n);
    struct nlmsghdr* v = nfq_nlmsg_put(vbuf, NFQNL_MSG_VERDICT_BATCH, queue);
    nfq_nlmsg_verdict_put(v, (int)b.max_id, NF_ACCEPT);
    if (mnl_socket_sendto(nl, v, v->nlmsg_len) < 0) die("cannot send verdict");
    packets += b.packets;
    batches++;
  }

  printf("packets=%" PRIu64 " batches=%" PRIu64 "\n", packets, batches);
  mnl_socket_close(nl);
  return 0;
}
