/* A libnetfilter_queue program in the libmnl style of the library's own example
 * (nf-queue.c): it talks netlink itself through libmnl, builds its requests with the nlmsg API
 * and parses packets with nfq_nlmsg_parse(); it waits with epoll. Written against the real
 * headers; the tests run it bound to a kernel queue directly and, unchanged, through pktbrokerd
 * with LD_PRELOAD. Arguments and output as nfq_classic's. */
#include "packet_action.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

static struct mnl_socket* nl;
static struct packet_action action;
static long remaining; /* packets left to handle when a count was given */
static uint32_t unanswered;
static volatile sig_atomic_t stopping;

static void stop(int signum) {
  (void)signum;
  stopping = 1;
}

static void send_verdict(uint16_t queue, uint32_t id, int type, uint32_t verdict,
                         const uint32_t* mark, const void* payload, uint32_t length) {
  char buf[MNL_SOCKET_BUFFER_SIZE + 0xffff];
  struct nlmsghdr* nlh = nfq_nlmsg_put(buf, type, queue);
  nfq_nlmsg_verdict_put(nlh, (int)id, (int)verdict);
  if (mark) nfq_nlmsg_verdict_put_mark(nlh, *mark);
  if (payload) nfq_nlmsg_verdict_put_pkt(nlh, payload, length);
  if (action.kind == ACTION_CONNMARK) { /* as nf-queue.c does */
    struct nlattr* nest = mnl_attr_nest_start(nlh, NFQA_CT);
    mnl_attr_put_u32(nlh, CTA_MARK, htonl(action.value));
    mnl_attr_nest_end(nlh, nest);
  }
  if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
    perror("mnl_socket_send");
    exit(EXIT_FAILURE);
  }
}

static int queue_cb(const struct nlmsghdr* nlh, void* data) {
  (void)data;
  struct nlattr* attr[NFQA_MAX + 1] = {0};
  if (nfq_nlmsg_parse(nlh, attr) < 0) {
    perror("problems parsing");
    return MNL_CB_ERROR;
  }
  struct nfgenmsg* nfg = mnl_nlmsg_get_payload(nlh);
  uint16_t queue = ntohs(nfg->res_id);
  if (attr[NFQA_PACKET_HDR] == NULL) {
    fputs("metaheader not set\n", stderr);
    return MNL_CB_ERROR;
  }
  struct nfqnl_msg_packet_hdr* ph = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
  uint32_t id = ntohl(ph->packet_id);
  unsigned char* payload = attr[NFQA_PAYLOAD] ? mnl_attr_get_payload(attr[NFQA_PAYLOAD]) : NULL;
  int length = attr[NFQA_PAYLOAD] ? (int)mnl_attr_get_payload_len(attr[NFQA_PAYLOAD]) : -1;
  uint32_t mark = attr[NFQA_MARK] ? ntohl(mnl_attr_get_u32(attr[NFQA_MARK])) : 0;
  uint32_t indev = attr[NFQA_IFINDEX_INDEV] ? ntohl(mnl_attr_get_u32(attr[NFQA_IFINDEX_INDEV])) : 0;
  uint32_t outdev =
      attr[NFQA_IFINDEX_OUTDEV] ? ntohl(mnl_attr_get_u32(attr[NFQA_IFINDEX_OUTDEV])) : 0;
  uint32_t uid = attr[NFQA_UID] ? ntohl(mnl_attr_get_u32(attr[NFQA_UID])) : 0;
  print_packet(id, ph->hook, ntohs(ph->hw_protocol), mark, indev, outdev, attr[NFQA_UID] != NULL,
               uid, payload, length);

  switch (action.kind) {
    case ACTION_ACCEPT: send_verdict(queue, id, NFQNL_MSG_VERDICT, NF_ACCEPT, NULL, NULL, 0); break;
    case ACTION_DROP: send_verdict(queue, id, NFQNL_MSG_VERDICT, NF_DROP, NULL, NULL, 0); break;
    case ACTION_MARK:
      send_verdict(queue, id, NFQNL_MSG_VERDICT, NF_ACCEPT, &action.value, NULL, 0);
      break;
    case ACTION_REWRITE:
      rewrite_udp(payload, length);
      send_verdict(queue, id, NFQNL_MSG_VERDICT, NF_ACCEPT, NULL, payload, (uint32_t)length);
      break;
    case ACTION_BATCH:
      if (++unanswered == action.value) {
        unanswered = 0;
        send_verdict(queue, id, NFQNL_MSG_VERDICT_BATCH, NF_ACCEPT, NULL, NULL, 0);
      }
      break;
    case ACTION_IGNORE: break;
    case ACTION_VERDICT:
      send_verdict(queue, id, NFQNL_MSG_VERDICT, action.value, NULL, NULL, 0);
      break;
    case ACTION_CONNMARK:
      send_verdict(queue, id, NFQNL_MSG_VERDICT, NF_ACCEPT, NULL, NULL, 0);
      break;
  }
  if (remaining > 0) remaining--;
  return MNL_CB_OK;
}

/* Sends a configuration request; with `ack`, waits for the kernel's acknowledgement. */
static void request(struct nlmsghdr* nlh, int ack, char* buf, size_t size, unsigned int portid) {
  static unsigned int seq = 1;
  nlh->nlmsg_seq = seq++;
  if (ack) nlh->nlmsg_flags |= NLM_F_ACK;
  if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
    perror("mnl_socket_send");
    exit(EXIT_FAILURE);
  }
  if (!ack) return;
  unsigned int expected = nlh->nlmsg_seq;
  ssize_t ret = mnl_socket_recvfrom(nl, buf, size);
  if (ret < 0 || mnl_cb_run(buf, (size_t)ret, expected, portid, NULL, NULL) < 0) {
    perror("acknowledgement");
    exit(EXIT_FAILURE);
  }
  printf("acknowledged seq=%u\n", expected);
  fflush(stdout);
}

int main(int argc, char** argv) {
  uint32_t flags = 0;
  if (argc < 3 || parse_action(argv[2], &action) < 0 ||
      (argc > 4 && parse_flags(argv[4], &flags) < 0)) {
    fprintf(stderr, "usage: %s QUEUE ACTION [COUNT [FLAGS]]\n", argv[0]);
    return 2;
  }
  uint16_t queue_num = (uint16_t)atoi(argv[1]);
  const long count = argc > 3 ? strtol(argv[3], NULL, 0) : 0;
  remaining = count;
  signal(SIGTERM, stop);
  size_t sizeof_buf = 0xffff + (MNL_SOCKET_BUFFER_SIZE / 2);
  char* buf = malloc(sizeof_buf);

  nl = mnl_socket_open(NETLINK_NETFILTER);
  if (nl == NULL) {
    perror("mnl_socket_open");
    exit(EXIT_FAILURE);
  }
  if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    perror("mnl_socket_bind");
    exit(EXIT_FAILURE);
  }
  unsigned int portid = mnl_socket_get_portid(nl);

  /* With NFQ_TOOL_ACK set, each request asks for an acknowledgement and waits for it. */
  int ack = getenv("NFQ_TOOL_ACK") != NULL;
  struct nlmsghdr* nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, queue_num);
  nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
  request(nlh, ack, buf, sizeof_buf, portid);
  uint8_t mode;
  uint32_t range;
  copy_setting(&mode, &range);
  nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, queue_num);
  nfq_nlmsg_cfg_put_params(nlh, mode, (int)range);
  if (flags) {
    mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(flags));
    mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(flags));
  }
  request(nlh, ack, buf, sizeof_buf, portid);
  int on = 1;
  mnl_socket_setsockopt(nl, NETLINK_NO_ENOBUFS, &on, sizeof(int));

  int epoll = epoll_create1(0);
  struct epoll_event event = {.events = EPOLLIN};
  if (epoll_ctl(epoll, EPOLL_CTL_ADD, mnl_socket_get_fd(nl), &event) < 0) {
    perror("epoll_ctl");
    exit(EXIT_FAILURE);
  }
  printf("ready\n");
  fflush(stdout);
  while (!stopping) {
    if (epoll_wait(epoll, &event, 1, -1) < 0) {
      if (errno == EINTR) continue;
      perror("epoll_wait");
      exit(EXIT_FAILURE);
    }
    ssize_t ret = mnl_socket_recvfrom(nl, buf, sizeof_buf);
    if (ret == -1) {
      perror("mnl_socket_recvfrom");
      exit(EXIT_FAILURE);
    }
    if (mnl_cb_run(buf, ret, 0, portid, queue_cb, NULL) < 0) {
      perror("mnl_cb_run");
      exit(EXIT_FAILURE);
    }
    if (count > 0 && remaining == 0) break;
  }
  mnl_socket_close(nl);
  free(buf);
  printf("done\n");
  return 0;
}
