#include "broker/identity/process_reader.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

namespace pktbroker {
namespace {

constexpr std::size_t max_cmdline = 4096;

std::string proc_path(std::uint32_t pid, std::string_view what) {
  return "/proc/" + std::to_string(pid) + "/" + std::string(what);
}

// Reads at most `limit` bytes of a small /proc file; empty when it cannot be read.
std::string read_small(const std::string& path, std::size_t limit) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string text(limit, '\0');
  std::size_t used = 0;
  while (used < limit) {
    const ssize_t n = ::read(fd, text.data() + used, limit - used);
    if (n <= 0) break;
    used += static_cast<std::size_t>(n);
  }
  ::close(fd);
  text.resize(used);
  return text;
}

std::string executable(std::uint32_t pid) {
  std::array<char, 4096> buffer{};
  const ssize_t n = ::readlink(proc_path(pid, "exe").c_str(), buffer.data(), buffer.size() - 1);
  if (n <= 0) return {};
  std::string path(buffer.data(), static_cast<std::size_t>(n));
  // A binary replaced or removed since the process started: the path it ran from.
  constexpr std::string_view deleted = " (deleted)";
  if (path.ends_with(deleted)) path.resize(path.size() - deleted.size());
  return path;
}

/// When a process started (clock ticks since boot) and its parent, from /proc/PID/stat.
struct ProcessStart {
  std::uint64_t ticks = 0;
  std::uint32_t parent = 0;
};

// nullopt when the process is gone.
std::optional<ProcessStart> process_start(std::uint32_t pid) noexcept {
  try {
    // "pid (comm) S ppid ...": comm may hold spaces and parentheses, so count fields after the
    // last ')': state is field 3, ppid 4, starttime 22.
    const std::string stat = read_small(proc_path(pid, "stat"), 1024);
    const auto close = stat.rfind(')');
    if (close == std::string::npos) return std::nullopt;
    std::istringstream fields(stat.substr(close + 2));
    std::string state;
    ProcessStart start;
    fields >> state >> start.parent;
    if (state == "Z" || state == "X") return std::nullopt;  // exited, not yet reaped: gone
    std::string skipped;
    for (int field = 5; field < 22 && fields >> skipped; ++field) {
    }
    if (!(fields >> start.ticks)) return std::nullopt;
    return start;
  } catch (...) {  // allocation failure: as if gone
    return std::nullopt;
  }
}

}  // namespace

std::uint64_t process_start_ticks(std::uint32_t pid) noexcept {
  const auto start = process_start(pid);
  return start ? start->ticks : 0;
}

AppInfo read_process(std::uint32_t pid) {
  AppInfo app;
  app.pid = pid;
  const auto start = process_start(pid);
  struct stat exe {};
  const bool running = ::stat(proc_path(pid, "exe").c_str(), &exe) == 0;
  std::string path = executable(pid);
  struct stat dir {};
  if (!start || !running || path.empty() || ::stat(proc_path(pid, "").c_str(), &dir) != 0) {
    return app;
  }
  // The path as the process's mount namespace shows it: trusted only if it is that file here.
  struct stat here {};
  if (::stat(path.c_str(), &here) != 0 || here.st_dev != exe.st_dev || here.st_ino != exe.st_ino) {
    path += " (replaced)";
  }
  app.start_ticks = start->ticks;
  app.exe_inode = exe.st_ino;
  // In the kernel's encoding (major << 20 | minor), as the eBPF record has it.
  app.exe_dev = (std::uint64_t{major(exe.st_dev)} << 20) | minor(exe.st_dev);
  app.uid = dir.st_uid;
  app.name = read_small(proc_path(pid, "comm"), 64);
  if (!app.name.empty() && app.name.back() == '\n') app.name.pop_back();
  app.cmdline = read_small(proc_path(pid, "cmdline"), max_cmdline);
  while (!app.cmdline.empty() && app.cmdline.back() == '\0') app.cmdline.pop_back();
  std::replace(app.cmdline.begin(), app.cmdline.end(), '\0', ' ');
  // cgroup v2: the one line "0::/path".
  const std::string cgroups = read_small(proc_path(pid, "cgroup"), 4096);
  const auto line = cgroups.starts_with("0::") ? 0 : cgroups.find("\n0::");
  if (const auto at = line == 0 ? 0 : line + 1; line != std::string::npos) {
    const auto end = cgroups.find('\n', at);
    app.cgroup = cgroups.substr(at + 3, end == std::string::npos ? end : end - at - 3);
  }
  app.parent_pid = start->parent;
  if (app.parent_pid != 0) app.parent = executable(app.parent_pid);
  app.path = std::move(path);  // last: complete() means every read above was made
  return app;
}

std::optional<SocketHandle> find_socket(const SocketKey& key) noexcept {
  const int fd = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return std::nullopt;
  struct {
    nlmsghdr header;
    inet_diag_req_v2 request;
  } message{};
  message.header.nlmsg_len = sizeof message;
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST;
  message.request.sdiag_family = key.raw.family;
  message.request.sdiag_protocol = key.raw.protocol;
  message.request.idiag_states = ~0U;
  // TCP looks the socket up with src as the local end; UDP, "for historical reasons" (the
  // kernel's udp_diag.c), with src as the remote end.
  const bool swapped = key.raw.protocol == IPPROTO_UDP;
  message.request.id.idiag_sport = swapped ? key.raw.dst_port : key.raw.src_port;
  message.request.id.idiag_dport = swapped ? key.raw.src_port : key.raw.dst_port;
  std::memcpy(message.request.id.idiag_src, swapped ? key.raw.dst : key.raw.src, 16);
  std::memcpy(message.request.id.idiag_dst, swapped ? key.raw.src : key.raw.dst, 16);
  message.request.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  message.request.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  std::optional<SocketHandle> handle;
  timeval timeout{.tv_sec = 0, .tv_usec = 200'000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  if (::send(fd, &message, sizeof message, 0) == static_cast<ssize_t>(sizeof message)) {
    alignas(nlmsghdr) std::array<char, 8192> reply{};
    const ssize_t n = ::recv(fd, reply.data(), reply.size(), 0);
    const auto* header = reinterpret_cast<const nlmsghdr*>(reply.data());
    if (n >= static_cast<ssize_t>(sizeof(nlmsghdr)) && NLMSG_OK(header, static_cast<unsigned>(n)) &&
        header->nlmsg_type == SOCK_DIAG_BY_FAMILY &&
        header->nlmsg_len >= NLMSG_LENGTH(sizeof(inet_diag_msg))) {
      const auto* found = static_cast<const inet_diag_msg*>(NLMSG_DATA(header));
      if (found->idiag_inode != 0) {
        handle = SocketHandle{found->idiag_inode, (std::uint64_t{found->id.idiag_cookie[1]} << 32) |
                                                      found->id.idiag_cookie[0]};
      }
    }
  }
  ::close(fd);
  return handle;
}

std::optional<std::uint32_t> socket_holder(std::uint64_t inode, std::size_t max_fds,
                                           SocketSearch& cost) noexcept {
  try {
    std::vector<std::uint32_t> pids;
    if (DIR* proc = ::opendir("/proc")) {
      while (const dirent* entry = ::readdir(proc)) {
        std::uint32_t pid = 0;
        const std::string_view name = entry->d_name;
        if (std::from_chars(name.data(), name.data() + name.size(), pid).ec == std::errc{}) {
          pids.push_back(pid);
        }
      }
      ::closedir(proc);
    }
    std::sort(pids.rbegin(), pids.rend());
    const std::string wanted = "socket:[" + std::to_string(inode) + "]";
    std::array<char, 64> link{};
    for (const std::uint32_t pid : pids) {
      const std::string fds = proc_path(pid, "fd");
      DIR* dir = ::opendir(fds.c_str());
      if (dir == nullptr) continue;
      while (const dirent* entry = ::readdir(dir)) {
        if (entry->d_name[0] == '.') continue;
        if (++cost.fds_scanned > max_fds) {
          ::closedir(dir);
          cost.gave_up = true;
          return std::nullopt;
        }
        const ssize_t n = ::readlinkat(::dirfd(dir), entry->d_name, link.data(), link.size());
        if (n > 0 && std::string_view(link.data(), static_cast<std::size_t>(n)) == wanted) {
          ::closedir(dir);
          return pid;
        }
      }
      ::closedir(dir);
    }
  } catch (...) {  // allocation failure: not found
  }
  return std::nullopt;
}

}  // namespace pktbroker
