#include "packet_action.h"

#include <ctype.h>
#include <libnetfilter_queue/linux_nfnetlink_queue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int parse_action(const char* text, struct packet_action* action) {
  static const struct {
    const char* name;
    enum action_kind kind;
    int has_value;
  } names[] = {
      {"accept", ACTION_ACCEPT, 0},    {"drop", ACTION_DROP, 0},
      {"mark:", ACTION_MARK, 1},       {"rewrite", ACTION_REWRITE, 0},
      {"batch:", ACTION_BATCH, 1},     {"ignore", ACTION_IGNORE, 0},
      {"verdict:", ACTION_VERDICT, 1}, {"connmark:", ACTION_CONNMARK, 1},
  };
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    size_t n = strlen(names[i].name);
    if (names[i].has_value ? strncmp(text, names[i].name, n) != 0
                           : strcmp(text, names[i].name) != 0)
      continue;
    action->kind = names[i].kind;
    action->value = names[i].has_value ? (uint32_t)strtoul(text + n, NULL, 0) : 0;
    if (action->kind == ACTION_BATCH && action->value == 0) break;
    return 0;
  }
  fprintf(stderr, "unknown action '%s'\n", text);
  return -1;
}

int parse_flags(const char* text, uint32_t* flags) {
  char copy[128];
  snprintf(copy, sizeof(copy), "%s", text);
  *flags = 0;
  for (char* word = strtok(copy, ","); word; word = strtok(NULL, ",")) {
    if (strcmp(word, "uidgid") == 0)
      *flags |= NFQA_CFG_F_UID_GID;
    else if (strcmp(word, "gso") == 0)
      *flags |= NFQA_CFG_F_GSO;
    else if (strcmp(word, "conntrack") == 0)
      *flags |= NFQA_CFG_F_CONNTRACK;
    else if (strcmp(word, "secctx") == 0)
      *flags |= NFQA_CFG_F_SECCTX;
    else {
      fprintf(stderr, "unknown flag '%s'\n", word);
      return -1;
    }
  }
  return 0;
}

void copy_setting(uint8_t* mode, uint32_t* range) {
  const char* text = getenv("NFQ_TOOL_COPY");
  *mode = NFQNL_COPY_PACKET;
  *range = 0xffff;
  if (text && strcmp(text, "meta") == 0) {
    *mode = NFQNL_COPY_META;
    *range = 0;
  } else if (text && strncmp(text, "packet:", 7) == 0) {
    *range = (uint32_t)strtoul(text + 7, NULL, 0);
  }
}

int rewrite_udp(unsigned char* packet, int length) {
  if (length < 28 || (packet[0] >> 4) != 4 || packet[9] != 17) return 0;
  int header = (packet[0] & 0x0f) * 4;
  if (length < header + 8) return 0;
  for (int i = header + 8; i < length; i++) packet[i] = (unsigned char)toupper(packet[i]);
  packet[header + 6] = packet[header + 7] = 0; /* no UDP checksum: valid for IPv4 */
  return 1;
}

void print_packet(uint32_t id, unsigned hook, unsigned hw_protocol, uint32_t mark, uint32_t indev,
                  uint32_t outdev, int has_uid, uint32_t uid, const unsigned char* payload,
                  int length) {
  static int quiet = -1;
  if (quiet < 0) quiet = getenv("NFQ_TOOL_QUIET") != NULL; /* the benchmark: no line per packet */
  if (quiet) return;
  int dport = -1;
  if (length >= 24 && (payload[0] >> 4) == 4) {
    int header = (payload[0] & 0x0f) * 4;
    if (length >= header + 4) dport = payload[header + 2] << 8 | payload[header + 3];
  }
  printf("packet id=%u hook=%u proto=0x%04x mark=%u indev=%u outdev=%u uid=%d len=%d dport=%d\n",
         id, hook, hw_protocol, mark, indev, outdev, has_uid ? (int)uid : -1, length, dport);
  fflush(stdout);
}
