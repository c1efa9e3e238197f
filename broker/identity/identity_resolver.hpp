// Which process sent a flow's packets: the eBPF map first, /proc for the rest, cached.
// Shared by every queue; lookups that would block run on the resolver's own thread.
#pragma once

#include "broker/identity/app_info.hpp"
#include "broker/identity/flow_owner_map.hpp"
#include "broker/identity/socket_key.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

namespace pktbroker {

/// A flow's process; null when it could not be found.
using AppRef = std::shared_ptr<const AppInfo>;

struct IdentityCounters {
  std::uint64_t bpf_found = 0;        ///< flows the eBPF map knew
  std::uint64_t bpf_missing = 0;      ///< flows it did not know (started before it, or raw)
  std::uint64_t process_reads = 0;    ///< processes read from /proc
  std::uint64_t process_gone = 0;     ///< processes that exited before they could be read
  std::uint64_t socket_searches = 0;  ///< fallback searches of /proc/*/fd
  std::uint64_t fds_scanned = 0;      ///< /proc/*/fd entries those read
  std::uint64_t searches_given_up = 0;
  std::uint64_t unknown = 0;           ///< flows whose process was not found
  std::uint64_t cache_resets = 0;      ///< the process cache filled and was emptied
  std::uint64_t slow_nanoseconds = 0;  ///< time the resolver's thread spent on lookups
};

class IdentityResolver {
 public:
  static constexpr std::size_t process_cache_capacity = 4096;
  static constexpr std::size_t max_fds_scanned = 65536;

  /// With `use_bpf`, loads the eBPF program; when it cannot, logs why and uses the fallback.
  /// Its thread starts with the first resolve(): after the daemon gave up root (--user).
  explicit IdentityResolver(bool use_bpf);
  ~IdentityResolver();
  IdentityResolver(const IdentityResolver&) = delete;
  IdentityResolver& operator=(const IdentityResolver&) = delete;

  [[nodiscard]] bool bpf() const noexcept { return map_ != nullptr; }

  /// Cheap, on the caller's thread: the eBPF map (one syscall) and the process cache. nullopt
  /// when only resolve() can tell.
  [[nodiscard]] std::optional<AppRef> find(const SocketKey& key) noexcept;

  /// On the resolver's thread (reads /proc, may scan it); `done` runs there.
  void resolve(const SocketKey& key, std::function<void(AppRef)> done);

  [[nodiscard]] IdentityCounters counters() const;

 private:
  /// A process, and not another that got its pid later.
  struct ProcessKey {
    std::uint32_t tgid = 0;
    std::uint64_t start_boottime_ns = 0;
    friend bool operator==(const ProcessKey&, const ProcessKey&) = default;
  };
  struct ProcessKeyHash {
    std::size_t operator()(const ProcessKey& key) const noexcept {
      return std::hash<std::uint64_t>{}(key.start_boottime_ns ^ (std::uint64_t{key.tgid} << 40));
    }
  };
  /// The cached process the eBPF record names, if it still runs the same binary.
  AppRef cached(const pktb_flow_owner& owner);

  AppRef resolve_now(const SocketKey& key);
  AppRef app_of(const pktb_flow_owner& owner);
  AppRef search_holder(std::uint64_t inode);

  void remember_locked(const ProcessKey& key, const AppRef& app);  ///< mutex_ held

  std::unique_ptr<FlowOwnerMap> map_;
  mutable std::mutex mutex_;  // guards processes_ and counters_
  std::unordered_map<ProcessKey, AppRef, ProcessKeyHash> processes_;
  IdentityCounters counters_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::once_flag started_;
  std::thread thread_;
};

}  // namespace pktbroker
