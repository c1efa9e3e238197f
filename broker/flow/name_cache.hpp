// Which name each address was given out for, as plugins saw it in DNS answers, so rules can
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

namespace pktbroker {

class NameCache {
 public:
  /// Clients use an answer for a while even with a TTL of 0: names are kept at least this long.
  static constexpr std::uint32_t min_ttl_s = 60;
  static constexpr std::uint32_t max_ttl_s = 24 * 3600;

  explicit NameCache(std::size_t capacity = 65536) : capacity_(capacity) {}

  /// The address answers for `name` until ttl_s seconds from `now` (kept 60 s to a day). At
  /// capacity the least recently remembered address is forgotten.
  void remember(const IpAddress& address, std::string_view name, std::uint32_t ttl_s,
                Clock::time_point now);

  /// The name the address was last given out for, or "" when none is known (or it expired).
  /// Copies the name: another queue may replace it at any time.
  [[nodiscard]] std::string lookup(const IpAddress& address, Clock::time_point now) const;

  [[nodiscard]] std::size_t size() const;

 private:
  struct AddressHash {
    std::size_t operator()(const IpAddress& address) const noexcept;
  };
  struct Entry {
    std::string name;
    Clock::time_point expires;
    std::list<IpAddress>::iterator age;  ///< position in `order_`
  };

  std::size_t capacity_;
  mutable std::shared_mutex mutex_;
  std::unordered_map<IpAddress, Entry, AddressHash> entries_;
  std::list<IpAddress> order_;  ///< oldest remembered first
};

}  // namespace pktbroker
