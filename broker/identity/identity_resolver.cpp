#include "broker/identity/identity_resolver.hpp"

#include "broker/identity/process_reader.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include <chrono>
#include <cstring>

#include <unistd.h>

namespace pktbroker {

IdentityResolver::IdentityResolver(bool use_bpf) : work_(io_.get_executor()) {
  if (use_bpf) {
    std::string why_not;
    map_ = FlowOwnerMap::open(why_not);
    if (map_) {
      spdlog::info(
          "identity: eBPF flow owners attached (sockops TCP connect, cgroup UDP "
          "sendmsg, socket create and connect)");
    } else {
      spdlog::warn("identity: {}; using sock_diag and /proc instead (slower)", why_not);
    }
  } else {
    spdlog::info("identity: eBPF off (identity.bpf: false); using sock_diag and /proc");
  }
}

IdentityResolver::~IdentityResolver() {
  work_.reset();
  io_.stop();
  if (thread_.joinable()) thread_.join();
}

std::optional<AppRef> IdentityResolver::find(const SocketKey& key) noexcept {
  if (!map_) return std::nullopt;
  const auto record = map_->lookup(key);
  if (!record || !record->open) return std::nullopt;
  if (AppRef app = cached(record->owner)) return app;
  return std::nullopt;
}

void IdentityResolver::resolve(const SocketKey& key, std::function<void(AppRef)> done) {
  std::call_once(started_, [this] { thread_ = std::thread([this] { io_.run(); }); });
  boost::asio::post(io_, [this, key, done = std::move(done)] {
    const auto started = std::chrono::steady_clock::now();
    AppRef app;
    try {
      app = resolve_now(key);
    } catch (...) {  // allocation failure: unknown
    }
    const auto spent = std::chrono::steady_clock::now() - started;
    {
      const std::lock_guard lock(mutex_);
      counters_.slow_nanoseconds += static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(spent).count());
      if (!app || !app->complete()) ++counters_.unknown;
    }
    done(std::move(app));
  });
}

AppRef IdentityResolver::resolve_now(const SocketKey& key) {
  const auto record = map_ ? map_->lookup(key) : std::nullopt;
  std::optional<pktb_flow_owner> owner;
  std::optional<SocketHandle> socket;
  if (record && record->open) {
    owner = record->owner;
  } else if (map_) {
    // Whoever holds the addresses now (connected UDP, a socket from before we attached, a
    // port taken over); when nobody does, the last socket that used them sent the packet.
    socket = find_socket(key);
    if (socket) {
      owner = map_->lookup_socket(socket->cookie);
    } else if (record) {
      owner = record->owner;
    }
  }
  if (owner) {
    const std::lock_guard lock(mutex_);
    ++counters_.bpf_found;
  } else {
    if (map_) {
      const std::lock_guard lock(mutex_);
      ++counters_.bpf_missing;
    } else {
      socket = find_socket(key);
    }
    return socket ? search_holder(socket->inode) : nullptr;
  }
  return app_of(*owner);
}

// What the eBPF program recorded: the process, read from /proc unless cached.
AppRef IdentityResolver::app_of(const pktb_flow_owner& owner) {
  if (AppRef app = cached(owner)) return app;
  AppInfo info = read_process(owner.tgid);
  // /proc counts the start in clock ticks since boot; the record has it in nanoseconds.
  static const std::uint64_t ns_per_tick = 1'000'000'000ULL / ::sysconf(_SC_CLK_TCK);
  const bool same = info.start_ticks == owner.start_boottime_ns / ns_per_tick &&
                    info.exe_inode == owner.exe_inode && info.exe_dev == owner.exe_dev;
  info.cgroup_id = owner.cgroup_id;
  const std::lock_guard lock(mutex_);
  ++counters_.process_reads;
  if (!info.complete() || !same) {  // gone (or its pid reused, or exec'd since): what the
                                    // kernel recorded as it sent
    info = AppInfo{};
    info.pid = owner.tgid;
    ++counters_.process_gone;
    info.uid = owner.uid;
    info.name.assign(owner.comm, strnlen(owner.comm, sizeof owner.comm));
    return std::make_shared<const AppInfo>(std::move(info));
  }
  const ProcessKey process{owner.tgid, owner.start_boottime_ns};
  auto app = std::make_shared<const AppInfo>(std::move(info));
  remember_locked(process, app);
  return app;
}

// Without eBPF: the process that holds the socket open, by a bounded /proc scan.
AppRef IdentityResolver::search_holder(std::uint64_t inode) {
  SocketSearch cost;
  const auto pid = socket_holder(inode, max_fds_scanned, cost);
  {
    const std::lock_guard lock(mutex_);
    ++counters_.socket_searches;
    counters_.fds_scanned += cost.fds_scanned;
    counters_.searches_given_up += cost.gave_up ? 1 : 0;
  }
  if (!pid) return nullptr;
  AppInfo info = read_process(*pid);
  const std::lock_guard lock(mutex_);
  ++counters_.process_reads;
  if (!info.complete()) {
    ++counters_.process_gone;
    return nullptr;
  }
  return std::make_shared<const AppInfo>(std::move(info));
}

AppRef IdentityResolver::cached(const pktb_flow_owner& owner) {
  const std::lock_guard lock(mutex_);
  const auto found = processes_.find({owner.tgid, owner.start_boottime_ns});
  // The same process may have run exec since (another binary, another identity), or moved to
  // another cgroup: read again.
  if (found == processes_.end()) return nullptr;
  const AppInfo& app = *found->second;
  if (app.exe_inode != owner.exe_inode || app.exe_dev != owner.exe_dev ||
      app.cgroup_id != owner.cgroup_id) {
    return nullptr;
  }
  return found->second;
}

void IdentityResolver::remember_locked(const ProcessKey& key, const AppRef& app) {
  if (processes_.size() >= process_cache_capacity) {
    processes_.clear();
    ++counters_.cache_resets;
  }
  processes_.insert_or_assign(key, app);
}

IdentityCounters IdentityResolver::counters() const {
  const std::lock_guard lock(mutex_);
  return counters_;
}

}  // namespace pktbroker
