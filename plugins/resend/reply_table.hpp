// The flows resend moved to a new local address, so that their replies can be moved back:
// (protocol, remote end, new local end) -> the old local address, until an expiry. Bounded.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <unordered_map>

namespace pktbroker::plugins::resend {

/// One direction-free view of a flow: the far end and the local end on the link.
struct ReplyKey {
  std::uint8_t protocol = 0;
  std::uint8_t family = 0;  ///< 4 or 6
  std::uint16_t remote_port = 0;
  std::uint16_t local_port = 0;
  std::array<std::uint8_t, 16> remote{};
  std::array<std::uint8_t, 16> local{};  ///< the new address
  bool operator==(const ReplyKey&) const = default;
};

/// Not thread-safe: the plugin guards it.
class ReplyTable {
 public:
  using Address = std::array<std::uint8_t, 16>;

  explicit ReplyTable(std::size_t capacity) : capacity_(capacity) {}

  /// Remembers (or refreshes) a translation until `expires_ns`. Expired entries make room;
  /// false when the table is still full.
  bool add(const ReplyKey& key, const Address& old_local, std::uint64_t expires_ns,
           std::uint64_t now_ns);
  /// The old local address of a live translation for `key`, which then lives until
  /// `expires_ns` (traffic either way keeps a connection translated).
  std::optional<Address> use(const ReplyKey& key, std::uint64_t now_ns, std::uint64_t expires_ns);
  /// The flow is gone: its translation too.
  void remove(const ReplyKey& key) { entries_.erase(key); }
  /// Live translations (expired ones are forgotten first).
  std::size_t live(std::uint64_t now_ns);

 private:
  struct KeyHash {
    std::size_t operator()(const ReplyKey& key) const noexcept;
  };
  struct Entry {
    Address old_local;
    std::uint64_t expires_ns;
  };
  void forget_expired(std::uint64_t now_ns);

  std::size_t capacity_;
  std::unordered_map<ReplyKey, Entry, KeyHash> entries_;
};

}  // namespace pktbroker::plugins::resend
