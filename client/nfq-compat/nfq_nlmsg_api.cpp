// libnetfilter_queue's nlmsg API: builders and the parser for the libmnl style. They work on
// netlink messages in the program's buffers, so they are the library's own behaviour; what goes
// to and comes from the socket is translated by the libmnl stand-in (mnl_standin.cpp).
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#include <arpa/inet.h>

#include <cstdint>

#define PKTBROKER_NFQ_EXPORT __attribute__((visibility("default")))

namespace {

// Keeps the attributes the packet message defines, checking the size of the fixed ones.
int keep_attribute(const nlattr* attr, void* data) {
  auto** table = static_cast<const nlattr**>(data);
  const int type = mnl_attr_get_type(attr);
  if (mnl_attr_type_valid(attr, NFQA_MAX) < 0) return MNL_CB_OK;  // newer than this library
  switch (type) {
    case NFQA_MARK:
    case NFQA_IFINDEX_INDEV:
    case NFQA_IFINDEX_OUTDEV:
    case NFQA_IFINDEX_PHYSINDEV:
    case NFQA_IFINDEX_PHYSOUTDEV:
    case NFQA_CAP_LEN:
    case NFQA_SKB_INFO:
    case NFQA_UID:
    case NFQA_GID:
      if (mnl_attr_validate(attr, MNL_TYPE_U32) < 0) return MNL_CB_ERROR;
      break;
    case NFQA_PACKET_HDR:
      if (mnl_attr_validate2(attr, MNL_TYPE_UNSPEC, sizeof(nfqnl_msg_packet_hdr)) < 0) {
        return MNL_CB_ERROR;
      }
      break;
    case NFQA_TIMESTAMP:
      if (mnl_attr_validate2(attr, MNL_TYPE_UNSPEC, sizeof(nfqnl_msg_packet_timestamp)) < 0) {
        return MNL_CB_ERROR;
      }
      break;
    default: break;
  }
  table[type] = attr;
  return MNL_CB_OK;
}

}  // namespace

extern "C" {

PKTBROKER_NFQ_EXPORT nlmsghdr* nfq_nlmsg_put(char* buf, int type, uint32_t queue_num) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = static_cast<std::uint16_t>((NFNL_SUBSYS_QUEUE << 8) | type);
  nlh->nlmsg_flags = NLM_F_REQUEST;
  auto* message = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  message->nfgen_family = AF_UNSPEC;
  message->version = NFNETLINK_V0;
  message->res_id = htons(static_cast<std::uint16_t>(queue_num));
  return nlh;
}

PKTBROKER_NFQ_EXPORT void nfq_nlmsg_cfg_put_cmd(nlmsghdr* nlh, uint16_t pf, uint8_t cmd) {
  const nfqnl_msg_config_cmd command{cmd, 0, htons(pf)};
  mnl_attr_put(nlh, NFQA_CFG_CMD, sizeof command, &command);
}

PKTBROKER_NFQ_EXPORT void nfq_nlmsg_cfg_put_params(nlmsghdr* nlh, uint8_t mode, int range) {
  const nfqnl_msg_config_params params{htonl(static_cast<std::uint32_t>(range)), mode};
  mnl_attr_put(nlh, NFQA_CFG_PARAMS, sizeof params, &params);
}

PKTBROKER_NFQ_EXPORT void nfq_nlmsg_cfg_put_qmaxlen(nlmsghdr* nlh, uint32_t qmaxlen) {
  mnl_attr_put_u32(nlh, NFQA_CFG_QUEUE_MAXLEN, htonl(qmaxlen));
}

PKTBROKER_NFQ_EXPORT void nfq_nlmsg_verdict_put(nlmsghdr* nlh, int id, int verdict) {
  const nfqnl_msg_verdict_hdr header{htonl(static_cast<std::uint32_t>(verdict)),
                                     htonl(static_cast<std::uint32_t>(id))};
  mnl_attr_put(nlh, NFQA_VERDICT_HDR, sizeof header, &header);
}

PKTBROKER_NFQ_EXPORT void nfq_nlmsg_verdict_put_mark(nlmsghdr* nlh, uint32_t mark) {
  mnl_attr_put_u32(nlh, NFQA_MARK, htonl(mark));
}

PKTBROKER_NFQ_EXPORT void nfq_nlmsg_verdict_put_pkt(nlmsghdr* nlh, const void* pkt,
                                                    uint32_t pktlen) {
  mnl_attr_put(nlh, NFQA_PAYLOAD, pktlen, pkt);
}

PKTBROKER_NFQ_EXPORT int nfq_nlmsg_parse(const nlmsghdr* nlh, nlattr** attr) {
  return mnl_attr_parse(nlh, sizeof(nfgenmsg), keep_attribute, attr);
}

}  // extern "C"
