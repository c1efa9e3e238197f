#include "plugins/tls/client_hello.hpp"

#include <vector>

namespace pktbroker::plugins::tls {
namespace {

constexpr std::uint8_t record_handshake = 22;
constexpr std::uint8_t client_hello = 1;
constexpr std::size_t max_hello = 16384;

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

}  // namespace

HelloStatus parse_client_hello(std::span<const std::uint8_t> stream, std::string& server_name) {
  // Gather the handshake bytes carried by the leading handshake records.
  std::vector<std::uint8_t> handshake;
  Reader records(stream);
  while (true) {
    std::size_t type = 0;
    std::size_t length = 0;
    if (!records.u8(type)) return HelloStatus::incomplete;
    if (type != record_handshake)
      return handshake.empty() ? HelloStatus::not_tls : HelloStatus::malformed;
    std::size_t major = 0;
    if (!records.u8(major)) return HelloStatus::incomplete;
    if (major != 3) return HelloStatus::not_tls;
    if (!records.skip(1) || !records.u16(length)) return HelloStatus::incomplete;
    if (length == 0 || length > max_hello + 2048) return HelloStatus::malformed;
    const auto fragment = records.rest().first(std::min(length, records.rest().size()));
    handshake.insert(handshake.end(), fragment.begin(), fragment.end());
    const bool whole_record = records.skip(length);

    Reader message(handshake);
    std::size_t message_type = 0;
    std::size_t message_length = 0;
    if (message.u8(message_type) && message_type != client_hello) return HelloStatus::malformed;
    if (message.u24(message_length)) {
      if (message_length > max_hello) return HelloStatus::malformed;
      Reader body({});
      if (message.sub(message_length, body)) return parse_hello_body(body, server_name);
    }
    if (!whole_record) return HelloStatus::incomplete;
  }
}

}  // namespace pktbroker::plugins::tls
