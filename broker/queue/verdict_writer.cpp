#include "broker/queue/verdict_writer.hpp"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
// libnetfilter_queue.h needs the kernel types above first.
#include <libnetfilter_queue/libnetfilter_queue.h>

namespace pktbroker {
namespace {

constexpr std::size_t send_threshold =
    std::size_t{32} * 1024;               // flush the buffer when it grows past this
constexpr std::size_t max_message = 256;  // a verdict message with mark, generously

int kernel_verdict(VerdictKind kind) noexcept {
  switch (kind) {
    case VerdictKind::accept: return NF_ACCEPT;
    case VerdictKind::drop: return NF_DROP;
    case VerdictKind::repeat: return NF_REPEAT;
  }
  return NF_ACCEPT;
}

}  // namespace

VerdictWriter::VerdictWriter(std::uint16_t queue, Sender send)
    : queue_(queue), send_(std::move(send)), buffer_(send_threshold + max_message) {
  entries_.reserve(256);
}

void VerdictWriter::add(std::uint32_t packet_id, const Verdict& verdict) {
  entries_.push_back({packet_id, verdict, {}});
}

void VerdictWriter::add(std::uint32_t packet_id, const Verdict& verdict,
                        std::span<const std::uint8_t> replacement) {
  entries_.push_back({packet_id, verdict, {replacement.begin(), replacement.end()}});
}

// Makes room for a message of up to `size` bytes, sending what is buffered when needed.
void VerdictWriter::reserve_message(std::size_t size) noexcept {
  if (used_ >= send_threshold || used_ + size > buffer_.size()) {
    if (const int error = send_buffer()) send_error_ = error;
  }
  if (size > buffer_.size()) buffer_.resize(size);
}

void VerdictWriter::put_single(const Entry& entry) noexcept {
  reserve_message(max_message + entry.replacement.size());
  auto* data = reinterpret_cast<char*>(buffer_.data() + used_);
  nlmsghdr* header = nfq_nlmsg_put(data, NFQNL_MSG_VERDICT, queue_);
  nfq_nlmsg_verdict_put(header, static_cast<int>(entry.id), kernel_verdict(entry.verdict.kind));
  if (entry.verdict.set_mark) nfq_nlmsg_verdict_put_mark(header, *entry.verdict.set_mark);
  if (!entry.replacement.empty()) {
    nfq_nlmsg_verdict_put_pkt(header, entry.replacement.data(),
                              static_cast<std::uint32_t>(entry.replacement.size()));
  }
  used_ += MNL_ALIGN(header->nlmsg_len);
  ++counters_.messages;
}

void VerdictWriter::put_batch(std::uint32_t last_id, const Verdict& verdict) noexcept {
  reserve_message(max_message);
  auto* data = reinterpret_cast<char*>(buffer_.data() + used_);
  nlmsghdr* header = nfq_nlmsg_put(data, NFQNL_MSG_VERDICT_BATCH, queue_);
  nfq_nlmsg_verdict_put(header, static_cast<int>(last_id), kernel_verdict(verdict.kind));
  if (verdict.set_mark) nfq_nlmsg_verdict_put_mark(header, *verdict.set_mark);
  used_ += MNL_ALIGN(header->nlmsg_len);
  ++counters_.batch_messages;
}

int VerdictWriter::send_buffer() noexcept {
  if (used_ == 0) return 0;
  const int error = send_(std::span(buffer_.data(), used_));
  used_ = 0;
  ++counters_.sends;
  return error;
}

int VerdictWriter::flush(std::optional<std::uint32_t> oldest_pending) noexcept {
  bool ascending = true;
  for (std::size_t i = 1; i < entries_.size() && ascending; ++i) {
    ascending = id_before(entries_[i - 1].id, entries_[i].id);
  }
  for (std::size_t first = 0; first < entries_.size();) {
    std::size_t last = first;
    while (last + 1 < entries_.size() && entries_[last + 1].id == entries_[last].id + 1 &&
           entries_[last + 1].verdict == entries_[first].verdict &&
           entries_[first].replacement.empty() && entries_[last + 1].replacement.empty()) {
      ++last;
    }
    const bool batch_safe = ascending && last > first &&
                            (!oldest_pending || id_before(entries_[last].id, *oldest_pending));
    if (batch_safe) {
      put_batch(entries_[last].id, entries_[first].verdict);
      counters_.batched_packets += last - first + 1;
    } else {
      for (std::size_t i = first; i <= last; ++i) put_single(entries_[i]);
    }
    first = last + 1;
  }
  entries_.clear();
  const int error = send_buffer();
  const int result = send_error_ != 0 ? send_error_ : error;
  send_error_ = 0;
  return result;
}

}  // namespace pktbroker
