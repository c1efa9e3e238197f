#include "broker/flow/name_cache.hpp"

#include <algorithm>
#include <cstring>

namespace pktbroker {

std::size_t NameCache::AddressHash::operator()(const IpAddress& address) const noexcept {
  std::uint64_t halves[2];
  std::memcpy(halves, address.bytes.data(), sizeof halves);
  return static_cast<std::size_t>((halves[0] * 0x9e3779b97f4a7c15ULL) ^ halves[1] ^ address.family);
}

void NameCache::remember(const IpAddress& address, std::string_view name, std::uint32_t ttl_s,
                         Clock::time_point now) {
  const auto expires = now + std::chrono::seconds(std::clamp(ttl_s, min_ttl_s, max_ttl_s));
  std::unique_lock lock(mutex_);
  if (const auto found = entries_.find(address); found != entries_.end()) {
    found->second.name.assign(name);
    found->second.expires = expires;
    order_.splice(order_.end(), order_, found->second.age);
    return;
  }
  if (entries_.size() >= capacity_ && !order_.empty()) {
    entries_.erase(order_.front());
    order_.pop_front();
  }
  order_.push_back(address);
  entries_.emplace(address, Entry{std::string(name), expires, std::prev(order_.end())});
}

std::string NameCache::lookup(const IpAddress& address, Clock::time_point now) const {
  std::shared_lock lock(mutex_);
  const auto found = entries_.find(address);
  if (found == entries_.end() || found->second.expires <= now) return {};
  return found->second.name;
}

std::size_t NameCache::size() const {
  std::shared_lock lock(mutex_);
  return entries_.size();
}

}  // namespace pktbroker
