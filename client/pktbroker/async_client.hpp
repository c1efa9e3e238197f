/// @file async_client.hpp
/// @brief libpktbroker's asynchronous API on Boost.Asio.
///
/// All handlers run on the executor given at construction; the object must outlive its
/// operations (hold it in a shared_ptr or keep it alive until the io_context stops). Example:
/// @code
///   pktbroker::AsyncClient client(io.get_executor());
///   client.async_connect(path, "async-dropper", pktbroker::proto::role_verdict, [&](auto error) {
///     client.async_subscribe({.selector = "{mark: 7}"}, [&](auto error, std::uint32_t id) {
///       client.start_receiving(
///           [&](const pktbroker::ReceivedPacket& p) {
///             client.verdict(p.info().token, pktbroker::proto::VerdictCode::drop);
///           },
///           [](std::error_code) { /* connection ended */ });
///     });
///   });
/// @endcode
#pragma once

#include "pktbroker/client.hpp"
#include "pktbroker/seq_packet_protocol.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <deque>
#include <functional>
#include <map>
#include <memory>

namespace pktbroker {

class AsyncClient {
 public:
  using CompletionHandler = std::function<void(std::error_code)>;
  using SubscribeHandler = std::function<void(std::error_code, std::uint32_t subscription_id)>;
  using PacketHandler = std::function<void(const ReceivedPacket&)>;

  explicit AsyncClient(const boost::asio::any_io_executor& executor);

  /// Connects and says HELLO; `done` gets the outcome (last_error() after broker_error).
  void async_connect(const std::string& socket_path, const std::string& name, std::uint8_t roles,
                     CompletionHandler done);
  void async_subscribe(const proto::Subscribe& request, SubscribeHandler done);
  /// Delivers every packet to `on_packet` until the connection ends, then calls `on_end`.
  /// ERROR notices about earlier verdicts are kept in last_error() and do not end the stream.
  void start_receiving(PacketHandler on_packet, CompletionHandler on_end);
  /// Queues a verdict; writes go out one at a time, in order.
  void verdict(std::uint64_t token, proto::VerdictCode verdict,
               std::optional<std::uint32_t> mark = std::nullopt,
               std::span<const std::uint8_t> replacement = {});
  void close();

  [[nodiscard]] const proto::Error& last_error() const noexcept { return last_error_; }
  [[nodiscard]] const proto::Welcome& welcome() const noexcept { return welcome_; }

 private:
  using ReplyHandler = std::function<void(std::error_code, const proto::Decoded&)>;
  void request(const proto::Message& message, ReplyHandler done);
  void send(const proto::Message& message, std::uint32_t request_id);
  void do_read();
  void on_read(const boost::system::error_code& error, std::size_t size);
  void deliver_packets(std::size_t size);
  void do_write();
  void fail_all(std::error_code error);

  SeqPacketProtocol::socket socket_;
  std::uint32_t next_request_ = 1;
  std::map<std::uint32_t, ReplyHandler> pending_;
  std::deque<std::vector<std::uint8_t>> writes_;
  std::vector<std::uint8_t> read_buffer_;
  boost::asio::socket_base::message_flags read_flags_ = 0;
  PacketHandler on_packet_;
  CompletionHandler on_end_;
  proto::Error last_error_;
  proto::Welcome welcome_;
};

}  // namespace pktbroker
