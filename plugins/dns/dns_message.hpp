// DNS messages (RFC 1035): the question and the address answers, parsed without trusting a
// single length, pointer or count.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pktbroker::plugins::dns {

/// Why a message was rejected; each is a counter of the plugin.
enum class DnsError : std::uint8_t {
  none,
  truncated,      ///< a header, name or record runs past the end
  bad_label,      ///< a label type other than plain or pointer (0x40, 0x80)
  pointer_loop,   ///< a compression pointer that does not point backwards
  name_too_long,  ///< more than 255 bytes
  no_question,    ///< QDCOUNT is 0
  count_
};
std::string_view to_string(DnsError error) noexcept;

struct AddressAnswer {
  std::string name;  ///< owner name of the record
  std::uint8_t family = 4;
  std::array<std::uint8_t, 16> address{};
  std::uint32_t ttl = 0;
};

struct DnsMessage {
  std::uint16_t id = 0;
  bool response = false;
  std::uint8_t rcode = 0;
  std::string qname;  ///< lowercase, without the final dot; "." for the root
  std::uint16_t qtype = 0;
  std::vector<AddressAnswer> answers;  ///< A and AAAA records of the answer section
};

/// Parses a whole message (UDP payload, or a TCP message without its length prefix).
DnsError parse_message(std::span<const std::uint8_t> bytes, DnsMessage& message);

/// Name of a query type ("A", "AAAA", "MX", ...), or its number as text.
std::string qtype_name(std::uint16_t qtype);

}  // namespace pktbroker::plugins::dns
