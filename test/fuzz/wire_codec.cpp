// The wire decoder on any datagram; what decodes must re-encode to a fixed point, and a
// decoded batch must equal the same packets appended one by one.
#include "pktbroker/codec.hpp"

#include <cstdlib>
#include <variant>

using namespace pktbroker::proto;

namespace {

void require(bool condition) {
  if (!condition) std::abort();
}

// A PACKET or PACKET_BATCH rebuilt with append_to_batch must equal its encoding.
void check_batch(const std::vector<Packet>& packets, const std::vector<std::uint8_t>& encoded) {
  std::vector<std::uint8_t> batch;
  for (const Packet& packet : packets) require(!append_to_batch(batch, packet));
  if (packets.size() == 1) {
    std::vector<std::uint8_t> single;
    require(!encode(packets.front(), 0, single));
    require(batch == single);
  } else if (packets.size() > 1) {
    require(batch == encoded);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Decoded first;
  if (decode({data, size}, first)) return 0;
  require(first.header.type == type_of(first.message));

  std::vector<std::uint8_t> encoded;
  require(!encode(first.message, first.header.request_id, encoded));
  Decoded second;
  require(!decode(encoded, second));
  require(second.message.index() == first.message.index());
  require(second.header.request_id == first.header.request_id);
  std::vector<std::uint8_t> again;
  require(!encode(second.message, second.header.request_id, again));
  require(again == encoded);

  // Only the reserved header word and unset optionals' values may differ from the input.
  require(encoded.size() == size);

  if (const auto* packet = std::get_if<Packet>(&first.message)) {
    check_batch({*packet}, encoded);
  } else if (const auto* batch = std::get_if<PacketBatch>(&first.message)) {
    if (first.header.request_id == 0) check_batch(batch->packets, encoded);
  }
  return 0;
}
