#include "plugins/resend/link_watch.hpp"

#include <array>
#include <cerrno>
#include <system_error>

#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace pktbroker::plugins::resend {
namespace {

[[noreturn]] void fail(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

}  // namespace

LinkWatch::LinkWatch(std::string interface, LinkHandler on_link, AddressHandler on_address)
    : interface_(std::move(interface)),
      on_link_(std::move(on_link)),
      on_address_(std::move(on_address)) {
  socket_ = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
  if (socket_ < 0) fail("rtnetlink socket");
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  local.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
  if (bind(socket_, reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) {
    close(socket_);
    fail("rtnetlink bind");
  }
  stop_ = eventfd(0, EFD_CLOEXEC);
  if (stop_ < 0) {
    close(socket_);
    fail("eventfd");
  }
  thread_ = std::thread([this] { run(); });
}

LinkWatch::~LinkWatch() {
  const std::uint64_t one = 1;
  (void)!write(stop_, &one, sizeof one);
  thread_.join();
  close(stop_);
  close(socket_);
}

void LinkWatch::run() {
  std::array<char, 16384> buffer{};
  std::array<pollfd, 2> fds{pollfd{socket_, POLLIN, 0}, pollfd{stop_, POLLIN, 0}};
  while (true) {
    if (poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) return;
    if ((fds[1].revents & POLLIN) != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const ssize_t n = recv(socket_, buffer.data(), buffer.size(), 0);
    if (n > 0) {
      on_message(buffer.data(), static_cast<std::size_t>(n));
    } else if (n < 0 && errno == ENOBUFS) {
      on_link_();  // events were lost: at least look the link up anew; the next ones still come
    }
  }
}

void LinkWatch::on_message(const void* data, std::size_t len) {
  const unsigned watched = if_nametoindex(interface_.c_str());  // the link may be made anew
  int remaining = static_cast<int>(len);
  for (auto* nlh = static_cast<const nlmsghdr*>(data); mnl_nlmsg_ok(nlh, remaining);
       nlh = mnl_nlmsg_next(nlh, &remaining)) {
    if (nlh->nlmsg_type == RTM_NEWLINK || nlh->nlmsg_type == RTM_DELLINK) {
      on_link_();
      continue;
    }
    if (nlh->nlmsg_type != RTM_NEWADDR && nlh->nlmsg_type != RTM_DELADDR) continue;
    if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(ifaddrmsg))) continue;
    const auto* ifa = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(nlh));
    if (watched == 0 || ifa->ifa_index != watched || ifa->ifa_scope != RT_SCOPE_UNIVERSE) continue;
    std::uint32_t flags = ifa->ifa_flags;
    const nlattr* local = nullptr;
    const nlattr* address = nullptr;
    const auto* tail = static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh));
    for (auto* attr =
             static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(nlh, sizeof(ifaddrmsg)));
         mnl_attr_ok(attr, static_cast<int>(tail - reinterpret_cast<const char*>(attr)));
         attr = mnl_attr_next(attr)) {
      switch (mnl_attr_get_type(attr)) {
        case IFA_LOCAL: local = attr; break;
        case IFA_ADDRESS: address = attr; break;
        case IFA_FLAGS:
          if (mnl_attr_validate(attr, MNL_TYPE_U32) == 0) flags = mnl_attr_get_u32(attr);
          break;
        default: break;
      }
    }
    // IFA_LOCAL is the local end of a point-to-point link; IFA_ADDRESS otherwise.
    const nlattr* chosen = local != nullptr ? local : address;
    const int family = ifa->ifa_family == AF_INET ? 4 : ifa->ifa_family == AF_INET6 ? 6 : 0;
    const std::size_t size = family == 4 ? 4 : 16;
    if (chosen == nullptr || family == 0 || mnl_attr_get_payload_len(chosen) != size) continue;
    const bool added = nlh->nlmsg_type == RTM_NEWADDR;
    if (added && (flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)) != 0) continue;  // not usable yet
    on_address_(added, family,
                {static_cast<const std::uint8_t*>(mnl_attr_get_payload(chosen)), size});
  }
}

}  // namespace pktbroker::plugins::resend
