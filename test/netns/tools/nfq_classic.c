/* A libnetfilter_queue program in the classic style of the library's own example
 * (nfqnl_test.c): a callback per packet, select() on nfq_fd(), recv() into its own buffer.
 * Written against the real headers; the tests run it bound to a kernel queue directly and,
 * unchanged, through pktbrokerd with LD_PRELOAD (or relinked against libpktbroker-nfq).
 *
 *   nfq_classic QUEUE ACTION [COUNT [FLAGS]]
 *
 * ACTION is accept, drop, mark:VALUE, rewrite, batch:N, ignore or verdict:V (packet_action.h);
 * COUNT packets are handled before it exits (0: until SIGTERM); FLAGS are NFQA_CFG_F_* names
 * (uidgid,gso,conntrack,secctx). Prints "ready", a line per packet, then "done".
 * Environment: NFQ_TOOL_COPY (packet_action.h); NFQ_TOOL_FAIL_EVERY=N makes the callback return
 * -1 for every Nth packet, after its verdict; NFQ_TOOL_SECOND_QUEUE_AFTER_MS=MS prints "bound",
 * waits MS without reading, then binds queue QUEUE+1 too. */
#include "packet_action.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

static struct packet_action action;
static long remaining; /* packets left to handle when a count was given */
static long fail_every;
static long handled;
static uint32_t unanswered;
static volatile sig_atomic_t stopping;

static void stop(int signum) {
  (void)signum;
  stopping = 1;
}

static int decide(struct nfq_q_handle* qh, uint32_t id, unsigned char* payload, int length) {
  switch (action.kind) {
    case ACTION_ACCEPT: return nfq_set_verdict(qh, id, NF_ACCEPT, 0, NULL);
    case ACTION_DROP: return nfq_set_verdict(qh, id, NF_DROP, 0, NULL);
    case ACTION_MARK: return nfq_set_verdict2(qh, id, NF_ACCEPT, action.value, 0, NULL);
    case ACTION_REWRITE:
      rewrite_udp(payload, length);
      return nfq_set_verdict(qh, id, NF_ACCEPT, (uint32_t)length, payload);
    case ACTION_BATCH:
      if (++unanswered < action.value) return 0;
      unanswered = 0;
      return nfq_set_verdict_batch(qh, id, NF_ACCEPT);
    case ACTION_IGNORE: return 0;
    case ACTION_VERDICT: return nfq_set_verdict(qh, id, action.value, 0, NULL);
    case ACTION_CONNMARK: break; /* the classic API cannot set one */
  }
  return -1;
}

static int callback(struct nfq_q_handle* qh, struct nfgenmsg* nfmsg, struct nfq_data* nfa,
                    void* data) {
  (void)nfmsg;
  (void)data;
  struct nfqnl_msg_packet_hdr* ph = nfq_get_msg_packet_hdr(nfa);
  uint32_t id = ntohl(ph->packet_id);
  unsigned char* payload = NULL;
  int length = nfq_get_payload(nfa, &payload);
  uint32_t uid = 0;
  int has_uid = nfq_get_uid(nfa, &uid);
  print_packet(id, ph->hook, ntohs(ph->hw_protocol), nfq_get_nfmark(nfa), nfq_get_indev(nfa),
               nfq_get_outdev(nfa), has_uid, uid, payload, length);
  if (decide(qh, id, payload, length) < 0) {
    printf("verdict-error id=%u errno=%d\n", id, errno);
    fflush(stdout);
  }
  if (remaining > 0) remaining--;
  return fail_every > 0 && ++handled % fail_every == 0 ? -1 : 0;
}

static struct nfq_handle* h;

/* Says why on stderr and closes the handle (so a leak checker sees a clean exit). */
static int fail(const char* why) {
  fprintf(stderr, "%s\n", why);
  if (h) nfq_close(h);
  return 1;
}

int main(int argc, char** argv) {
  char buf[4096] __attribute__((aligned));
  uint32_t flags = 0;
  if (argc < 3 || parse_action(argv[2], &action) < 0 ||
      (argc > 4 && parse_flags(argv[4], &flags) < 0)) {
    fprintf(stderr, "usage: %s QUEUE ACTION [COUNT [FLAGS]]\n", argv[0]);
    return 2;
  }
  const long count = argc > 3 ? strtol(argv[3], NULL, 0) : 0;
  remaining = count;
  signal(SIGTERM, stop);

  h = nfq_open();
  if (!h) {
    fprintf(stderr, "error during nfq_open(): %s\n", strerror(errno));
    return 1;
  }
  if (nfq_unbind_pf(h, AF_INET) < 0 || nfq_bind_pf(h, AF_INET) < 0) {
    return fail("error during nfq_(un)bind_pf()");
  }
  struct nfq_q_handle* qh = nfq_create_queue(h, (uint16_t)atoi(argv[1]), &callback, NULL);
  if (!qh) return fail("error during nfq_create_queue()");
  uint8_t mode;
  uint32_t range;
  copy_setting(&mode, &range);
  if (nfq_set_mode(qh, mode, range) < 0) return fail("can't set packet_copy mode");
  if (flags && nfq_set_queue_flags(qh, flags, flags) < 0) return fail("can't set queue flags");
  const char* every = getenv("NFQ_TOOL_FAIL_EVERY");
  fail_every = every ? strtol(every, NULL, 0) : 0;
  const char* second = getenv("NFQ_TOOL_SECOND_QUEUE_AFTER_MS");
  struct nfq_q_handle* qh2 = NULL;
  if (second) {
    printf("bound\n");
    fflush(stdout);
    usleep((useconds_t)atoi(second) * 1000);
    qh2 = nfq_create_queue(h, (uint16_t)(atoi(argv[1]) + 1), &callback, NULL);
    if (!qh2 || nfq_set_mode(qh2, mode, range) < 0) return fail("error binding the second queue");
  }
  int fd = nfq_fd(h);
  printf("ready\n");
  fflush(stdout);
  while (!stopping) {
    fd_set readable;
    FD_ZERO(&readable);
    FD_SET(fd, &readable);
    if (select(fd + 1, &readable, NULL, NULL, NULL) < 0) {
      if (errno == EINTR) continue;
      perror("select");
      return 1;
    }
    /* As nfqnl_test.c: whatever recv() returns short of an error goes to nfq_handle_packet. */
    int rv = (int)recv(fd, buf, sizeof(buf), 0);
    if (rv >= 0) {
      nfq_handle_packet(h, buf, rv);
      if (count > 0 && remaining == 0) break;
      continue;
    }
    if (errno == ENOBUFS) continue;
    fprintf(stderr, "recv: %s\n", strerror(errno));
    break;
  }
  if (qh2) nfq_destroy_queue(qh2);
  nfq_destroy_queue(qh);
  nfq_close(h);
  printf("done\n");
  return 0;
}
