// The eBPF programs that record each flow's sending process (flow_owner.bpf.c), loaded and
// attached to the cgroup v2 root, and their maps read by key.
#pragma once

#include "broker/identity/socket_key.hpp"

#include <memory>
#include <optional>
#include <string>

struct flow_owner;  // the bpftool-generated skeleton

namespace pktbroker {

class FlowOwnerMap {
 public:
  /// Loads and attaches the programs; nullptr when the kernel or our privileges do not allow
  /// it (no CAP_BPF/CAP_NET_ADMIN/CAP_SYS_ADMIN, no cgroup v2), with the reason in `why_not`.
  static std::unique_ptr<FlowOwnerMap> open(std::string& why_not);
  ~FlowOwnerMap();
  FlowOwnerMap(const FlowOwnerMap&) = delete;
  FlowOwnerMap& operator=(const FlowOwnerMap&) = delete;

  /// The process that last connected (TCP) or sent (unconnected UDP) with this key.
  /// Thread-safe: one syscall, two for a UDP key not bound to its address.
  [[nodiscard]] std::optional<pktb_flow_owner> lookup(const SocketKey& key) const noexcept;
  /// The process that last connected the socket with this cookie, or made it.
  [[nodiscard]] std::optional<pktb_flow_owner> lookup_socket(std::uint64_t cookie) const noexcept;

 private:
  explicit FlowOwnerMap(flow_owner* skeleton) noexcept;
  flow_owner* skeleton_;
  int flows_fd_;
  int sockets_fd_;
};

}  // namespace pktbroker
