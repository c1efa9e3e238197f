/* What the test programs do with each packet, chosen on their command line. Shared by the
 * classic-style and the libmnl-style program so both decide alike. */
#ifndef PACKET_ACTION_H
#define PACKET_ACTION_H

#include <stdint.h>

enum action_kind {
  ACTION_ACCEPT,   /* accept */
  ACTION_DROP,     /* drop */
  ACTION_MARK,     /* mark:VALUE  accept with a new mark */
  ACTION_REWRITE,  /* rewrite     accept with the UDP data in upper case */
  ACTION_BATCH,    /* batch:N     accept every N packets with one batch verdict */
  ACTION_IGNORE,   /* ignore      never answer */
  ACTION_VERDICT,  /* verdict:V   answer with the raw verdict V */
  ACTION_CONNMARK, /* connmark:V  accept and set the connection's mark (libmnl style only) */
};

struct packet_action {
  enum action_kind kind;
  uint32_t value;
  uint32_t flags; /* flags:uidgid,conntrack,secctx as a second word of the action */
};

/* Parses ACTION; returns 0, or -1 after printing why. */
int parse_action(const char* text, struct packet_action* action);
/* Parses a comma-separated NFQA_CFG_F_* list; returns 0 or -1. */
int parse_flags(const char* text, uint32_t* flags);
/* The copy mode from NFQ_TOOL_COPY: "meta", "packet:RANGE", or (unset) the whole packet. */
void copy_setting(uint8_t* mode, uint32_t* range);
/* Upper-cases the UDP data of an IPv4 packet and clears its UDP checksum; 0 if not UDP. */
int rewrite_udp(unsigned char* packet, int length);
/* One line per packet on stdout: id, hook, protocol, mark, devices, uid, length, port. */
void print_packet(uint32_t id, unsigned hook, unsigned hw_protocol, uint32_t mark, uint32_t indev,
                  uint32_t outdev, int has_uid, uint32_t uid, const unsigned char* payload,
                  int length);

#endif
