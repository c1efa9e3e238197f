/* The BPF map's key and value, shared by flow_owner.bpf.c and its loader (plain C layout). */
#ifndef PKTBROKER_FLOW_OWNER_RECORD_H
#define PKTBROKER_FLOW_OWNER_RECORD_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define PKTB_FLOW_OWNER_ENTRIES 65536
#define PKTB_COMM_LEN 16

/* A packet's addresses and ports as the sender sees them (source = the local socket). IPv4
 * addresses fill the first 4 bytes; ports in network byte order. A UDP datagram's source
 * address is all zeros when its socket is bound to any address. */
struct pktb_flow_key {
  __u8 family; /* AF_INET or AF_INET6 */
  __u8 protocol;
  __be16 src_port;
  __be16 dst_port;
  __u8 pad[2];
  __u8 src[16];
  __u8 dst[16];
};

/* The process that connected or sent last on that key (or socket). */
struct pktb_flow_owner {
  __u32 tgid;
  __u32 pid;
  __u32 uid;
  __u32 pad;
  __u64 cgroup_id;
  __u64 start_boottime_ns; /* when the process started: with tgid, names it (pids are reused) */
  __u64 exe_inode;         /* its executable (device and inode): an exec into another binary */
  __u64 exe_dev;           /*   changes them */
  __u64 socket_cookie;     /* the socket: a record whose socket was closed is stale */
  char comm[PKTB_COMM_LEN];
};

#endif
