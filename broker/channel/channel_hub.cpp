#include "broker/channel/channel_hub.hpp"

#include "broker/telemetry/event_log.hpp"
#include "pktbroker/codec.hpp"
#include "pktbroker/packet_view.hpp"
#include "plugins/host/plugin_path.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <utility>

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <unistd.h>

namespace pktbroker {
namespace {

constexpr std::size_t ethernet_header = 14;
constexpr std::size_t tap_reads_per_wakeup = 64;
// Mirrored packets posted to the hub and not yet delivered; more are dropped (counted).
constexpr std::size_t max_mirror_backlog = 4096;

std::uint64_t monotonic_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

std::string rights_text(std::uint8_t rights) {
  std::string text;
  const auto add = [&](std::uint8_t bit, const char* name) {
    if ((rights & bit) != 0) text += (text.empty() ? "" : ",") + std::string(name);
  };
  add(proto::right_receive, "receive");
  add(proto::right_send, "send");
  add(proto::right_manage, "manage");
  return text.empty() ? "none" : text;
}

/// Why a frame may not enter `spec`'s channel, or "".
std::string frame_problem(const proto::ChannelCreate& spec, std::span<const std::uint8_t> frame) {
  if (frame.size() > spec.max_frame) {
    return fmt::format("a frame of {} bytes is over channel {}'s max_frame of {}", frame.size(),
                       spec.name, spec.max_frame);
  }
  if (spec.link == proto::LinkType::ethernet && frame.size() < ethernet_header) {
    return fmt::format("a frame of {} bytes is shorter than an Ethernet header", frame.size());
  }
  if (spec.link == proto::LinkType::ip) {
    PacketView view;
    if (const ParseError error = parse_packet(frame, view); error != ParseError::none) {
      return fmt::format("not a whole IP packet ({})", to_string(error));
    }
  }
  return {};
}

}  // namespace

// Sequentially consistent on both sides (release: count, then flag; watch: flag, then count),
// so a release and a watch racing each other cannot both miss the drained state.
void ChannelBacklog::release(std::size_t frames) noexcept {
  const std::size_t left = frames_.fetch_sub(frames) - frames;
  if (!watching_.load() || left > low_.load()) return;
  if (!watching_.exchange(false)) return;
  std::function<void()> drained;
  {
    const std::lock_guard lock(mutex_);
    drained = std::move(drained_);
  }
  try {
    if (drained) drained();
  } catch (...) {  // out of memory posting: the next frame's check resumes the senders
  }
}

void ChannelBacklog::watch(std::size_t low, std::function<void()> drained) {
  {
    const std::lock_guard lock(mutex_);
    drained_ = std::move(drained);
  }
  low_.store(low);
  watching_.store(true);
  release(0);  // already drained: say so now
}

/// A tap (ethernet) or tun (ip) interface as a member: what it reads is sent to the channel,
/// what the channel sends it is written to it (never waiting: a full device drops, counted).
class ChannelHub::Tap : public std::enable_shared_from_this<Tap> {
 public:
  Tap(boost::asio::strand<boost::asio::io_context::executor_type>& strand, int fd, std::string name)
      : descriptor_(strand, fd), name_(std::move(name)) {}

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  bool write(std::span<const std::uint8_t> frame) noexcept {
    return ::write(descriptor_.native_handle(), frame.data(), frame.size()) ==
           static_cast<ssize_t>(frame.size());
  }
  /// Waits for frames; `read` gets up to tap_reads_per_wakeup of them in one run.
  void start(std::uint32_t channel_id, std::function<void(FrameRun&)> read) {
    read_ = std::move(read);
    channel_id_ = channel_id;
    wait();
  }
  void close() {
    boost::system::error_code ignored;
    descriptor_.close(ignored);
  }

 private:
  // The handler owns the tap: one already queued when the tap's member is removed still finds
  // it alive, sees it closed, and stops.
  void wait() {
    descriptor_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                           [self = shared_from_this()](const boost::system::error_code& error) {
                             if (error || !self->descriptor_.is_open()) return;
                             self->drain();
                             self->wait();
                           });
  }
  void drain() {
    FrameRun run{channel_id_, {}, {}};
    std::array<std::uint8_t, proto::max_frame> buffer{};
    for (std::size_t i = 0; i < tap_reads_per_wakeup; ++i) {
      const ssize_t size = ::read(descriptor_.native_handle(), buffer.data(), buffer.size());
      if (size <= 0) break;
      run.bytes.insert(run.bytes.end(), buffer.begin(), buffer.begin() + size);
      run.ends.push_back(static_cast<std::uint32_t>(run.bytes.size()));
    }
    if (!run.ends.empty()) read_(run);
  }

  boost::asio::posix::stream_descriptor descriptor_;
  std::string name_;
  std::uint32_t channel_id_ = 0;
  std::function<void(FrameRun&)> read_;
};

struct ChannelHub::Member {
  std::uint32_t id = 0;
  std::uint8_t rights = 0;
  ChannelPeer peer;                   // session_id 0 for a tap
  std::shared_ptr<ChannelPort> port;  // null for a tap
  std::shared_ptr<Tap> tap;           // null for a session
  std::shared_ptr<ChannelBacklog> backlog = std::make_shared<ChannelBacklog>();
  bool paused = false;           // told to stop sending (backpressure)
  std::uint64_t last_frame = 0;  // the channel's frame count when it last got one: no doubles
  std::uint64_t received = 0, sent = 0, dropped = 0;
  // Built while a run is delivered: the frames for this member and how many.
  std::shared_ptr<std::vector<std::uint8_t>> outgoing;
  std::size_t outgoing_frames = 0;
};

struct ChannelHub::Channel {
  std::uint32_t id = 0;
  proto::ChannelCreate spec;
  std::optional<ChannelConfig> declared;  // as the policy declares it; none: made at run time
  std::shared_ptr<const Plugin> delivery;
  void* state = nullptr;  // the delivery plugin's
  std::map<std::uint32_t, Member> members;
  std::vector<std::uint32_t> receivers;  // members with the receive right, in join order
  std::uint32_t next_member = 1;
  std::uint64_t frames = 0, delivered = 0, dropped = 0, refused = 0;
  bool paused = false;  // its senders are paused

  ~Channel() {
    if (delivery != nullptr && state != nullptr) delivery->call_channel_close(state);
  }
  void update_receivers() {
    receivers.clear();
    for (const auto& [id, member] : members) {
      if ((member.rights & proto::right_receive) != 0) receivers.push_back(id);
    }
  }
};

ChannelHub::ChannelHub(boost::asio::io_context& io, std::shared_ptr<const PluginSet> plugins,
                       std::shared_ptr<EventLog> events)
    : io_(io),
      strand_(boost::asio::make_strand(io)),
      plugins_(std::move(plugins)),
      events_(std::move(events)) {}

ChannelHub::~ChannelHub() = default;

void ChannelHub::open(const std::vector<ChannelConfig>& channels) {
  set_declared_access(channels);
  for (const ChannelConfig& config : channels) {
    std::string error;
    if (!declare(config, error)) {
      throw std::runtime_error("channel " + config.spec.name + " (" + config.origin +
                               "): " + error);
    }
  }
}

bool ChannelHub::declare(const ChannelConfig& config, std::string& error) {
  auto channel = make_channel(config.spec, error);
  if (channel == nullptr) return false;
  channel->declared = config;
  try {
    for (const std::string& tap : config.taps) attach_tap(*channel, tap);
  } catch (const std::exception& failure) {  // no half-made channel stays
    error = failure.what();
    for (auto& [id, member] : channel->members) member.tap->close();
    channels_.erase(channel->id);
    return false;
  }
  spdlog::info("channels: {} ({} delivery, {} frames){}{}", config.spec.name, config.spec.delivery,
               config.spec.link == proto::LinkType::ip ? "ip" : "ethernet",
               config.taps.empty() ? "" : ", taps ", fmt::join(config.taps, " "));
  return true;
}

void ChannelHub::set_declared_access(const std::vector<ChannelConfig>& channels) {
  std::vector<proto::ChannelAccess> access;
  for (const ChannelConfig& config : channels) {
    access.insert(access.end(), config.spec.access.begin(), config.spec.access.end());
  }
  const std::lock_guard lock(access_mutex_);
  declared_access_ = std::move(access);
}

// What a reload may change at once: a channel's access list (members whose rights it changes
// are removed, to join again under the new list), its member limit, queue length and overflow
// mode; new channels are made, and channels the policy no longer declares are closed, their
// members told. Delivery, link, max_frame and taps change at the next start.
void ChannelHub::apply(std::vector<ChannelConfig> channels) {
  set_declared_access(channels);  // now: connections accepted from here on see the new lists
  boost::asio::post(strand_, [self = shared_from_this(), channels = std::move(channels)] {
    std::vector<std::uint32_t> gone;
    for (const auto& [id, channel] : self->channels_) {
      const std::string& name = channel->spec.name;  // (a lambda may not capture a binding)
      const bool kept = std::any_of(channels.begin(), channels.end(),
                                    [&name](const auto& c) { return c.spec.name == name; });
      if (channel->declared && !kept) gone.push_back(id);
    }
    for (const std::uint32_t id : gone) {
      Channel& channel = *self->channels_.at(id);
      self->evict_all(channel, "the reloaded policy removed channel " + channel.spec.name);
      spdlog::info("channels: {} closed: the reloaded policy no longer declares it",
                   channel.spec.name);
      self->channels_.erase(id);
    }
    for (const ChannelConfig& config : channels) {
      Channel* channel = self->find(config.spec.name);
      std::string error;
      if (channel == nullptr) {
        if (!self->declare(config, error)) {
          spdlog::error("channels: reload: channel {} ({}): {}", config.spec.name, config.origin,
                        error);
        }
      } else if (!channel->declared) {
        spdlog::error(
            "channels: reload: {} ({}) is not made: a channel made at run time has "
            "that name",
            config.spec.name, config.origin);
      } else {
        self->redeclare(*channel, config);
      }
    }
  });
}

void ChannelHub::redeclare(Channel& channel, const ChannelConfig& config) {
  const proto::ChannelCreate& before = channel.declared->spec;
  if (config.spec.delivery != before.delivery || config.spec.link != before.link ||
      config.spec.max_frame != before.max_frame || config.taps != channel.declared->taps) {
    spdlog::warn(
        "channels: reload: {}'s delivery, link, max_frame and taps change at the next "
        "restart",
        channel.spec.name);
  }
  channel.spec.access = config.spec.access;
  channel.spec.max_members = config.spec.max_members;
  channel.spec.queue_length = config.spec.queue_length;
  channel.spec.overflow = config.spec.overflow;
  channel.declared->spec = channel.spec;
  std::vector<std::uint32_t> changed;
  for (const auto& [id, member] : channel.members) {
    if (member.port != nullptr &&
        (rights_for(channel.spec, member.peer) & member.rights) != member.rights) {
      changed.push_back(id);
    }
  }
  for (const std::uint32_t id : changed) {
    evict(channel, id,
          "the reloaded policy changed this member's rights on channel " + channel.spec.name +
              "; join again");
  }
  if (channel.paused && channel.spec.overflow != proto::Overflow::backpressure) {
    channel.paused = false;  // a drop channel pauses nobody
    for (auto& [id, member] : channel.members) {
      if (std::exchange(member.paused, false)) {
        member.port->channel_message(proto::ChannelFlow{channel.id, false}, 0);
      }
    }
  }
  if (channel.paused) resume_if_drained(channel.id);  // the queue length may have moved
}

void ChannelHub::evict(Channel& channel, std::uint32_t member_id, const std::string& reason) {
  const auto found = channel.members.find(member_id);
  if (found == channel.members.end()) return;
  auto port = found->second.port;
  remove_member(channel, member_id, reason, "evict");
  if (port != nullptr) port->channel_message(proto::ChannelLeft{channel.id, reason}, 0);
}

void ChannelHub::evict_all(Channel& channel, const std::string& reason) {
  std::vector<std::uint32_t> ids;
  for (const auto& [id, member] : channel.members) ids.push_back(id);
  for (const std::uint32_t id : ids) evict(channel, id, reason);
}

std::shared_ptr<ChannelHub::Channel> ChannelHub::make_channel(const proto::ChannelCreate& spec,
                                                              std::string& error) {
  if (channels_.size() >= max_channels) {
    error = fmt::format("the broker has its most channels ({})", max_channels);
    return nullptr;
  }
  auto plugin = delivery_plugin(spec.delivery, error);
  if (plugin == nullptr) return nullptr;
  if (!plugin->delivers_channels()) {
    error = "plugin '" + spec.delivery + "' is not a channel delivery policy";
    return nullptr;
  }
  auto channel = std::make_shared<Channel>();
  channel->spec = spec;
  channel->state =
      plugin->call_channel_open(spec.name, static_cast<std::uint8_t>(spec.link), error);
  if (channel->state == nullptr) return nullptr;
  channel->delivery = std::move(plugin);
  channel->id = next_channel_++;
  channels_.emplace(channel->id, channel);
  return channel;
}

// The policy's plugins first (with their config); a channel made at run time may name one the
// policy does not load: it is loaded from the plugin path with its defaults, once.
std::shared_ptr<const Plugin> ChannelHub::delivery_plugin(const std::string& name,
                                                          std::string& error) {
  if (auto plugin = plugins_->find(name)) return plugin;
  if (const auto loaded = loaded_here_.find(name); loaded != loaded_here_.end()) {
    return loaded->second;
  }
  if (!valid_plugin_name(name)) {
    error = "'" + name + "' is not a plugin name";
    return nullptr;
  }
  try {
    auto plugin = std::make_shared<const Plugin>(
        PluginSpec{name, find_plugin(name, "channel delivery"), {}, "channel delivery"});
    loaded_here_.emplace(name, plugin);
    spdlog::info("channels: loaded delivery plugin {} from {}", name, plugin->path().string());
    return plugin;
  } catch (const std::exception& failure) {
    error = failure.what();
    return nullptr;
  }
}

void ChannelHub::attach_tap(Channel& channel, const std::string& name) {
  const int fd = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "open /dev/net/tun");
  ifreq request{};
  request.ifr_flags = static_cast<short>(
      (channel.spec.link == proto::LinkType::ip ? IFF_TUN : IFF_TAP) | IFF_NO_PI);
  std::strncpy(request.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (::ioctl(fd, TUNSETIFF, &request) != 0) {
    const int error = errno;
    ::close(fd);
    throw std::system_error(error, std::generic_category(),
                            "channel " + channel.spec.name + ": attach tap " + name);
  }
  Member member;
  member.id = channel.next_member++;
  member.rights = proto::right_receive | proto::right_send;
  member.peer.name = "tap " + name;
  member.tap = std::make_shared<Tap>(strand_, fd, name);
  const std::uint32_t channel_id = channel.id;
  const std::uint32_t member_id = member.id;
  member.tap->start(channel_id, [this, channel_id, member_id](FrameRun& run) {
    Channel* found = find(channel_id);
    if (found == nullptr) return;
    const auto it = found->members.find(member_id);
    if (it != found->members.end()) deliver(*found, &it->second, run);
  });
  channel.delivery->call_channel_member(channel.state, member.id, true);
  channel.members.emplace(member.id, std::move(member));
  channel.update_receivers();
}

void ChannelHub::stop() {
  boost::asio::post(strand_, [self = shared_from_this()] {
    for (auto& [id, channel] : self->channels_) {
      for (auto& [member_id, member] : channel->members) {
        if (member.tap) member.tap->close();
      }
    }
  });
}

void ChannelHub::set_plugins(std::shared_ptr<const PluginSet> plugins) {
  boost::asio::post(strand_, [self = shared_from_this(), plugins = std::move(plugins)]() mutable {
    self->plugins_ = std::move(plugins);
  });
}

void ChannelHub::remember_access(const proto::ChannelCreate& spec) {
  const std::lock_guard lock(access_mutex_);
  created_access_.insert(created_access_.end(), spec.access.begin(), spec.access.end());
}

bool ChannelHub::names(const ucred& cred, const std::vector<gid_t>& groups) const {
  const auto names_peer = [&](const proto::ChannelAccess& a) {
    if (a.rights == 0) return false;
    if (a.kind == proto::ChannelAccess::Kind::uid) return a.id == cred.uid;
    return a.id == cred.gid || std::find(groups.begin(), groups.end(), a.id) != groups.end();
  };
  const std::lock_guard lock(access_mutex_);
  return std::any_of(declared_access_.begin(), declared_access_.end(), names_peer) ||
         std::any_of(created_access_.begin(), created_access_.end(), names_peer);
}

std::uint8_t ChannelHub::rights_for(const proto::ChannelCreate& spec, const ChannelPeer& peer) {
  if (peer.cred.uid == 0) return proto::all_channel_rights;
  std::uint8_t rights = 0;
  for (const proto::ChannelAccess& a : spec.access) {
    const bool applies =
        a.kind == proto::ChannelAccess::Kind::uid
            ? a.id == peer.cred.uid
            : a.id == peer.cred.gid ||
                  std::find(peer.groups.begin(), peer.groups.end(), a.id) != peer.groups.end();
    if (applies) rights |= a.rights;
  }
  return rights;
}

ChannelHub::Channel* ChannelHub::find(std::string_view name) {
  for (auto& [id, channel] : channels_) {
    if (channel->spec.name == name) return channel.get();
  }
  return nullptr;
}

ChannelHub::Channel* ChannelHub::find(std::uint32_t channel_id) {
  const auto found = channels_.find(channel_id);
  return found == channels_.end() ? nullptr : found->second.get();
}

void ChannelHub::refuse(ChannelPort& port, std::uint32_t request_id, proto::ErrorCode code,
                        std::string text) {
  port.channel_message(proto::Error{code, std::move(text)}, request_id);
}

void ChannelHub::create(std::shared_ptr<ChannelPort> port, ChannelPeer peer,
                        proto::ChannelCreate request, std::uint32_t request_id) {
  boost::asio::post(
      strand_, [self = shared_from_this(), port = std::move(port), peer = std::move(peer),
                request = std::move(request), request_id]() mutable {
        const auto bad = [&](std::string text) {
          self->refuse(*port, request_id, proto::ErrorCode::not_permitted, std::move(text));
        };
        if (!peer.manager) return bad("creating a channel needs the manage role");
        if (!proto::valid_channel_name(request.name)) {
          return bad("a channel name is 1 to 64 of a-z, 0-9, '_', '.', '-'");
        }
        if (self->find(request.name) != nullptr) return bad("channel " + request.name + " exists");
        if (request.max_members < 1 || request.max_members > 4096) {
          return bad("max_members must be 1 to 4096");
        }
        if (request.max_frame < 14 || request.max_frame > proto::max_frame) {
          return bad("max_frame must be 14 to 65535");
        }
        if (request.queue_length < 1 || request.queue_length > 65536) {
          return bad("queue_length must be 1 to 65536");
        }
        if (request.access.size() > max_access_entries) {
          return bad(fmt::format("at most {} access entries", max_access_entries));
        }
        // The creator may do everything on what it made.
        request.access.push_back(
            {proto::ChannelAccess::Kind::uid, peer.cred.uid, proto::all_channel_rights});
        std::string error;
        if (self->make_channel(request, error) == nullptr) {
          return self->refuse(*port, request_id, proto::ErrorCode::channel_full, error);
        }
        self->remember_access(request);
        spdlog::info("channels: session {} ({}) created {} ({} delivery)", peer.session_id,
                     peer.name, request.name, request.delivery);
        port->channel_message(proto::Ok{"channel " + request.name + " created"}, request_id);
      });
}

void ChannelHub::join(std::shared_ptr<ChannelPort> port, ChannelPeer peer,
                      proto::ChannelJoin request, std::uint32_t request_id) {
  boost::asio::post(strand_, [self = shared_from_this(), port = std::move(port),
                              peer = std::move(peer), request = std::move(request),
                              request_id]() mutable {
    Channel* channel = self->find(request.channel);
    if (channel == nullptr) {
      return self->refuse(*port, request_id, proto::ErrorCode::unknown_channel,
                          "no channel " + request.channel);
    }
    const std::uint8_t allowed = rights_for(channel->spec, peer);
    const std::uint8_t wanted = request.rights == 0 ? proto::all_channel_rights : request.rights;
    const std::uint8_t rights = allowed & wanted;
    if ((rights & (proto::right_receive | proto::right_send)) == 0) {
      return self->refuse(*port, request_id, proto::ErrorCode::not_permitted,
                          fmt::format("uid {} may not join channel {} (it has: {})", peer.cred.uid,
                                      channel->spec.name, rights_text(allowed)));
    }
    if (const Member* already = self->member_of(*channel, peer.session_id)) {
      return self->refuse(*port, request_id, proto::ErrorCode::busy,
                          "this session is already member " + std::to_string(already->id) +
                              " of channel " + channel->spec.name);
    }
    if (channel->members.size() >= channel->spec.max_members) {
      return self->refuse(*port, request_id, proto::ErrorCode::channel_full,
                          fmt::format("channel {} has its most members ({})", channel->spec.name,
                                      channel->spec.max_members));
    }
    Member member;
    member.id = channel->next_member++;
    member.rights = rights;
    member.peer = std::move(peer);
    member.port = port;
    const std::uint32_t member_id = member.id;
    channel->delivery->call_channel_member(channel->state, member_id, true);
    auto& joined = channel->members.emplace(member_id, std::move(member)).first->second;
    channel->update_receivers();
    self->event(*channel, "join", joined);
    spdlog::info("channels: session {} ({}) joined {} as member {} ({})", joined.peer.session_id,
                 joined.peer.name, channel->spec.name, member_id, rights_text(rights));
    port->channel_message(proto::ChannelJoined{channel->id, member_id, rights, channel->spec.link,
                                               channel->spec.max_frame},
                          request_id);
    if (channel->paused && (rights & proto::right_send) != 0) {
      joined.paused = true;
      port->channel_message(proto::ChannelFlow{channel->id, true}, 0);
    }
  });
}

void ChannelHub::send(std::shared_ptr<ChannelPort> port, std::uint32_t session_id, FrameRun run) {
  boost::asio::post(strand_, [self = shared_from_this(), port = std::move(port), session_id,
                              run = std::move(run)] {
    Channel* channel = self->find(run.channel_id);
    Member* sender = channel != nullptr ? self->member_of(*channel, session_id) : nullptr;
    if (sender == nullptr) {
      self->refuse(*port, 0, proto::ErrorCode::unknown_channel,
                   fmt::format("{} frame(s) for channel id {}, which this session has not joined",
                               run.ends.size(), run.channel_id));
    } else {
      self->deliver(*channel, sender, run);
    }
    port->frames_handled(run.ends.size());
  });
}

ChannelHub::Member* ChannelHub::member_of(Channel& channel, std::uint32_t session_id) {
  for (auto& [id, member] : channel.members) {
    if (member.peer.session_id == session_id && member.port != nullptr) return &member;
  }
  return nullptr;
}

void ChannelHub::deliver(Channel& channel, Member* sender, const FrameRun& run) {
  const std::uint32_t from = sender != nullptr ? sender->id : 0;
  if (sender != nullptr && (sender->rights & proto::right_send) == 0) {
    channel.refused += run.ends.size();
    refuse(*sender->port, 0, proto::ErrorCode::not_permitted,
           fmt::format("member {} joined channel {} without the send right: {} frame(s) refused",
                       from, channel.spec.name, run.ends.size()));
    return;
  }
  // Only sessions can be paused; a tap's and the mirror's frames are dropped when a queue is
  // full. A paused session is not read (Session::reading_held), so what its members queue past
  // queue_length is bounded by what its senders had read or posted before the pause.
  const bool backpressure = channel.spec.overflow == proto::Overflow::backpressure &&
                            sender != nullptr && sender->port != nullptr;
  std::string problem;
  std::size_t refused = 0;
  std::vector<Member*> touched;
  const std::uint64_t now = monotonic_ns();
  scratch_members_.resize(channel.receivers.size());
  std::uint32_t begin = 0;
  for (const std::uint32_t end : run.ends) {
    const std::span<const std::uint8_t> frame(run.bytes.data() + begin, end - begin);
    begin = end;
    if (std::string why = frame_problem(channel.spec, frame); !why.empty()) {
      ++refused;
      if (problem.empty()) problem = std::move(why);
      continue;
    }
    ++channel.frames;
    if (sender != nullptr) ++sender->sent;
    const pktb_channel_frame hook_frame{frame.data(),
                                        frame.size(),
                                        from,
                                        static_cast<std::uint8_t>(channel.spec.link),
                                        {},
                                        now,
                                        channel.receivers.data(),
                                        channel.receivers.size()};
    const auto destinations =
        channel.delivery->call_channel_frame(channel.state, hook_frame, scratch_members_);
    for (const std::uint32_t to : destinations) {
      const auto found = channel.members.find(to);
      if (to == from || found == channel.members.end() ||
          (found->second.rights & proto::right_receive) == 0 ||
          found->second.last_frame == channel.frames) {
        channel.delivery->count_invalid();
        continue;
      }
      Member& member = found->second;
      member.last_frame = channel.frames;
      if (member.tap) {
        if (member.tap->write(frame)) {
          ++member.received;
          ++channel.delivered;
        } else {
          ++member.dropped;
          ++channel.dropped;
        }
        continue;
      }
      if (!backpressure &&
          member.backlog->size() + member.outgoing_frames >= channel.spec.queue_length) {
        ++member.dropped;
        ++channel.dropped;
        continue;
      }
      if (member.outgoing == nullptr) {
        member.outgoing = std::make_shared<std::vector<std::uint8_t>>();
        touched.push_back(&member);
      }
      if (proto::append_frame(*member.outgoing, channel.id, from, frame)) {
        // The datagram is full: it goes now and a new one starts.
        member.backlog->add(member.outgoing_frames);
        member.port->channel_frames(std::move(member.outgoing), member.outgoing_frames,
                                    member.backlog);
        member.outgoing = std::make_shared<std::vector<std::uint8_t>>();
        member.outgoing_frames = 0;
        (void)proto::append_frame(*member.outgoing, channel.id, from, frame);
      }
      ++member.outgoing_frames;
      ++member.received;
      ++channel.delivered;
    }
  }
  for (Member* member : touched) {
    if (member->outgoing_frames > 0) {
      member->backlog->add(member->outgoing_frames);
      member->port->channel_frames(std::move(member->outgoing), member->outgoing_frames,
                                   member->backlog);
    }
    member->outgoing.reset();
    member->outgoing_frames = 0;
  }
  channel.refused += refused;
  if (sender != nullptr && sender->port != nullptr && refused > 0) {
    refuse(
        *sender->port, 0, proto::ErrorCode::bad_frame,
        fmt::format("{} frame(s) refused on channel {}: {}", refused, channel.spec.name, problem));
  }
  if (backpressure && !channel.paused) {
    for (const auto& [id, member] : channel.members) {
      if (member.port != nullptr && member.backlog->size() > channel.spec.queue_length) {
        pause_senders(channel);
        break;
      }
    }
  }
}

void ChannelHub::pause_senders(Channel& channel) {
  channel.paused = true;
  spdlog::debug("channels: {} pauses its senders: a member's queue passed {} frames",
                channel.spec.name, channel.spec.queue_length);
  for (auto& [id, member] : channel.members) {
    if (member.port != nullptr && (member.rights & proto::right_send) != 0 && !member.paused) {
      member.paused = true;
      member.port->channel_message(proto::ChannelFlow{channel.id, true}, 0);
    }
  }
  resume_if_drained(channel.id);
}

// The senders go on once every member's queue is down to half its length: each member still
// above that is watched, and its draining brings the check back here.
void ChannelHub::resume_if_drained(std::uint32_t channel_id) {
  boost::asio::post(strand_, [self = shared_from_this(), channel_id] {
    Channel* channel = self->find(channel_id);
    if (channel == nullptr || !channel->paused) return;
    const std::size_t low = channel->spec.queue_length / 2;
    bool drained = true;
    for (auto& [id, member] : channel->members) {
      if (member.port == nullptr || member.backlog->size() <= low) continue;
      drained = false;
      std::weak_ptr<ChannelHub> weak = self;
      member.backlog->watch(low, [weak, channel_id] {
        if (auto hub = weak.lock()) hub->resume_if_drained(channel_id);
      });
    }
    if (!drained) return;
    channel->paused = false;
    spdlog::debug("channels: {} lets its senders go on", channel->spec.name);
    for (auto& [id, member] : channel->members) {
      if (member.paused) {
        member.paused = false;
        member.port->channel_message(proto::ChannelFlow{channel->id, false}, 0);
      }
    }
  });
}

void ChannelHub::leave(std::shared_ptr<ChannelPort> port, std::uint32_t session_id,
                       std::uint32_t channel_id, std::uint32_t request_id) {
  boost::asio::post(strand_, [self = shared_from_this(), port = std::move(port), session_id,
                              channel_id, request_id] {
    Channel* channel = self->find(channel_id);
    const Member* member = channel != nullptr ? self->member_of(*channel, session_id) : nullptr;
    if (member == nullptr) {
      return self->refuse(
          *port, request_id, proto::ErrorCode::unknown_channel,
          "this session is not a member of channel id " + std::to_string(channel_id));
    }
    self->remove_member(*channel, member->id, {}, "leave");
    port->channel_message(proto::ChannelLeft{channel_id, {}}, request_id);
  });
}

void ChannelHub::remove_member(Channel& channel, std::uint32_t member_id, const std::string& reason,
                               std::string_view action) {
  const auto found = channel.members.find(member_id);
  if (found == channel.members.end()) return;
  event(channel, action, found->second, reason);
  spdlog::info("channels: member {} ({}) left {}{}", member_id, found->second.peer.name,
               channel.spec.name, reason.empty() ? "" : ": " + reason);
  channel.delivery->call_channel_member(channel.state, member_id, false);
  if (found->second.tap) found->second.tap->close();
  channel.members.erase(found);
  channel.update_receivers();
  if (channel.paused) resume_if_drained(channel.id);  // it may have been the slow one
}

void ChannelHub::session_closed(std::uint32_t session_id) {
  boost::asio::post(strand_, [self = shared_from_this(), session_id] {
    for (auto& [channel_id, channel] : self->channels_) {
      std::vector<std::uint32_t> gone;
      for (const auto& [id, member] : channel->members) {
        if (member.peer.session_id == session_id && member.port != nullptr) gone.push_back(id);
      }
      for (const std::uint32_t id : gone) {
        self->remove_member(*channel, id, "session closed", "leave");
      }
    }
  });
}

void ChannelHub::list(std::shared_ptr<ChannelPort> port, ChannelPeer peer,
                      std::uint32_t request_id) {
  boost::asio::post(strand_, [self = shared_from_this(), port = std::move(port),
                              peer = std::move(peer), request_id] {
    proto::ChannelsReply reply;
    for (const auto& [id, channel] : self->channels_) {
      if (!peer.manager && (rights_for(channel->spec, peer) & proto::right_manage) == 0) continue;
      proto::ChannelInfo info{
          channel->spec.name,         channel->spec.delivery,    channel->spec.link,
          channel->spec.overflow,     channel->spec.max_members, channel->spec.max_frame,
          channel->spec.queue_length, channel->frames,           channel->delivered,
          channel->dropped,           channel->refused,          {}};
      for (const auto& [member_id, member] : channel->members) {
        info.members.push_back({member_id, member.peer.session_id, member.peer.name,
                                static_cast<std::uint32_t>(member.peer.cred.pid),
                                member.peer.cred.uid, member.rights, member.received, member.sent,
                                member.dropped,
                                static_cast<std::uint32_t>(member.backlog->size())});
      }
      reply.channels.push_back(std::move(info));
    }
    port->channel_message(reply, request_id);
  });
}

void ChannelHub::kick(std::shared_ptr<ChannelPort> port, ChannelPeer peer,
                      proto::ChannelKick request, std::uint32_t request_id) {
  boost::asio::post(strand_, [self = shared_from_this(), port = std::move(port),
                              peer = std::move(peer), request = std::move(request), request_id] {
    Channel* channel = self->find(request.channel);
    if (channel == nullptr) {
      return self->refuse(*port, request_id, proto::ErrorCode::unknown_channel,
                          "no channel " + request.channel);
    }
    if (!peer.manager && (rights_for(channel->spec, peer) & proto::right_manage) == 0) {
      return self->refuse(*port, request_id, proto::ErrorCode::not_permitted,
                          "kicking a member needs the manage role or channel " + request.channel +
                              "'s manage right");
    }
    const auto found = channel->members.find(request.member_id);
    if (found == channel->members.end()) {
      return self->refuse(
          *port, request_id, proto::ErrorCode::unknown_channel,
          fmt::format("channel {} has no member {}", request.channel, request.member_id));
    }
    if (found->second.port == nullptr) {
      return self->refuse(*port, request_id, proto::ErrorCode::not_permitted,
                          "member " + std::to_string(request.member_id) +
                              " is a tap device: remove it from the policy");
    }
    auto kicked = found->second.port;
    const std::string reason = fmt::format("kicked by uid {} ({})", peer.cred.uid, peer.name);
    self->remove_member(*channel, request.member_id, reason, "kick");
    kicked->channel_message(proto::ChannelLeft{channel->id, reason}, 0);
    port->channel_message(proto::Ok{fmt::format("member {} removed from channel {}",
                                                request.member_id, request.channel)},
                          request_id);
  });
}

void ChannelHub::mirror(const std::string& channel_name,
                        std::span<const std::uint8_t> packet) noexcept {
  if (mirror_backlog_.fetch_add(1) >= max_mirror_backlog) {  // the hub is behind: drop
    mirror_backlog_.fetch_sub(1);
    mirror_overflows_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  try {
    FrameRun run{0, {packet.begin(), packet.end()}, {static_cast<std::uint32_t>(packet.size())}};
    boost::asio::post(strand_, [self = shared_from_this(), channel_name, run = std::move(run)]() {
      self->mirror_backlog_.fetch_sub(1);
      Channel* channel = self->find(channel_name);
      if (channel == nullptr) return;
      channel->dropped += self->mirror_overflows_.exchange(0, std::memory_order_relaxed);
      self->deliver(*channel, nullptr, run);
    });
  } catch (...) {  // out of memory: the mirror misses this packet; the verdict is not delayed
    mirror_backlog_.fetch_sub(1);
    mirror_overflows_.fetch_add(1, std::memory_order_relaxed);
  }
}

void ChannelHub::event(const Channel& channel, std::string_view action, const Member& member,
                       std::string_view reason) {
  if (events_ == nullptr || !events_->wants(EventType::channel)) return;
  events_->other(EventType::channel, "channel",
                 fmt::format(R"("channel":{{"name":{},"action":"{}","member":{},"session":{},)"
                             R"("client":{},"pid":{},"uid":{},"rights":"{}"{}}})",
                             json_string(channel.spec.name), action, member.id,
                             member.peer.session_id, json_string(member.peer.name),
                             member.peer.cred.pid, member.peer.cred.uid, rights_text(member.rights),
                             reason.empty() ? "" : ",\"reason\":" + json_string(reason)));
}

}  // namespace pktbroker
