// What /proc shows of a process, and the fallback that finds a socket's process without eBPF.
#pragma once

#include "broker/identity/app_info.hpp"
#include "broker/identity/socket_key.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>

namespace pktbroker {

/// Reads /proc/PID: executable and its inode, command line, cgroup, parent and its executable,
/// name, uid and start. When the process is gone, the result is not complete(): only pid set.
AppInfo read_process(std::uint32_t pid);

/// When process `pid` started (clock ticks since boot, /proc/PID/stat); 0 when it is gone
/// (exited, also when not yet reaped).
std::uint64_t process_start_ticks(std::uint32_t pid) noexcept;

/// A local socket, as sock_diag knows it.
struct SocketHandle {
  std::uint64_t inode = 0;
  std::uint64_t cookie = 0;
};

/// The local socket with this key (NETLINK_SOCK_DIAG, in the broker's network namespace).
std::optional<SocketHandle> find_socket(const SocketKey& key) noexcept;

/// The fallback when eBPF is unavailable, and its cost.
struct SocketSearch {
  std::size_t fds_scanned = 0;  ///< /proc/*/fd entries read
  bool gave_up = false;         ///< hit the bound before finding it
};

/// The process that holds socket `inode` open, by reading at most `max_fds` entries of
/// /proc/*/fd (newest processes first: the one that just connected is usually among them).
std::optional<std::uint32_t> socket_holder(std::uint64_t inode, std::size_t max_fds,
                                           SocketSearch& cost) noexcept;

}  // namespace pktbroker
