// Which names each address was given out for, as plugins saw them in DNS answers, so rules can
// match `dst_name:` on later flows. Shared by every queue.
#pragma once

#include "broker/verdict_tracker.hpp"
#include "pktbroker/packet_view.hpp"

#include <cstddef>
#include <list>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace pktbroker {

class NameCache {
 public:
  /// Clients use an answer for a while even with a TTL of 0: names are kept at least this long.
  static constexpr std::uint32_t min_ttl_s = 60;
  static constexpr std::uint32_t max_ttl_s = 24 * 3600;

  explicit NameCache(std::size_t capacity = 65536) : capacity_(capacity) {}

  /// Names one address keeps at once.
  static constexpr std::size_t max_names = 8;

  /// The address answers for `name` until ttl_s seconds from `now` (kept 60 s to a day). A
  /// name never displaces another that has not expired: anyone may make a DNS zone answer with
  /// any address, and a later answer must not rename it (`*.tracker.example` would stop
  /// matching). Returns false when the address already has max_names live names (the new one
  /// is not kept). At capacity the least recently remembered address is forgotten.
  bool remember(const IpAddress& address, std::string_view name, std::uint32_t ttl_s,
                Clock::time_point now);

  /// Every live name the address was given out for, oldest first; empty when none is known.
  /// Copies: another queue may change them at any time.
  [[nodiscard]] std::vector<std::string> lookup(const IpAddress& address,
                                                Clock::time_point now) const;

  [[nodiscard]] std::size_t size() const;

 private:
  struct AddressHash {
    std::size_t operator()(const IpAddress& address) const noexcept;
  };
  struct Entry {
    std::vector<std::pair<std::string, Clock::time_point>> names;  ///< name, expiry
    std::list<IpAddress>::iterator age;                            ///< position in `order_`
  };

  std::size_t capacity_;
  mutable std::shared_mutex mutex_;
  std::unordered_map<IpAddress, Entry, AddressHash> entries_;
  std::list<IpAddress> order_;  ///< oldest remembered first
};

}  // namespace pktbroker
