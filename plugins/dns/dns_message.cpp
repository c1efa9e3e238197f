#include "plugins/dns/dns_message.hpp"

#include <cstring>

namespace pktbroker::plugins::dns {
namespace {

constexpr std::size_t header_size = 12;
constexpr std::size_t max_name = 255;
constexpr std::uint16_t type_a = 1;
constexpr std::uint16_t type_aaaa = 28;
constexpr std::uint16_t class_in = 1;

std::uint16_t be16(std::span<const std::uint8_t> b, std::size_t at) {
  return static_cast<std::uint16_t>((b[at] << 8) | b[at + 1]);
}

std::uint32_t be32(std::span<const std::uint8_t> b, std::size_t at) {
  return (std::uint32_t{b[at]} << 24) | (std::uint32_t{b[at + 1]} << 16) |
         (std::uint32_t{b[at + 2]} << 8) | b[at + 3];
}

/// Reads the name at `offset`; sets `offset` past it (past the first pointer, if any).
/// Pointers must point strictly backwards, which rules out loops.
DnsError read_name(std::span<const std::uint8_t> bytes, std::size_t& offset, std::string& name) {
  name.clear();
  std::size_t at = offset;
  std::size_t limit = offset;  // a pointer must go below every position visited
  bool jumped = false;
  while (true) {
    if (at >= bytes.size()) return DnsError::truncated;
    const std::uint8_t length = bytes[at];
    if ((length & 0xc0) == 0xc0) {
      if (at + 1 >= bytes.size()) return DnsError::truncated;
      const std::size_t target = ((length & 0x3fU) << 8) | bytes[at + 1];
      if (target >= limit) return DnsError::pointer_loop;
      if (!jumped) offset = at + 2;
      jumped = true;
      limit = target;
      at = target;
      continue;
    }
    if ((length & 0xc0) != 0) return DnsError::bad_label;
    if (length == 0) {
      if (!jumped) offset = at + 1;
      if (name.empty()) name.push_back('.');  // the root
      return DnsError::none;
    }
    if (at + 1 + length > bytes.size()) return DnsError::truncated;
    if (name.size() + length + 1 > max_name) return DnsError::name_too_long;
    if (!name.empty()) name += '.';
    for (std::size_t i = 0; i < length; ++i) {
      const auto c = static_cast<char>(bytes[at + 1 + i]);
      name += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    }
    at += 1 + length;
  }
}

}  // namespace

std::string_view to_string(DnsError error) noexcept {
  switch (error) {
    case DnsError::none: return "none";
    case DnsError::truncated: return "truncated";
    case DnsError::bad_label: return "bad_label";
    case DnsError::pointer_loop: return "pointer_loop";
    case DnsError::name_too_long: return "name_too_long";
    case DnsError::no_question: return "no_question";
    case DnsError::count_: break;
  }
  return "unknown";
}

DnsError parse_message(std::span<const std::uint8_t> bytes, DnsMessage& message) {
  message = DnsMessage{};
  if (bytes.size() < header_size) return DnsError::truncated;
  message.id = be16(bytes, 0);
  message.response = (bytes[2] & 0x80) != 0;
  message.rcode = bytes[3] & 0x0f;
  const std::uint16_t questions = be16(bytes, 4);
  const std::uint16_t answers = be16(bytes, 6);
  if (questions == 0) return DnsError::no_question;

  std::size_t offset = header_size;
  std::string name;
  for (std::uint16_t q = 0; q < questions; ++q) {
    if (const DnsError error = read_name(bytes, offset, name); error != DnsError::none) {
      return error;
    }
    if (offset + 4 > bytes.size()) return DnsError::truncated;
    if (q == 0) {
      message.qname = name;
      message.qtype = be16(bytes, offset);
    }
    offset += 4;
  }
  if (!message.response) return DnsError::none;
  for (std::uint16_t a = 0; a < answers; ++a) {
    if (const DnsError error = read_name(bytes, offset, name); error != DnsError::none) {
      return error;
    }
    if (offset + 10 > bytes.size()) return DnsError::truncated;
    const std::uint16_t type = be16(bytes, offset);
    const std::uint16_t klass = be16(bytes, offset + 2);
    const std::uint32_t ttl = be32(bytes, offset + 4);
    const std::uint16_t length = be16(bytes, offset + 8);
    offset += 10;
    if (offset + length > bytes.size()) return DnsError::truncated;
    if (klass == class_in &&
        ((type == type_a && length == 4) || (type == type_aaaa && length == 16))) {
      AddressAnswer answer{name, type == type_a ? std::uint8_t{4} : std::uint8_t{6}, {}, ttl};
      std::memcpy(answer.address.data(), bytes.data() + offset, length);
      message.answers.push_back(std::move(answer));
    }
    offset += length;
  }
  return DnsError::none;
}

std::string qtype_name(std::uint16_t qtype) {
  switch (qtype) {
    case 1: return "A";
    case 2: return "NS";
    case 5: return "CNAME";
    case 6: return "SOA";
    case 12: return "PTR";
    case 15: return "MX";
    case 16: return "TXT";
    case 28: return "AAAA";
    case 33: return "SRV";
    case 65: return "HTTPS";
    case 255: return "ANY";
    default: return std::to_string(qtype);
  }
}

}  // namespace pktbroker::plugins::dns
