/// @file codec.hpp
/// @brief Encoding and hostile-input-safe decoding of protocol datagrams.
#pragma once

#include "pktbroker/protocol.hpp"

#include <cstdint>
#include <span>
#include <system_error>
#include <vector>

namespace pktbroker::proto {

/// Why a datagram was rejected.
enum class ProtocolError {
  short_header = 1,  ///< fewer than header_size bytes
  bad_magic,         ///< the first two bytes are not "PB"
  bad_version,       ///< a header version this library does not speak
  unknown_type,      ///< a message type code this library does not know
  length_mismatch,   ///< the header's body length differs from the bytes received
  oversized,         ///< the datagram, a payload or a list exceeds its limit
  truncated_field,   ///< a field runs past the end of the body
  bad_value,         ///< an enumerated field holds an undefined value
  trailing_bytes,    ///< bytes left over after the last field
};

/// The error category of ProtocolError ("pktbroker.protocol").
const std::error_category& protocol_category() noexcept;
std::error_code make_error_code(ProtocolError error) noexcept;

/// A decoded datagram. Spans in `message` point into the decoded buffer.
struct Decoded {
  Header header;
  Message message;
};

/// Encodes `message` as one datagram into `out` (replacing its contents).
/// Fails with ProtocolError::oversized when a string, list or payload exceeds its limit, and
/// with ProtocolError::bad_value for a value the decoder would refuse (an empty plugin name).
std::error_code encode(const Message& message, std::uint32_t request_id,
                       std::vector<std::uint8_t>& out);

/// Adds `packet` to `datagram`, which holds a PACKET or a PACKET_BATCH encoded by this library
/// (or nothing: then it becomes a PACKET). A PACKET turns into a PACKET_BATCH of two.
/// Fails with ProtocolError::oversized when the packet does not fit (max_datagram bytes, 4096
/// packets); the packets already in `datagram` stay intact: send it and start a new one.
std::error_code append_to_batch(std::vector<std::uint8_t>& datagram, const Packet& packet);

/// Adds a frame to `datagram`, which holds a CHANNEL_FRAMES for `channel_id` encoded by this
/// library (or nothing: then it becomes one). Fails with ProtocolError::oversized when the
/// frame does not fit (max_datagram bytes, 4096 frames, or a frame over max_frame); the frames
/// already in `datagram` stay intact: send it and start a new one.
std::error_code append_frame(std::vector<std::uint8_t>& datagram, std::uint32_t channel_id,
                             std::uint32_t from_member, std::span<const std::uint8_t> frame);

/// Decodes one datagram. Never reads outside `datagram`; every failure is a ProtocolError.
std::error_code decode(std::span<const std::uint8_t> datagram, Decoded& out);

}  // namespace pktbroker::proto

template <>
struct std::is_error_code_enum<pktbroker::proto::ProtocolError> : std::true_type {};
