#include "pktbroker/async_client.hpp"

#include <boost/asio/buffer.hpp>

namespace pktbroker {

AsyncClient::AsyncClient(const boost::asio::any_io_executor& executor)
    : socket_(executor), read_buffer_(proto::max_datagram) {}

void AsyncClient::async_connect(const std::string& socket_path, const std::string& name,
                                std::uint8_t roles, CompletionHandler done) {
  socket_.async_connect(
      SeqPacketProtocol::endpoint(socket_path),
      [this, name, roles, done = std::move(done)](const boost::system::error_code& error) {
        if (error) {
          done(error);
          return;
        }
        do_read();
        request(proto::Hello{name, roles, proto::protocol_version, proto::protocol_version,
                             proto::feature_packet_batch},
                [this, done](std::error_code failure, const proto::Decoded& reply) {
                  if (!failure) {
                    if (const auto* welcome = std::get_if<proto::Welcome>(&reply.message)) {
                      welcome_ = *welcome;
                    } else {
                      failure = ClientError::unexpected_reply;
                    }
                  }
                  done(failure);
                });
      });
}

void AsyncClient::async_subscribe(const proto::Subscribe& request_message, SubscribeHandler done) {
  request(request_message,
          [done = std::move(done)](std::error_code error, const proto::Decoded& reply) {
            const auto* subscribed = std::get_if<proto::Subscribed>(&reply.message);
            if (!error && subscribed == nullptr) error = ClientError::unexpected_reply;
            done(error, error ? 0 : subscribed->subscription_id);
          });
}

void AsyncClient::start_receiving(PacketHandler on_packet, CompletionHandler on_end) {
  on_packet_ = std::move(on_packet);
  on_end_ = std::move(on_end);
}

void AsyncClient::verdict(std::uint64_t token, proto::VerdictCode verdict,
                          std::optional<std::uint32_t> mark,
                          std::span<const std::uint8_t> replacement) {
  send(proto::Verdict{token, verdict, mark, replacement}, 0);
}

void AsyncClient::close() {
  boost::system::error_code ignored;
  socket_.close(ignored);
}

void AsyncClient::request(const proto::Message& message, ReplyHandler done) {
  const std::uint32_t id = next_request_++;
  pending_.emplace(id, std::move(done));
  send(message, id);
}

void AsyncClient::send(const proto::Message& message, std::uint32_t request_id) {
  std::vector<std::uint8_t> datagram;
  if (const auto error = proto::encode(message, request_id, datagram)) {
    if (const auto found = pending_.find(request_id); found != pending_.end()) {
      auto handler = std::move(found->second);
      pending_.erase(found);
      handler(error, proto::Decoded{});
    }
    return;
  }
  writes_.push_back(std::move(datagram));
  if (writes_.size() == 1) do_write();
}

void AsyncClient::do_write() {
  socket_.async_send(boost::asio::buffer(writes_.front()), 0,
                     [this](const boost::system::error_code& error, std::size_t) {
                       if (writes_.empty()) return;
                       writes_.pop_front();
                       if (error) {
                         fail_all(error);
                         return;
                       }
                       if (!writes_.empty()) do_write();
                     });
}

void AsyncClient::do_read() {
  socket_.async_receive(
      boost::asio::buffer(read_buffer_), read_flags_,
      [this](const boost::system::error_code& error, std::size_t size) { on_read(error, size); });
}

void AsyncClient::on_read(const boost::system::error_code& error, std::size_t size) {
  if (error || size == 0) {
    fail_all(error ? std::error_code(error) : std::error_code(ClientError::closed));
    return;
  }
  proto::Decoded decoded;
  if (const auto bad = proto::decode(std::span(read_buffer_.data(), size), decoded)) {
    fail_all(bad);
    return;
  }
  if (std::holds_alternative<proto::Packet>(decoded.message) ||
      std::holds_alternative<proto::PacketBatch>(decoded.message)) {
    deliver_packets(size);
  } else if (const auto found = pending_.find(decoded.header.request_id);
             decoded.header.request_id != 0 && found != pending_.end()) {
    auto handler = std::move(found->second);
    pending_.erase(found);
    std::error_code outcome;
    if (const auto* failure = std::get_if<proto::Error>(&decoded.message)) {
      last_error_ = *failure;
      outcome = ClientError::broker_error;
    }
    handler(outcome, decoded);
  } else if (const auto* failure = std::get_if<proto::Error>(&decoded.message)) {
    last_error_ = *failure;
  }
  do_read();
}

// The packet views must own their bytes: copy the datagram once, then decode the copy.
void AsyncClient::deliver_packets(std::size_t size) {
  auto datagram = std::make_shared<const std::vector<std::uint8_t>>(
      read_buffer_.begin(), read_buffer_.begin() + static_cast<std::ptrdiff_t>(size));
  proto::Decoded own;
  (void)proto::decode(*datagram, own);
  ReceivedPacket packet;
  packet.datagram_ = datagram;
  const auto hand_over = [&](const proto::Packet& p) {
    packet.packet_ = p;
    if (on_packet_) on_packet_(packet);
  };
  if (const auto* single = std::get_if<proto::Packet>(&own.message)) {
    hand_over(*single);
  } else {
    for (const proto::Packet& p : std::get<proto::PacketBatch>(own.message).packets) hand_over(p);
  }
}

void AsyncClient::fail_all(std::error_code error) {
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [id, handler] : pending) handler(error, proto::Decoded{});
  if (on_end_) {
    auto end = std::move(on_end_);
    on_end_ = nullptr;
    end(error);
  }
}

}  // namespace pktbroker
