#include "plugins/host/plugin.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include <dlfcn.h>

namespace pktbroker {
namespace {

constexpr std::uint32_t max_hold_ms = 60'000;
/// The descriptor of an ABI 1 plugin ends before on_command, of ABI 2 before the channel hooks.
constexpr std::size_t abi1_descriptor_size = offsetof(pktb_plugin, on_command);
constexpr std::size_t abi2_descriptor_size = offsetof(pktb_plugin, channel_open);

int call_set_field(pktb_call* call, const char* field, const char* value, std::size_t len) {
  if (call == nullptr || field == nullptr || (value == nullptr && len != 0)) return -1;
  if (len > Plugin::max_field_length || !call->plugin->has_field(field)) return -1;
  return call->sink->set_field(*call->plugin, field, std::string_view(value, len));
}

int call_expect(pktb_call* call, const pktb_tuple* pattern, std::uint32_t wildcards,
                std::uint32_t timeout_ms) {
  if (call == nullptr || pattern == nullptr) return -1;
  return call->sink->expect(*call->plugin, *pattern, wildcards, timeout_ms);
}

int call_release(pktb_call* call, std::uint64_t packet_id, const pktb_decision* decision) {
  if (call == nullptr || decision == nullptr) return -1;
  return call->sink->release(*call->plugin, packet_id, *decision);
}

int call_set_timer(pktb_call* call, std::uint32_t ms) {
  if (call == nullptr) return -1;
  return call->sink->set_timer(*call->plugin, ms);
}

int call_remember_name(pktb_call* call, std::uint8_t family, const std::uint8_t* address,
                       const char* name, std::size_t len, std::uint32_t ttl_s) {
  if (call == nullptr || address == nullptr || name == nullptr || len == 0 ||
      len > Plugin::max_field_length || (family != 4 && family != 6)) {
    return -1;
  }
  IpAddress ip;
  ip.family = family;
  std::memcpy(ip.bytes.data(), address, family == 4 ? 4 : 16);
  return call->sink->remember_name(*call->plugin, ip, std::string_view(name, len), ttl_s);
}

int call_replay_listen(pktb_call* call, std::uint8_t address[16], std::uint16_t* port) {
  if (call == nullptr || address == nullptr || port == nullptr) return -1;
  std::array<std::uint8_t, 16> bytes{};
  if (call->sink->replay_listen(*call->plugin, bytes, *port) != 0) return -1;
  std::memcpy(address, bytes.data(), bytes.size());
  return 0;
}

}  // namespace

Plugin::Plugin(const PluginSpec& spec) : name_(spec.name), path_(spec.path), config_(spec.config) {
  const std::string where = "plugin '" + spec.name + "' (" + spec.path.string() + ")";
  dlerror();
  handle_ = dlopen(spec.path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle_ == nullptr) {
    const char* reason = dlerror();
    throw PluginError(where + ": cannot load: " + (reason != nullptr ? reason : "unknown error"));
  }
  // From here on a failure must unload what was loaded: the destructor does not run.
  const auto fail = [&](const std::string& reason) {
    dlclose(handle_);
    handle_ = nullptr;
    throw PluginError(where + ": " + reason);
  };
  void* entry = dlsym(handle_, PKTB_PLUGIN_ENTRY);
  if (entry == nullptr) fail("no " PKTB_PLUGIN_ENTRY " symbol: not a pktbroker plugin");
  descriptor_ = reinterpret_cast<pktb_plugin_entry_fn>(entry)();
  if (descriptor_ == nullptr) fail(PKTB_PLUGIN_ENTRY " returned no descriptor");
  abi_ = descriptor_->abi_version;
  if (abi_ < PKTB_PLUGIN_ABI_VERSION_MIN || abi_ > PKTB_PLUGIN_ABI_VERSION) {
    fail("built for plugin ABI " + std::to_string(abi_) + ", this host speaks ABI " +
         std::to_string(PKTB_PLUGIN_ABI_VERSION_MIN) + " to " +
         std::to_string(PKTB_PLUGIN_ABI_VERSION) +
         ": rebuild it against this pktbroker's plugin.h");
  }
  const std::size_t needed = abi_ == 1   ? abi1_descriptor_size
                             : abi_ == 2 ? abi2_descriptor_size
                                         : sizeof(pktb_plugin);
  if (descriptor_->struct_size < needed) {
    fail("its descriptor is " + std::to_string(descriptor_->struct_size) + " bytes, ABI " +
         std::to_string(abi_) + " needs " + std::to_string(needed));
  }
  const std::string own_name = descriptor_->name != nullptr ? descriptor_->name : "";
  if (!valid_plugin_name(own_name)) {
    fail("bad plugin name '" + own_name + "': expected 1 to 32 of a-z, 0-9, _");
  }
  if (own_name != spec.name) {
    fail("the file holds plugin '" + own_name + "', not '" + spec.name + "'");
  }
  version_ = descriptor_->version != nullptr ? descriptor_->version : "";
  if (descriptor_->registration_count > 0 && descriptor_->registrations == nullptr) {
    fail("registration_count is " + std::to_string(descriptor_->registration_count) +
         " but registrations is NULL");
  }
  for (std::size_t i = 0; i < descriptor_->registration_count; ++i) {
    const pktb_registration& r = descriptor_->registrations[i];
    if (r.is_default == 0 && r.port_first > r.port_last) {
      fail("registration " + std::to_string(i) + " has ports " + std::to_string(r.port_first) +
           "-" + std::to_string(r.port_last) + " (first after last)");
    }
  }
  for (const char* const* field = descriptor_->fields; field != nullptr && *field != nullptr;
       ++field) {
    if (!valid_plugin_name(*field)) fail(std::string("bad field name '") + *field + "'");
    fields_.emplace_back(*field);
  }
  if (descriptor_->flow_state_size > max_flow_state) {
    fail("flow_state_size " + std::to_string(descriptor_->flow_state_size) +
         " is over the limit of " + std::to_string(max_flow_state));
  }
  if (abi_ >= 3 &&
      (descriptor_->channel_open == nullptr) != (descriptor_->channel_frame == nullptr)) {
    fail("a channel delivery policy needs both channel_open and channel_frame");
  }
  if (descriptor_->on_packet == nullptr && descriptor_->replay_server_data == nullptr &&
      !delivers_channels()) {
    fail("it has neither on_packet, replay_server_data nor channel_frame: nothing to call");
  }

  host_.self = this;
  host_.host = pktb_host{sizeof(pktb_host), host_log,           host_counter, host_count,
                         host_config,       call_set_field,     call_expect,  call_release,
                         call_set_timer,    call_remember_name, host_wake,    call_replay_listen};
  if (descriptor_->init != nullptr) {
    const char* error = nullptr;
    try {
      global_ = descriptor_->init(&host_.host, &error);
    } catch (...) {
      fail("init threw an exception (exceptions must not cross the plugin ABI)");
    }
    if (global_ == nullptr)
      fail(std::string("init failed: ") + (error ? error : "no reason given"));
  }
}

Plugin::~Plugin() {
  set_waker(nullptr);  // the plugin's own threads may call wake until shutdown joins them
  if (descriptor_ != nullptr && descriptor_->shutdown != nullptr) {
    try {
      descriptor_->shutdown(global_);
    } catch (...) {
      spdlog::error("plugin {}: shutdown threw an exception", name_);
    }
  }
  if (handle_ != nullptr) dlclose(handle_);
}

bool Plugin::has_field(std::string_view field) const noexcept {
  return std::find(fields_.begin(), fields_.end(), field) != fields_.end();
}

Plugin& Plugin::from(const pktb_host* host) noexcept {
  return *reinterpret_cast<const HostBlock*>(host)->self;
}

void Plugin::host_log(const pktb_host* host, int level, const char* message) noexcept {
  if (host == nullptr || message == nullptr) return;
  const auto spd_level = level <= PKTB_LOG_DEBUG  ? spdlog::level::debug
                         : level == PKTB_LOG_INFO ? spdlog::level::info
                         : level == PKTB_LOG_WARN ? spdlog::level::warn
                                                  : spdlog::level::err;
  try {
    spdlog::log(spd_level, "plugin {}: {}", from(host).name_, message);
  } catch (...) {  // logging never fails a plugin
  }
}

std::uint32_t Plugin::host_counter(const pktb_host* host, const char* name) noexcept {
  if (host == nullptr || name == nullptr || *name == '\0') return UINT32_MAX;
  Plugin& self = from(host);
  try {
    std::lock_guard lock(self.counter_names_mutex_);
    const auto found = std::find(self.counter_names_.begin(), self.counter_names_.end(), name);
    if (found != self.counter_names_.end()) {
      return static_cast<std::uint32_t>(found - self.counter_names_.begin());
    }
    if (self.counter_names_.size() == max_counters) return UINT32_MAX;
    self.counter_names_.emplace_back(name);
    return static_cast<std::uint32_t>(self.counter_names_.size() - 1);
  } catch (...) {
    return UINT32_MAX;
  }
}

void Plugin::host_count(const pktb_host* host, std::uint32_t counter, std::uint64_t n) noexcept {
  if (host == nullptr || counter >= max_counters) return;
  from(host).counter_values_[counter].fetch_add(n, std::memory_order_relaxed);
}

void Plugin::host_wake(const pktb_host* host) noexcept {
  if (host == nullptr) return;
  Plugin& self = from(host);
  try {
    const std::lock_guard lock(self.waker_mutex_);
    if (self.waker_) self.waker_();
  } catch (...) {  // the timers still fire when they are due
  }
}

void Plugin::set_waker(std::function<void()> waker) const {
  const std::lock_guard lock(waker_mutex_);
  waker_ = std::move(waker);
}

std::pair<bool, std::string> Plugin::command(std::span<const std::string> args) const {
  if (abi_ < 2 || descriptor_->on_command == nullptr) {
    return {false, "plugin " + name_ + " takes no commands"};
  }
  std::vector<const char*> argv;
  argv.reserve(args.size() + 1);
  for (const std::string& arg : args) argv.push_back(arg.c_str());
  argv.push_back(nullptr);
  std::string reply(max_command_reply, '\0');
  int status = 0;
  try {
    status = descriptor_->on_command(global_, args.size(), argv.data(), reply.data(), reply.size());
  } catch (...) {
    invalid_decisions_.fetch_add(1, std::memory_order_relaxed);
    return {false, "plugin " + name_ + " failed on this command"};
  }
  reply.resize(std::min(reply.find('\0'), reply.size()));
  return {status == 0, std::move(reply)};
}

bool Plugin::delivers_channels() const noexcept {
  return abi_ >= 3 && descriptor_->channel_frame != nullptr;
}

void* Plugin::call_channel_open(const std::string& channel, std::uint8_t link,
                                std::string& error) const noexcept {
  const char* reason = nullptr;
  void* state = nullptr;
  try {
    state = descriptor_->channel_open(global_, channel.c_str(), link, &reason);
  } catch (...) {
    reason = "channel_open threw an exception";
  }
  if (state == nullptr) {
    try {
      error = "plugin " + name_ + ": " + (reason != nullptr ? reason : "channel_open failed");
    } catch (...) {  // out of memory: the caller still sees the failure
    }
  }
  return state;
}

void Plugin::call_channel_close(void* channel) const noexcept {
  try {
    descriptor_->channel_close != nullptr ? descriptor_->channel_close(global_, channel) : void();
  } catch (...) {
    invalid_decisions_.fetch_add(1, std::memory_order_relaxed);
  }
}

void Plugin::call_channel_member(void* channel, std::uint32_t member, bool joined) const noexcept {
  const auto hook = joined ? descriptor_->channel_join : descriptor_->channel_leave;
  if (hook == nullptr) return;
  try {
    hook(global_, channel, member);
  } catch (...) {
    invalid_decisions_.fetch_add(1, std::memory_order_relaxed);
  }
}

std::span<const std::uint32_t> Plugin::call_channel_frame(
    void* channel, const pktb_channel_frame& frame, std::span<std::uint32_t> out) const noexcept {
  std::size_t count = 0;
  try {
    count = descriptor_->channel_frame(global_, channel, &frame, out.data(), out.size());
  } catch (...) {
    count = 0;
    invalid_decisions_.fetch_add(1, std::memory_order_relaxed);
  }
  if (count > out.size()) {  // a plugin that claims more than it may write: nobody gets it
    invalid_decisions_.fetch_add(1, std::memory_order_relaxed);
    count = 0;
  }
  return out.first(count);
}

void Plugin::count_invalid() const noexcept {
  invalid_decisions_.fetch_add(1, std::memory_order_relaxed);
}

const char* Plugin::host_config(const pktb_host* host, const char* key) noexcept {
  if (host == nullptr || key == nullptr) return nullptr;
  const auto& config = from(host).config_;
  const auto found = config.find(key);
  return found == config.end() ? nullptr : found->second.c_str();
}

bool Plugin::call_flow_open(CallSink& sink, pktb_flow& flow) const noexcept {
  if (descriptor_->flow_open == nullptr) return true;
  pktb_call call{this, &sink};
  try {
    return descriptor_->flow_open(global_, &call, &flow) == 0;
  } catch (...) {
    invalid_decisions_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
}

void Plugin::call_flow_close(pktb_flow& flow) const noexcept {
  if (descriptor_->flow_close == nullptr) return;
  try {
    descriptor_->flow_close(global_, &flow);
  } catch (...) {
    invalid_decisions_.fetch_add(1, std::memory_order_relaxed);
  }
}

pktb_decision Plugin::call_on_packet(CallSink& sink, pktb_flow& flow,
                                     const pktb_packet& packet) const noexcept {
  pktb_decision decision{};
  if (descriptor_->on_packet == nullptr) return decision;
  pktb_call call{this, &sink};
  try {
    descriptor_->on_packet(global_, &call, &flow, &packet, &decision);
  } catch (...) {
    invalid_decisions_.fetch_add(1, std::memory_order_relaxed);
    return pktb_decision{};
  }
  return check(decision) ? decision : pktb_decision{};
}

bool Plugin::check(const pktb_decision& decision) const noexcept {
  const std::uint32_t known_flags =
      abi_ >= 2 ? PKTB_DECISION_SET_MARK | PKTB_DECISION_LEAVE_HELD : PKTB_DECISION_SET_MARK;
  bool valid = decision.action <= PKTB_ACCEPT_MODIFIED && (decision.flags & ~known_flags) == 0 &&
               decision.hold_ms <= max_hold_ms;
  if (valid && decision.action == PKTB_ACCEPT_MODIFIED) {
    // The replacement goes to the kernel as the packet: it must be a whole IP packet.
    PacketView view;
    valid = decision.payload != nullptr && decision.payload_len > 0 &&
            decision.payload_len <= 65535 &&
            parse_packet({decision.payload, decision.payload_len}, view) == ParseError::none &&
            !view.captured_truncated;
  }
  if (!valid) invalid_decisions_.fetch_add(1, std::memory_order_relaxed);
  return valid;
}

void Plugin::call_on_timer(CallSink& sink, pktb_flow& flow) const noexcept {
  if (descriptor_->on_timer == nullptr) return;
  pktb_call call{this, &sink};
  try {
    descriptor_->on_timer(global_, &call, &flow);
  } catch (...) {
    invalid_decisions_.fetch_add(1, std::memory_order_relaxed);
  }
}

void Plugin::call_replay_recorded(CallSink& sink, pktb_flow& flow,
                                  const pktb_packet& packet) const noexcept {
  if (descriptor_->replay_recorded == nullptr) return;
  pktb_call call{this, &sink};
  try {
    descriptor_->replay_recorded(global_, &call, &flow, &packet);
  } catch (...) {
    invalid_decisions_.fetch_add(1, std::memory_order_relaxed);
  }
}

bool Plugin::call_replay_client_data(CallSink& sink, pktb_flow& flow,
                                     std::vector<std::uint8_t>& data,
                                     std::size_t capacity) const noexcept {
  if (descriptor_->replay_client_data == nullptr) return true;
  pktb_call call{this, &sink};
  try {
    const std::size_t original = data.size();
    data.resize(std::max(original, capacity));
    std::size_t len = original;
    const int skip =
        descriptor_->replay_client_data(global_, &call, &flow, data.data(), &len, data.size());
    if (len > data.size()) {
      invalid_decisions_.fetch_add(1, std::memory_order_relaxed);
      len = original;
    }
    data.resize(len);
    return skip == 0;
  } catch (...) {
    invalid_decisions_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
}

pktb_turn Plugin::call_replay_server_data(CallSink& sink, pktb_flow& flow,
                                          std::span<const std::uint8_t> data,
                                          std::span<const std::uint8_t> recorded) const noexcept {
  if (descriptor_->replay_server_data == nullptr) return PKTB_EXPECT_MORE;
  pktb_call call{this, &sink};
  try {
    const pktb_turn turn = descriptor_->replay_server_data(
        global_, &call, &flow, data.data(), data.size(), recorded.data(), recorded.size());
    if (turn <= PKTB_FLOW_DONE) return turn;
  } catch (...) {
  }
  invalid_decisions_.fetch_add(1, std::memory_order_relaxed);
  return PKTB_EXPECT_MORE;
}

void Plugin::call_replay_mask(pktb_flow& flow, std::vector<std::uint8_t>& data) const noexcept {
  if (descriptor_->replay_mask == nullptr) return;
  try {
    const std::size_t len = descriptor_->replay_mask(global_, &flow, data.data(), data.size());
    if (len <= data.size()) {
      data.resize(len);
      return;
    }
  } catch (...) {
  }
  invalid_decisions_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<std::pair<std::string, std::uint64_t>> Plugin::counters() const {
  std::vector<std::pair<std::string, std::uint64_t>> result;
  std::lock_guard lock(counter_names_mutex_);
  for (std::size_t i = 0; i < counter_names_.size(); ++i) {
    result.emplace_back(counter_names_[i], counter_values_[i].load(std::memory_order_relaxed));
  }
  result.emplace_back("invalid_decisions", invalid_decisions());
  return result;
}

}  // namespace pktbroker
