#include "packet_ids.hpp"

#include <algorithm>

namespace pktbroker::nfq {

std::uint32_t PacketIds::assign(std::uint64_t token) {
  if (tokens_.size() == max_tracked) {
    // The oldest id still waiting holds the window open: it is forgotten (one id never
    // answered must not keep every later one).
    tokens_.front().reset();
    --waiting_;
    ++forgotten_;
    drop_decided_front();
  }
  tokens_.emplace_back(token);
  ++waiting_;
  return static_cast<std::uint32_t>(first_ + tokens_.size() - 1);
}

std::optional<std::uint64_t> PacketIds::take(std::uint32_t id) {
  const std::uint32_t index = id - first_;  // wraps to a huge index for ids before first_
  if (index >= tokens_.size() || !tokens_[index]) return std::nullopt;
  const std::uint64_t token = *tokens_[index];
  tokens_[index].reset();
  --waiting_;
  drop_decided_front();
  return token;
}

std::vector<std::uint64_t> PacketIds::take_through(std::uint32_t id) {
  std::vector<std::uint64_t> taken;
  const std::uint32_t index = id - first_;
  // Compared as the kernel does (serial numbers): an id less than half the id space after the
  // first waiting one names every id up to it; any other id lies before them and names none.
  if (index > UINT32_MAX / 2) return taken;
  const std::size_t end = std::min<std::size_t>(std::size_t{index} + 1, tokens_.size());
  for (std::size_t i = 0; i < end; ++i) {
    if (tokens_[i]) taken.push_back(*tokens_[i]);
    tokens_[i].reset();
  }
  waiting_ -= taken.size();
  drop_decided_front();
  return taken;
}

void PacketIds::drop_decided_front() {
  while (!tokens_.empty() && !tokens_.front()) {
    tokens_.pop_front();
    ++first_;
  }
}

}  // namespace pktbroker::nfq
