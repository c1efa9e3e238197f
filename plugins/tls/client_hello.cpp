#include "plugins/tls/client_hello.hpp"

#include <algorithm>

namespace pktbroker::plugins::tls {
namespace {

constexpr std::uint8_t record_handshake = 22;
constexpr std::uint8_t client_hello = 1;
constexpr std::size_t max_record = 16384 + 2048;

/// A bounds-checked reader over a byte span: every read reports whether it fit.
class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> bytes) : bytes_(bytes) {}
  bool u8(std::size_t& value) { return read(1, value); }
  bool u16(std::size_t& value) { return read(2, value); }
  bool u24(std::size_t& value) { return read(3, value); }
  bool skip(std::size_t n) {
    if (n > bytes_.size() - at_) return false;
    at_ += n;
    return true;
  }
  bool sub(std::size_t n, Reader& out) {
    if (n > bytes_.size() - at_) return false;
    out = Reader(bytes_.subspan(at_, n));
    at_ += n;
    return true;
  }
  [[nodiscard]] bool empty() const { return at_ == bytes_.size(); }
  [[nodiscard]] std::span<const std::uint8_t> rest() const { return bytes_.subspan(at_); }

 private:
  bool read(std::size_t n, std::size_t& value) {
    if (n > bytes_.size() - at_) return false;
    value = 0;
    for (std::size_t i = 0; i < n; ++i) value = (value << 8) | bytes_[at_ + i];
    at_ += n;
    return true;
  }
  std::span<const std::uint8_t> bytes_;
  std::size_t at_ = 0;
};

HelloStatus parse_hello_body(Reader body, std::string& server_name) {
  std::size_t length = 0;
  if (!body.skip(2 + 32)) return HelloStatus::malformed;                       // version, random
  if (!body.u8(length) || !body.skip(length)) return HelloStatus::malformed;   // session id
  if (!body.u16(length) || !body.skip(length)) return HelloStatus::malformed;  // cipher suites
  if (!body.u8(length) || !body.skip(length)) return HelloStatus::malformed;   // compression
  if (body.empty()) return HelloStatus::no_sni;                                // no extensions
  Reader extensions({});
  if (!body.u16(length) || !body.sub(length, extensions)) return HelloStatus::malformed;
  while (!extensions.empty()) {
    std::size_t type = 0;
    Reader data({});
    if (!extensions.u16(type) || !extensions.u16(length) || !extensions.sub(length, data)) {
      return HelloStatus::malformed;
    }
    if (type != 0) continue;  // server_name
    Reader names({});
    if (!data.u16(length) || !data.sub(length, names)) return HelloStatus::malformed;
    while (!names.empty()) {
      std::size_t name_type = 0;
      Reader name({});
      if (!names.u8(name_type) || !names.u16(length) || !names.sub(length, name)) {
        return HelloStatus::malformed;
      }
      if (name_type != 0) continue;  // host_name
      server_name.clear();
      for (const std::uint8_t byte : name.rest()) {
        if (byte < 0x21 || byte > 0x7e) return HelloStatus::malformed;
        const auto c = static_cast<char>(byte);
        server_name += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
      }
      return server_name.empty() ? HelloStatus::malformed : HelloStatus::server_name;
    }
  }
  return HelloStatus::no_sni;
}

/// A handshake message from its first byte: the ClientHello's status once it is whole.
HelloStatus parse_message(std::span<const std::uint8_t> bytes, std::string& server_name) {
  Reader message(bytes);
  std::size_t message_type = 0;
  std::size_t message_length = 0;
  if (message.u8(message_type) && message_type != client_hello) return HelloStatus::malformed;
  if (!message.u24(message_length)) return HelloStatus::incomplete;
  if (message_length > max_hello) return HelloStatus::malformed;
  Reader body({});
  if (!message.sub(message_length, body)) return HelloStatus::incomplete;
  return parse_hello_body(body, server_name);
}

}  // namespace

HelloStatus HelloReader::add(std::span<const std::uint8_t> bytes, std::string& server_name,
                             ByteBudget* budget) {
  while (!bytes.empty()) {
    if (record_left == 0) {  // a record header
      while (header_size < 5 && !bytes.empty()) {
        header[header_size++] = bytes.front();
        bytes = bytes.subspan(1);
        if (header_size == 1 && header[0] != record_handshake) {
          return seen_record ? HelloStatus::malformed : HelloStatus::not_tls;
        }
        if (header_size == 2 && header[1] != 3) return HelloStatus::not_tls;
      }
      if (header_size < 5) return HelloStatus::incomplete;
      const std::size_t length = (std::size_t{header[3]} << 8) | header[4];
      if (length == 0 || length > max_record) return HelloStatus::malformed;
      record_left = static_cast<std::uint16_t>(length);
      header_size = 0;
      seen_record = true;
    }
    const std::size_t take = std::min<std::size_t>(record_left, bytes.size());
    const auto fragment = bytes.first(take);
    bytes = bytes.subspan(take);
    record_left = static_cast<std::uint16_t>(record_left - take);
    if (handshake.empty()) {  // the whole ClientHello may be in this fragment: read in place
      const HelloStatus status = parse_message(fragment, server_name);
      if (status != HelloStatus::incomplete) return status;
    }
    const std::size_t room = 4 + max_hello - handshake.size;
    if (!handshake.append(fragment.first(std::min(room, fragment.size())), 4 + max_hello, budget)) {
      return HelloStatus::no_buffer;
    }
    const HelloStatus status = parse_message(handshake.view(), server_name);
    if (status != HelloStatus::incomplete) return status;
  }
  return HelloStatus::incomplete;
}

HelloStatus parse_client_hello(std::span<const std::uint8_t> stream, std::string& server_name) {
  HelloReader reader{};
  const HelloStatus status = reader.add(stream, server_name, nullptr);
  reader.clear(nullptr);
  return status;
}

}  // namespace pktbroker::plugins::tls
