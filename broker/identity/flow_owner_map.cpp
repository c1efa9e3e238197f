#include "broker/identity/flow_owner_map.hpp"

#include "broker/identity/flow_owner.skel.h"

#include <bpf/bpf.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

namespace pktbroker {
namespace {

int quiet_libbpf(libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_WARN) return vfprintf(stderr, format, args);  // NOLINT: libbpf's API
  return 0;
}

// Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a
// hybrid system); empty when it is not.
std::string cgroup2_root() {
  std::ifstream mounts("/proc/mounts");
  std::string line;
  while (std::getline(mounts, line)) {
    std::istringstream fields(line);
    std::string device, path, type;
    fields >> device >> path >> type;
    if (type == "cgroup2") return path;
  }
  return {};
}

// The cgroup v2 root, opened: where it is mounted, else (a mount namespace without it, as
// under `ip netns exec`) from a private mount that is detached again at once.
int open_cgroup2_root(std::string& root) {
  root = cgroup2_root();
  if (!root.empty()) return ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  std::array<char, 32> dir{"/tmp/pktbroker-cgroup2.XXXXXX"};
  if (::mkdtemp(dir.data()) == nullptr) return -1;
  root = "cgroup2 (mounted privately)";
  int fd = -1;
  if (::mount("none", dir.data(), "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0) {
    fd = ::open(dir.data(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ::umount2(dir.data(), MNT_DETACH);  // the descriptor keeps the hierarchy's root
  }
  const int error = errno;
  ::rmdir(dir.data());
  errno = error;
  return fd;
}

std::string failed(const char* step, int error) {
  return std::string(step) + ": " + std::strerror(error);
}

}  // namespace

std::unique_ptr<FlowOwnerMap> FlowOwnerMap::open(std::string& why_not) {
  libbpf_set_print(quiet_libbpf);
  std::string root;
  const int cgroup = open_cgroup2_root(root);
  if (cgroup < 0) {
    why_not = failed(("opening the cgroup v2 root " + root).c_str(), errno);
    return nullptr;
  }
  flow_owner* skeleton = flow_owner__open();
  if (skeleton == nullptr) {
    why_not = failed("opening the eBPF object", errno);
    ::close(cgroup);
    return nullptr;
  }
  if (const int error = flow_owner__load(skeleton); error != 0) {
    why_not = failed("loading the eBPF programs (needs CAP_BPF and CAP_NET_ADMIN)", -error);
    flow_owner__destroy(skeleton);
    ::close(cgroup);
    return nullptr;
  }
  auto& programs = skeleton->progs;
  auto& links = skeleton->links;
  const std::pair<bpf_program*, bpf_link**> attach[] = {
      {programs.tcp_connect, &links.tcp_connect},
      {programs.udp_sendmsg4, &links.udp_sendmsg4},
      {programs.udp_sendmsg6, &links.udp_sendmsg6},
      {programs.socket_create, &links.socket_create},
      {programs.socket_connect4, &links.socket_connect4},
      {programs.socket_connect6, &links.socket_connect6},
      {programs.socket_release, &links.socket_release}};
  if (const int error = flow_owner__attach(skeleton); error != 0) {  // the tracepoint
    why_not = failed("attaching tp_btf/sock_send_length", -error);
    flow_owner__destroy(skeleton);
    ::close(cgroup);
    return nullptr;
  }
  for (const auto& [program, link] : attach) {
    *link = bpf_program__attach_cgroup(program, cgroup);
    if (*link == nullptr) {
      why_not = failed(("attaching " + std::string(bpf_program__name(program)) + " to " + root +
                        " (needs CAP_SYS_ADMIN)")
                           .c_str(),
                       errno);
      flow_owner__destroy(skeleton);  // detaches what was attached
      ::close(cgroup);
      return nullptr;
    }
  }
  ::close(cgroup);  // the links keep the programs attached
  return std::unique_ptr<FlowOwnerMap>(new FlowOwnerMap(skeleton));
}

FlowOwnerMap::FlowOwnerMap(flow_owner* skeleton) noexcept
    : skeleton_(skeleton),
      flows_fd_(bpf_map__fd(skeleton->maps.flow_owners)),
      sockets_fd_(bpf_map__fd(skeleton->maps.socket_owners)) {}

FlowOwnerMap::~FlowOwnerMap() {
  flow_owner__destroy(skeleton_);
}

std::optional<FlowOwnerMap::Record> FlowOwnerMap::lookup(const SocketKey& key) const noexcept {
  std::optional<Record> closed;
  pktb_flow_owner owner{};
  if (bpf_map_lookup_elem(flows_fd_, &key.raw, &owner) == 0) {
    if (open(owner)) return Record{owner, true};
    closed = Record{owner, false};
  }
  if (key.raw.protocol == IPPROTO_UDP) {
    pktb_flow_key any = key.raw;  // a socket bound to any address
    std::memset(any.src, 0, sizeof any.src);
    if (bpf_map_lookup_elem(flows_fd_, &any, &owner) == 0) {
      if (open(owner)) return Record{owner, true};
      if (!closed) closed = Record{owner, false};
    }
  }
  return closed;
}

// Whether the record's socket is still open (sock_release forgets it). A socket the map no
// longer knows (evicted) counts as closed: the caller then asks sock_diag.
bool FlowOwnerMap::open(const pktb_flow_owner& owner) const noexcept {
  pktb_flow_owner socket{};
  return bpf_map_lookup_elem(sockets_fd_, &owner.socket_cookie, &socket) == 0;
}

std::optional<pktb_flow_owner> FlowOwnerMap::lookup_socket(std::uint64_t cookie) const noexcept {
  pktb_flow_owner owner{};
  if (bpf_map_lookup_elem(sockets_fd_, &cookie, &owner) == 0) return owner;
  return std::nullopt;
}

}  // namespace pktbroker
