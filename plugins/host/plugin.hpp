// One loaded plugin: its shared object, descriptor, global state, config and counters.
#pragma once

#include "pktbroker/packet_view.hpp"
#include "pktbroker/plugin.h"
#include "plugins/host/plugin_spec.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pktbroker {
class Plugin;
class CallSink;
}  // namespace pktbroker

/// What a hook's pktb_call points to: the plugin and the caller's services for the current flow.
struct pktb_call {
  const pktbroker::Plugin* plugin;
  pktbroker::CallSink* sink;
};

namespace pktbroker {

/// The per-flow host services, implemented by the broker's flow inspector and by pktreplay.
class CallSink {
 public:
  virtual ~CallSink() = default;
  virtual int set_field(const Plugin& plugin, std::string_view field, std::string_view value) = 0;
  virtual int expect(const Plugin& plugin, const pktb_tuple& pattern, std::uint32_t wildcards,
                     std::uint32_t timeout_ms) = 0;
  virtual int release(const Plugin& plugin, std::uint64_t packet_id,
                      const pktb_decision& decision) = 0;
  virtual int set_timer(const Plugin& plugin, std::uint32_t ms) = 0;
  virtual int remember_name(const Plugin& plugin, const IpAddress& address, std::string_view name,
                            std::uint32_t ttl_s) = 0;
  /// Replay only (pktb_host::replay_listen); -1 elsewhere.
  virtual int replay_listen(const Plugin& /*plugin*/, std::array<std::uint8_t, 16>& /*address*/,
                            std::uint16_t& /*port*/) {
    return -1;
  }
};

/// A plugin could not be loaded: the message names the file and the reason.
class PluginError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Loaded with RTLD_NOW | RTLD_LOCAL and initialized by the constructor (which throws
/// PluginError with a clear message on any failure); shut down and unloaded by the destructor.
/// Hooks are called through the call_* members, which never throw.
class Plugin {
 public:
  static constexpr std::size_t max_counters = 32;
  static constexpr std::size_t max_flow_state = std::size_t{64} * 1024;
  static constexpr std::size_t max_field_length = 255;
  static constexpr std::size_t max_command_reply = std::size_t{64} * 1024;

  explicit Plugin(const PluginSpec& spec);
  ~Plugin();
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] const std::string& version() const noexcept { return version_; }
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  [[nodiscard]] const pktb_plugin& descriptor() const noexcept { return *descriptor_; }
  /// The ABI version the plugin was built for: members of later versions are absent.
  [[nodiscard]] std::uint32_t abi() const noexcept { return abi_; }
  [[nodiscard]] const std::vector<std::string>& fields() const noexcept { return fields_; }
  [[nodiscard]] bool has_field(std::string_view field) const noexcept;

  // Hooks; each returns false when the plugin does not provide it or it failed.
  bool call_flow_open(CallSink& sink, pktb_flow& flow) const noexcept;
  void call_flow_close(pktb_flow& flow) const noexcept;
  /// The decision, checked: garbage (unknown action, a modified verdict without a payload) is
  /// counted as invalid_decisions and returned as pass.
  pktb_decision call_on_packet(CallSink& sink, pktb_flow& flow,
                               const pktb_packet& packet) const noexcept;
  /// Whether a decision (from on_packet or pktb_host::release) is one the host can apply:
  /// a known action and flags, a sane hold, a modified packet that parses as a whole IP packet.
  /// Invalid ones are counted as invalid_decisions.
  [[nodiscard]] bool check(const pktb_decision& decision) const noexcept;
  void call_on_timer(CallSink& sink, pktb_flow& flow) const noexcept;
  void call_replay_recorded(CallSink& sink, pktb_flow& flow,
                            const pktb_packet& packet) const noexcept;
  bool call_replay_client_data(CallSink& sink, pktb_flow& flow, std::vector<std::uint8_t>& data,
                               std::size_t capacity) const noexcept;
  pktb_turn call_replay_server_data(CallSink& sink, pktb_flow& flow,
                                    std::span<const std::uint8_t> data,
                                    std::span<const std::uint8_t> recorded) const noexcept;
  /// Masks `data` in place (resizing it); unchanged without the hook.
  void call_replay_mask(pktb_flow& flow, std::vector<std::uint8_t>& data) const noexcept;

  /// Runs an operator's command (on_command): true and the answer, or false and why not.
  std::pair<bool, std::string> command(std::span<const std::string> args) const;
  /// What pktb_host::wake does: the broker sets it to fire the plugin's flow timers on each
  /// queue; empty (replay, shutdown) makes wake do nothing.
  void set_waker(std::function<void()> waker) const;

  // Channel delivery policy hooks (ABI 3); call only when delivers_channels().
  [[nodiscard]] bool delivers_channels() const noexcept;
  /// The channel's state, or null with `error` saying why.
  void* call_channel_open(const std::string& channel, std::uint8_t link,
                          std::string& error) const noexcept;
  void call_channel_close(void* channel) const noexcept;
  void call_channel_member(void* channel, std::uint32_t member, bool joined) const noexcept;
  /// The members the plugin sends `frame` to (a prefix of `out`); none when it failed.
  std::span<const std::uint32_t> call_channel_frame(void* channel, const pktb_channel_frame& frame,
                                                    std::span<std::uint32_t> out) const noexcept;
  /// Counts a plugin answer the host had to ignore (a destination that is no member).
  void count_invalid() const noexcept;

  /// Counters the plugin registered, by name; plus the host's invalid_decisions.
  [[nodiscard]] std::vector<std::pair<std::string, std::uint64_t>> counters() const;
  [[nodiscard]] std::uint64_t invalid_decisions() const noexcept {
    return invalid_decisions_.load(std::memory_order_relaxed);
  }

 private:
  /// pktb_host first, so a `const pktb_host*` handed back by the plugin leads to its Plugin.
  struct HostBlock {
    pktb_host host;
    Plugin* self;
  };
  static Plugin& from(const pktb_host* host) noexcept;

  static void host_log(const pktb_host* host, int level, const char* message) noexcept;
  static std::uint32_t host_counter(const pktb_host* host, const char* name) noexcept;
  static void host_count(const pktb_host* host, std::uint32_t counter, std::uint64_t n) noexcept;
  static const char* host_config(const pktb_host* host, const char* key) noexcept;
  static void host_wake(const pktb_host* host) noexcept;

  std::string name_;
  std::string version_;
  std::filesystem::path path_;
  std::map<std::string, std::string> config_;
  std::vector<std::string> fields_;
  void* handle_ = nullptr;
  const pktb_plugin* descriptor_ = nullptr;
  std::uint32_t abi_ = 0;
  void* global_ = nullptr;
  HostBlock host_{};

  mutable std::mutex counter_names_mutex_;  // registration only; counting is lock-free
  std::vector<std::string> counter_names_;
  mutable std::array<std::atomic<std::uint64_t>, max_counters> counter_values_{};
  mutable std::atomic<std::uint64_t> invalid_decisions_{0};
  mutable std::mutex waker_mutex_;  // wake may come from any thread, also the plugin's own
  mutable std::function<void()> waker_;
};

}  // namespace pktbroker
