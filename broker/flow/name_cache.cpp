#include "broker/flow/name_cache.hpp"

#include <algorithm>
#include <cstring>

namespace pktbroker {

std::size_t NameCache::AddressHash::operator()(const IpAddress& address) const noexcept {
  std::uint64_t halves[2];
  std::memcpy(halves, address.bytes.data(), sizeof halves);
  return static_cast<std::size_t>((halves[0] * 0x9e3779b97f4a7c15ULL) ^ halves[1] ^ address.family);
}

bool NameCache::remember(const IpAddress& address, std::string_view name, std::uint32_t ttl_s,
                         Clock::time_point now) {
  const auto expires = now + std::chrono::seconds(std::clamp(ttl_s, min_ttl_s, max_ttl_s));
  std::unique_lock lock(mutex_);
  if (const auto found = entries_.find(address); found != entries_.end()) {
    auto& names = found->second.names;
    std::erase_if(names, [now](const auto& entry) { return entry.second <= now; });
    order_.splice(order_.end(), order_, found->second.age);
    const auto same = std::find_if(names.begin(), names.end(),
                                   [name](const auto& entry) { return entry.first == name; });
    if (same != names.end()) {
      same->second = std::max(same->second, expires);
      return true;
    }
    if (names.size() >= max_names) return false;
    names.emplace_back(std::string(name), expires);
    return true;
  }
  if (entries_.size() >= capacity_ && !order_.empty()) {
    entries_.erase(order_.front());
    order_.pop_front();
  }
  order_.push_back(address);
  Entry entry;
  entry.names.emplace_back(std::string(name), expires);
  entry.age = std::prev(order_.end());
  entries_.emplace(address, std::move(entry));
  return true;
}

std::vector<std::string> NameCache::lookup(const IpAddress& address, Clock::time_point now) const {
  std::vector<std::string> live;
  std::shared_lock lock(mutex_);
  const auto found = entries_.find(address);
  if (found == entries_.end()) return live;
  for (const auto& [name, expires] : found->second.names) {
    if (expires > now) live.push_back(name);
  }
  return live;
}

std::size_t NameCache::size() const {
  std::shared_lock lock(mutex_);
  return entries_.size();
}

}  // namespace pktbroker
