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

  struct Record {
    pktb_flow_owner owner;
    bool open = false;  ///< its socket is still open (else another may hold the key now)
  };
  /// The last socket that used this key: the process that connected it (TCP), sent from it
  /// (unconnected UDP) or connected it (connected UDP, recorded as it closed). Thread-safe:
  /// two syscalls, four for a UDP socket bound to any address.
  [[nodiscard]] std::optional<Record> lookup(const SocketKey& key) const noexcept;
  /// The process that last connected the socket with this cookie, or made it.
  [[nodiscard]] std::optional<pktb_flow_owner> lookup_socket(std::uint64_t cookie) const noexcept;

 private:
  explicit FlowOwnerMap(flow_owner* skeleton) noexcept;
  [[nodiscard]] bool open(const pktb_flow_owner& owner) const noexcept;
  flow_owner* skeleton_;
  int flows_fd_;
  int sockets_fd_;
};

}  // namespace pktbroker
