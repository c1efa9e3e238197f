// Watches rtnetlink, on a thread of its own, for one interface: links made or removed (its
// index changes) and addresses added to or removed from it (a new address wakes resend
// without a hook script).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <thread>

namespace pktbroker::plugins::resend {

class LinkWatch {
 public:
  /// (added, family 4 or 6, address bytes): a global, usable (not tentative) address.
  using AddressHandler = std::function<void(bool added, int family, std::span<const std::uint8_t>)>;
  /// Some link was made, changed or removed.
  using LinkHandler = std::function<void()>;

  /// Subscribes to the events and starts the thread; throws std::system_error.
  LinkWatch(std::string interface, LinkHandler on_link, AddressHandler on_address);
  /// Stops and joins the thread.
  ~LinkWatch();
  LinkWatch(const LinkWatch&) = delete;
  LinkWatch& operator=(const LinkWatch&) = delete;

 private:
  void run();
  void on_message(const void* data, std::size_t len);

  std::string interface_;
  LinkHandler on_link_;
  AddressHandler on_address_;
  int socket_ = -1;
  int stop_ = -1;  ///< an eventfd the destructor signals
  std::thread thread_;
};

}  // namespace pktbroker::plugins::resend
