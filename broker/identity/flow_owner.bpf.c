// Records which process opens each outgoing TCP connection and sends each UDP datagram, for
// pktbrokerd to read when the packet is queued.
//
// Attach points. This kernel refuses BPF trampolines (fentry/fexit and LSM programs fail to
// load with EPERM under its lockdown) and has no kprobes, and the tracepoints on the connect
// path fire before the source port is chosen. Cgroup programs, attached to the cgroup v2 root
// so that they see every process, run in the sending process's context before its packet can
// reach NFQUEUE:
//   - sockops, TCP_CONNECT_CB: in tcp_connect(), once the source port is chosen and before
//     the SYN goes out: the whole key (v4, v6, v4-mapped).
//   - cgroup/sendmsg4, sendmsg6: each datagram of an unconnected UDP socket, once its port is
//     bound. Its source address may be chosen later by routing: recorded as the socket's
//     bound address, or all zeros when it is bound to any (the broker then asks for both).
//   - cgroup/sock_create, connect4, connect6: by socket cookie, who made the socket and who
//     connected it last (connected UDP sends no sendmsg event). The broker finds a socket's
//     cookie with sock_diag.
//   - cgroup/sock_release: forgets the socket; tp_btf/sock_send_length records each send on a
//     connected UDP socket under its addresses. So a flow record is the last socket that used
//     its addresses: the broker trusts it at once while that socket is open, and otherwise
//     asks sock_diag whether another socket holds the addresses now.
#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "broker/identity/flow_owner_record.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, PKTB_FLOW_OWNER_ENTRIES);
  __type(key, struct pktb_flow_key);
  __type(value, struct pktb_flow_owner);
} flow_owners SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, PKTB_FLOW_OWNER_ENTRIES);
  __type(key, __u64);  // socket cookie
  __type(value, struct pktb_flow_owner);
} socket_owners SEC(".maps");

static __always_inline void current_owner(struct pktb_flow_owner* owner, __u64 cookie) {
  owner->socket_cookie = cookie;
  // Direct loads through BTF pointers (the verifier checks them; a NULL reads as 0): this
  // kernel's lockdown refuses bpf_probe_read_kernel.
  struct task_struct* task = bpf_get_current_task_btf();
  owner->start_boottime_ns = task->group_leader->start_boottime;
  struct mm_struct* mm = task->mm;
  if (mm) {
    struct file* exe = mm->exe_file;
    if (exe) {
      owner->exe_inode = exe->f_inode->i_ino;
      owner->exe_dev = exe->f_inode->i_sb->s_dev;
    }
  }
  const __u64 pid_tgid = bpf_get_current_pid_tgid();
  owner->tgid = pid_tgid >> 32;
  owner->pid = (__u32)pid_tgid;
  owner->uid = (__u32)bpf_get_current_uid_gid();
  owner->cgroup_id = bpf_get_current_cgroup_id();
  bpf_get_current_comm(owner->comm, sizeof(owner->comm));
}

static __always_inline void record_flow(const struct pktb_flow_key* key, __u64 cookie) {
  struct pktb_flow_owner owner = {};
  current_owner(&owner, cookie);
  bpf_map_update_elem(&flow_owners, key, &owner, BPF_ANY);
}

static __always_inline void record_socket(__u64 cookie) {
  struct pktb_flow_owner owner = {};
  current_owner(&owner, cookie);
  bpf_map_update_elem(&socket_owners, &cookie, &owner, BPF_ANY);
}

// A socket from before the programs were attached is learnt by its first datagram.
static __always_inline void note_socket(__u64 cookie) {
  struct pktb_flow_owner owner = {};
  current_owner(&owner, cookie);
  bpf_map_update_elem(&socket_owners, &cookie, &owner, BPF_NOEXIST);
}

static __always_inline int v4_mapped(const __u32* address) {
  return address[0] == 0 && address[1] == 0 && address[2] == bpf_htonl(0xffff);
}

SEC("sockops")
int tcp_connect(struct bpf_sock_ops* ctx) {
  if (ctx->op != BPF_SOCK_OPS_TCP_CONNECT_CB) return 1;
  struct pktb_flow_key key = {.protocol = IPPROTO_TCP};
  key.src_port = bpf_htons((__u16)ctx->local_port);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  key.dst_port = (__u16)(ctx->remote_port >> 16);  // network order, in the high 16 bits
#else
  key.dst_port = (__u16)ctx->remote_port;
#endif
  __u32 remote[4] = {ctx->remote_ip6[0], ctx->remote_ip6[1], ctx->remote_ip6[2],
                     ctx->remote_ip6[3]};
  if (ctx->family == AF_INET || (ctx->family == AF_INET6 && v4_mapped(remote))) {
    key.family = AF_INET;
    __u32 src = ctx->local_ip4, dst = ctx->remote_ip4;
    __builtin_memcpy(key.src, &src, 4);
    __builtin_memcpy(key.dst, &dst, 4);
  } else if (ctx->family == AF_INET6) {
    __u32 local[4] = {ctx->local_ip6[0], ctx->local_ip6[1], ctx->local_ip6[2], ctx->local_ip6[3]};
    key.family = AF_INET6;
    __builtin_memcpy(key.src, local, 16);
    __builtin_memcpy(key.dst, remote, 16);
  } else {
    return 1;
  }
  record_flow(&key, bpf_get_socket_cookie(ctx));
  return 1;
}

SEC("cgroup/sendmsg4")
int udp_sendmsg4(struct bpf_sock_addr* ctx) {
  struct bpf_sock* sk = ctx->sk;
  if (ctx->protocol != IPPROTO_UDP || !sk) return 1;
  struct pktb_flow_key key = {.family = AF_INET, .protocol = IPPROTO_UDP};
  // Each field read on its own: the verifier refuses a pointer chosen by a branch.
  __u32 src = ctx->msg_src_ip4;
  const __u32 bound = sk->src_ip4, dst = ctx->user_ip4;
  if (src == 0) src = bound;
  __builtin_memcpy(key.src, &src, 4);
  __builtin_memcpy(key.dst, &dst, 4);
  key.src_port = bpf_htons((__u16)sk->src_port);
  key.dst_port = (__u16)ctx->user_port;
  const __u64 cookie = bpf_get_socket_cookie(ctx);
  note_socket(cookie);
  record_flow(&key, cookie);
  return 1;
}

SEC("cgroup/sendmsg6")
int udp_sendmsg6(struct bpf_sock_addr* ctx) {
  struct bpf_sock* sk = ctx->sk;
  if (ctx->protocol != IPPROTO_UDP || !sk) return 1;
  struct pktb_flow_key key = {.family = AF_INET6, .protocol = IPPROTO_UDP};
  __u32 dst[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
  __u32 src[4] = {ctx->msg_src_ip6[0], ctx->msg_src_ip6[1], ctx->msg_src_ip6[2],
                  ctx->msg_src_ip6[3]};
  const __u32 bound[4] = {sk->src_ip6[0], sk->src_ip6[1], sk->src_ip6[2], sk->src_ip6[3]};
  if ((src[0] | src[1] | src[2] | src[3]) == 0) __builtin_memcpy(src, bound, 16);
  if (v4_mapped(dst)) {  // sent as IPv4
    key.family = AF_INET;
    __builtin_memcpy(key.src, &src[3], 4);
    __builtin_memcpy(key.dst, &dst[3], 4);
  } else {
    __builtin_memcpy(key.src, src, 16);
    __builtin_memcpy(key.dst, dst, 16);
  }
  key.src_port = bpf_htons((__u16)sk->src_port);
  key.dst_port = (__u16)ctx->user_port;
  const __u64 cookie = bpf_get_socket_cookie(ctx);
  note_socket(cookie);
  record_flow(&key, cookie);
  return 1;
}

SEC("cgroup/sock_create")
int socket_create(struct bpf_sock* sk) {
  record_socket(bpf_get_socket_cookie(sk));
  return 1;
}

SEC("cgroup/connect4")
int socket_connect4(struct bpf_sock_addr* ctx) {
  record_socket(bpf_get_socket_cookie(ctx));
  return 1;
}

SEC("cgroup/connect6")
int socket_connect6(struct bpf_sock_addr* ctx) {
  record_socket(bpf_get_socket_cookie(ctx));
  return 1;
}

SEC("cgroup/sock_release")
int socket_release(struct bpf_sock* sk) {
  const __u64 cookie = bpf_get_socket_cookie(sk);
  bpf_map_delete_elem(&socket_owners, &cookie);
  return 1;
}

// After each send on a connected UDP socket (no sendmsg event above): its record under its
// addresses, for a socket closed before the broker looked. Fires once the datagram is queued;
// until then the socket is open, and sock_diag finds it.
SEC("tp_btf/sock_send_length")
int BPF_PROG(udp_sent, struct sock* sk, int length, int flags) {
  const struct sock_common* common = &sk->__sk_common;
  if (sk->sk_protocol != IPPROTO_UDP || common->skc_dport == 0) return 0;
  struct pktb_flow_key key = {.protocol = IPPROTO_UDP, .dst_port = common->skc_dport};
  key.src_port = bpf_htons(common->skc_num);
  struct in6_addr v6_dst = common->skc_v6_daddr;
  if (common->skc_family == AF_INET || v4_mapped(v6_dst.in6_u.u6_addr32)) {
    key.family = AF_INET;
    __builtin_memcpy(key.src, &common->skc_rcv_saddr, 4);
    __builtin_memcpy(key.dst, &common->skc_daddr, 4);
  } else if (common->skc_family == AF_INET6) {
    struct in6_addr v6_src = common->skc_v6_rcv_saddr;
    key.family = AF_INET6;
    __builtin_memcpy(key.src, &v6_src, 16);
    __builtin_memcpy(key.dst, &v6_dst, 16);
  } else {
    return 0;
  }
  record_flow(&key, bpf_get_socket_cookie(sk));
  return 0;
}
