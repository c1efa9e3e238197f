#include "plugins/resend/reply_table.hpp"

#include <algorithm>
#include <functional>
#include <string_view>

namespace pktbroker::plugins::resend {

std::size_t ReplyTable::KeyHash::operator()(const ReplyKey& key) const noexcept {
  std::size_t hash = std::hash<std::string_view>{}(
      {reinterpret_cast<const char*>(key.remote.data()), key.remote.size()});
  hash ^= std::hash<std::string_view>{}(
              {reinterpret_cast<const char*>(key.local.data()), key.local.size()}) *
          31;
  return hash ^ (std::size_t{key.remote_port} << 16 | key.local_port) ^
         (std::size_t{key.protocol} << 40);
}

void ReplyTable::forget_expired(std::uint64_t now_ns) {
  std::erase_if(entries_,
                [now_ns](const auto& entry) { return entry.second.expires_ns <= now_ns; });
}

bool ReplyTable::add(const ReplyKey& key, const Address& old_local, std::uint64_t expires_ns,
                     std::uint64_t now_ns) {
  if (const auto found = entries_.find(key); found != entries_.end()) {
    found->second = {old_local, expires_ns};
    return true;
  }
  if (entries_.size() >= capacity_) forget_expired(now_ns);
  if (entries_.size() >= capacity_) return false;
  entries_.emplace(key, Entry{old_local, expires_ns});
  return true;
}

std::optional<ReplyTable::Address> ReplyTable::use(const ReplyKey& key, std::uint64_t now_ns,
                                                   std::uint64_t expires_ns) {
  const auto found = entries_.find(key);
  if (found == entries_.end() || found->second.expires_ns <= now_ns) return std::nullopt;
  found->second.expires_ns = std::max(found->second.expires_ns, expires_ns);
  return found->second.old_local;
}

std::size_t ReplyTable::live(std::uint64_t now_ns) {
  forget_expired(now_ns);
  return entries_.size();
}

}  // namespace pktbroker::plugins::resend
