// Who sent a packet: the process behind its socket, as rules match it (`app.*` fields).
#pragma once

#include <cstdint>
#include <string>

namespace pktbroker {

struct AppInfo {
  std::uint32_t pid = 0;  ///< the process (thread group) id
  std::uint32_t uid = 0;
  std::string name;  ///< comm: what `app.name` matches
  /// executable (`app.path`); empty when it could not be read; with " (replaced)" appended
  /// when that path names another file here (the binary was replaced since it started, or the
  /// process sees other files: a container, another mount namespace)
  std::string path;
  std::string cmdline;  ///< arguments joined by spaces (`app.cmdline`)
  std::string cgroup;   ///< cgroup v2 path, e.g. /system.slice/foo.service (`app.cgroup`)
  std::uint32_t parent_pid = 0;
  std::string parent;             ///< the parent's executable (`app.parent`); empty when unknown
  std::uint64_t exe_inode = 0;    ///< an exec into another binary changes it (and exe_dev)
  std::uint64_t exe_dev = 0;      ///< the kernel's device number (as the eBPF record has it)
  std::uint64_t cgroup_id = 0;    ///< the cgroup v2 id when it was read: a move is noticed
  std::uint64_t start_ticks = 0;  ///< when it started (/proc/PID/stat): with pid, names it

  /// Whether /proc still showed the process: when not (it exited before the broker looked),
  /// only what the kernel recorded at send time (pid, uid, name) is known.
  [[nodiscard]] bool complete() const noexcept { return !path.empty(); }
};

}  // namespace pktbroker
