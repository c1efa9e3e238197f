// Watches rtnetlink for addresses added to or removed from one interface, on a thread of its
// own, so that a link's new address wakes resend without a hook script.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <thread>

namespace pktbroker::plugins::resend {

class AddressWatch {
 public:
  /// (added, family 4 or 6, address bytes): a global, usable (not tentative) address.
  using Handler = std::function<void(bool added, int family, std::span<const std::uint8_t>)>;

  /// Subscribes to address events and starts the thread; throws std::system_error.
  AddressWatch(std::string interface, Handler handler);
  /// Stops and joins the thread.
  ~AddressWatch();
  AddressWatch(const AddressWatch&) = delete;
  AddressWatch& operator=(const AddressWatch&) = delete;

 private:
  void run();
  void on_message(const void* data, std::size_t len);

  std::string interface_;
  Handler handler_;
  int socket_ = -1;
  int stop_ = -1;  ///< an eventfd the destructor signals
  std::thread thread_;
};

}  // namespace pktbroker::plugins::resend
