// Channels: named packet buses between processes (after IPN / VDE). Members join by name with
// the rights the channel's access list gives their user; a delivery-policy plugin decides
// where each frame goes; a member whose queue is full misses frames (drop, counted) or pauses
// the senders (backpressure). Queued packets can be mirrored into a channel, and a tap or tun
// interface can be a member. All channel state lives on the hub's strand.
#pragma once

#include "broker/policy/policy.hpp"
#include "pktbroker/protocol.hpp"
#include "plugins/host/plugin_set.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include <sys/types.h>

namespace pktbroker {

class EventLog;

/// Frames queued for one member and not yet written. The hub adds, the member's writer takes
/// away (any thread); a backpressure channel asks to hear when it has drained.
class ChannelBacklog {
 public:
  void add(std::size_t frames) noexcept { frames_.fetch_add(frames); }
  void release(std::size_t frames) noexcept;
  [[nodiscard]] std::size_t size() const noexcept { return frames_.load(); }
  /// Calls `drained` once, from the thread that releases, when the backlog is at most `low`.
  void watch(std::size_t low, std::function<void()> drained);

 private:
  std::atomic<std::size_t> frames_{0};
  std::atomic<bool> watching_{false};
  std::atomic<std::size_t> low_{0};
  std::mutex mutex_;  // guards drained_ (set on the hub's strand, called from a writer)
  std::function<void()> drained_;
};

/// A session's end of its memberships.
class ChannelPort {
 public:
  virtual ~ChannelPort() = default;
  /// A reply, or a notice (CHANNEL_LEFT, CHANNEL_FLOW, ERROR) with request id 0.
  virtual void channel_message(const proto::Message& message, std::uint32_t request_id) = 0;
  /// A CHANNEL_FRAMES datagram carrying `frames` frames, already counted in `backlog`; the
  /// port releases them from it when they are written or discarded.
  virtual void channel_frames(std::shared_ptr<const std::vector<std::uint8_t>> datagram,
                              std::size_t frames, std::shared_ptr<ChannelBacklog> backlog) = 0;
  /// The hub has handled `frames` frames the session sent (ChannelHub::send).
  virtual void frames_handled(std::size_t frames) noexcept = 0;
};

/// Who is asking: the session's peer and what it holds.
struct ChannelPeer {
  std::uint32_t session_id = 0;
  std::string name;
  ucred cred{};
  std::vector<gid_t> groups;
  bool manager = false;  ///< holds the manage role
};

/// Frames one session sent to one channel in one wake-up, back to back in `bytes`.
struct FrameRun {
  std::uint32_t channel_id = 0;
  std::vector<std::uint8_t> bytes;
  std::vector<std::uint32_t> ends;  ///< where each frame ends in bytes
};

class ChannelHub : public std::enable_shared_from_this<ChannelHub> {
 public:
  static constexpr std::size_t max_channels = 256;
  static constexpr std::size_t max_access_entries = 64;  ///< per CHANNEL_CREATE

  ChannelHub(boost::asio::io_context& io, std::shared_ptr<const PluginSet> plugins,
             std::shared_ptr<EventLog> events);
  ~ChannelHub();
  ChannelHub(const ChannelHub&) = delete;
  ChannelHub& operator=(const ChannelHub&) = delete;

  /// Makes the policy's channels and their taps (before the pool runs). Throws
  /// std::runtime_error naming the channel when one cannot be made.
  void open(const std::vector<ChannelConfig>& channels);
  /// A reloaded policy's channels (any thread): see the definition for what changes at once.
  void apply(std::vector<ChannelConfig> channels);
  /// Closes the taps; members stay until their sessions close.
  void stop();
  /// Channels made at run time use these plugins from now on (a reload).
  void set_plugins(std::shared_ptr<const PluginSet> plugins);
  /// Whether any channel's access list names this peer (its uid or one of its groups): such a
  /// peer may connect for channels without a clients: grant. Any thread.
  [[nodiscard]] bool names(const ucred& cred, const std::vector<gid_t>& groups) const;

  // From sessions, any thread; answers go to the port.
  void create(std::shared_ptr<ChannelPort> port, ChannelPeer peer, proto::ChannelCreate request,
              std::uint32_t request_id);
  void join(std::shared_ptr<ChannelPort> port, ChannelPeer peer, proto::ChannelJoin request,
            std::uint32_t request_id);
  void send(std::shared_ptr<ChannelPort> port, std::uint32_t session_id, FrameRun run);
  void leave(std::shared_ptr<ChannelPort> port, std::uint32_t session_id, std::uint32_t channel_id,
             std::uint32_t request_id);
  void list(std::shared_ptr<ChannelPort> port, ChannelPeer peer, std::uint32_t request_id);
  void kick(std::shared_ptr<ChannelPort> port, ChannelPeer peer, proto::ChannelKick request,
            std::uint32_t request_id);
  /// The session is gone: it leaves every channel.
  void session_closed(std::uint32_t session_id);
  /// A copy of a queued packet (IP, from the broker) for `channel`; never blocks or throws.
  void mirror(const std::string& channel, std::span<const std::uint8_t> packet) noexcept;

 private:
  struct Channel;
  struct Member;
  class Tap;

  std::shared_ptr<Channel> make_channel(const proto::ChannelCreate& spec, std::string& error);
  /// Makes a channel the policy declares, with its taps.
  bool declare(const ChannelConfig& config, std::string& error);
  void redeclare(Channel& channel, const ChannelConfig& config);
  void set_declared_access(const std::vector<ChannelConfig>& channels);
  /// Removes a member and tells it why.
  void evict(Channel& channel, std::uint32_t member_id, const std::string& reason);
  void evict_all(Channel& channel, const std::string& reason);
  std::shared_ptr<const Plugin> delivery_plugin(const std::string& name, std::string& error);
  void attach_tap(Channel& channel, const std::string& name);
  Channel* find(std::string_view name);
  Channel* find(std::uint32_t channel_id);
  static Member* member_of(Channel& channel, std::uint32_t session_id);
  void deliver(Channel& channel, Member* sender, const FrameRun& run);
  void remove_member(Channel& channel, std::uint32_t member_id, const std::string& reason,
                     std::string_view action);
  void pause_senders(Channel& channel);
  void resume_if_drained(std::uint32_t channel_id);
  void event(const Channel& channel, std::string_view action, const Member& member,
             std::string_view reason = {});
  void refuse(ChannelPort& port, std::uint32_t request_id, proto::ErrorCode code, std::string text);
  static std::uint8_t rights_for(const proto::ChannelCreate& spec, const ChannelPeer& peer);
  void remember_access(const proto::ChannelCreate& spec);

  boost::asio::io_context& io_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  std::shared_ptr<const PluginSet> plugins_;                          // on the strand
  std::map<std::string, std::shared_ptr<const Plugin>> loaded_here_;  // delivery plugins by name
  std::shared_ptr<EventLog> events_;
  std::map<std::uint32_t, std::shared_ptr<Channel>> channels_;  // by id
  std::uint32_t next_channel_ = 1;
  mutable std::mutex access_mutex_;  // the ids any access list names (read by accept)
  std::vector<proto::ChannelAccess> declared_access_;  // the policy's channels
  std::vector<proto::ChannelAccess> created_access_;   // channels made at run time
  std::vector<std::uint32_t> scratch_members_;         // a frame's destinations
  std::atomic<std::size_t> mirror_backlog_{0};         // mirrored packets posted, not delivered
  std::atomic<std::uint64_t> mirror_overflows_{0};
};

}  // namespace pktbroker
