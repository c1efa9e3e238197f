#include "netlink_test_util.hpp"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>

#include <array>
#include <cstring>

namespace pktbroker::test {
namespace {

int collect_attribute(const nlattr* attribute, void* data) {
  auto& table = *static_cast<std::array<const nlattr*, NFQA_MAX + 1>*>(data);
  const int type = mnl_attr_get_type(attribute);
  if (type <= NFQA_MAX) table[type] = attribute;
  return MNL_CB_OK;
}

}  // namespace

std::vector<DecodedVerdict> decode_verdicts(std::span<const std::uint8_t> buffer) {
  std::vector<DecodedVerdict> verdicts;
  auto remaining = static_cast<int>(buffer.size());
  for (const auto* message = reinterpret_cast<const nlmsghdr*>(buffer.data());
       mnl_nlmsg_ok(message, remaining); message = mnl_nlmsg_next(message, &remaining)) {
    DecodedVerdict verdict;
    verdict.batch = NFNL_MSG_TYPE(message->nlmsg_type) == NFQNL_MSG_VERDICT_BATCH;
    const auto* generic = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(message));
    verdict.queue = ntohs(generic->res_id);
    std::array<const nlattr*, NFQA_MAX + 1> table{};
    mnl_attr_parse(message, sizeof(nfgenmsg), collect_attribute, &table);
    if (table[NFQA_VERDICT_HDR] != nullptr) {
      nfqnl_msg_verdict_hdr header{};
      std::memcpy(&header, mnl_attr_get_payload(table[NFQA_VERDICT_HDR]), sizeof header);
      verdict.id = ntohl(header.id);
      verdict.verdict = ntohl(header.verdict);
    }
    if (table[NFQA_MARK] != nullptr) verdict.mark = ntohl(mnl_attr_get_u32(table[NFQA_MARK]));
    verdicts.push_back(verdict);
  }
  return verdicts;
}

std::vector<std::uint8_t> encode_packet_message(const PacketMessage& m) {
  std::vector<std::uint8_t> buffer(MNL_SOCKET_BUFFER_SIZE + m.payload.size());
  nlmsghdr* header = mnl_nlmsg_put_header(buffer.data());
  header->nlmsg_type = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET;
  auto* generic = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(header, sizeof(nfgenmsg)));
  generic->nfgen_family = AF_UNSPEC;
  generic->version = NFNETLINK_V0;
  generic->res_id = htons(m.queue);
  if (m.id) {
    nfqnl_msg_packet_hdr packet{};
    packet.packet_id = htonl(*m.id);
    packet.hw_protocol = htons(m.hw_protocol);
    packet.hook = m.hook;
    mnl_attr_put(header, NFQA_PACKET_HDR, sizeof packet, &packet);
  }
  const auto put = [&](int type, const std::optional<std::uint32_t>& value) {
    if (value) mnl_attr_put_u32(header, static_cast<std::uint16_t>(type), htonl(*value));
  };
  put(NFQA_MARK, m.mark);
  put(NFQA_IFINDEX_INDEV, m.in_ifindex);
  put(NFQA_IFINDEX_OUTDEV, m.out_ifindex);
  put(NFQA_UID, m.uid);
  put(NFQA_GID, m.gid);
  put(NFQA_CT_INFO, m.ct_info);
  put(NFQA_CAP_LEN, m.cap_len);
  mnl_attr_put(header, NFQA_PAYLOAD, m.payload.size(), m.payload.data());
  buffer.resize(header->nlmsg_len);
  return buffer;
}

}  // namespace pktbroker::test
