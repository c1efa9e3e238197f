/* A plugin that loads: claims UDP 9000-9001, publishes `value` (the payload), counts packets,
 * reads its `mode` config, and decides by the payload's first byte; 't' holds the packet and
 * sets a timer that releases it with accept. */
#include "valid_base.h"

#include <stdlib.h>
#include <string.h>

struct global {
  const pktb_host* host;
  uint32_t packets;
  int drop_on_d;
};

static void* init(const pktb_host* host, const char** error) {
  struct global* g = calloc(1, sizeof *g);
  if (!g) {
    *error = "out of memory";
    return NULL;
  }
  g->host = host;
  g->packets = host->counter(host, "packets");
  const char* mode = host->config(host, "mode");
  g->drop_on_d = mode && strcmp(mode, "strict") == 0;
  return g;
}

static void shutdown(void* global) {
  free(global);
}

struct flow_state {
  uint64_t held_packet;
};

static void on_timer(void* global, pktb_call* call, pktb_flow* flow) {
  struct global* g = global;
  struct flow_state* state = flow->state;
  pktb_decision accept = {.action = PKTB_ACCEPT};
  g->host->release(call, state->held_packet, &accept);
}

static void on_packet(void* global, pktb_call* call, pktb_flow* flow, const pktb_packet* packet,
                      pktb_decision* decision) {
  struct global* g = global;
  g->host->count(g->host, g->packets, 1);
  if (packet->l4_len == 0) return;
  g->host->set_field(call, "value", (const char*)packet->l4_data, packet->l4_len);
  switch (packet->l4_data[0]) {
    case 'a': decision->action = PKTB_ACCEPT; break;
    case 'd': decision->action = g->drop_on_d ? PKTB_DROP : PKTB_PASS; break;
    case 'h': decision->action = PKTB_HOLD; break;
    case 'm':
      decision->action = PKTB_ACCEPT;
      decision->flags = PKTB_DECISION_SET_MARK;
      decision->set_mark = 7;
      break;
    case 'g': decision->action = 42; break; /* garbage */
    case 'M': /* the packet itself as its replacement: a whole IP packet */
      decision->action = PKTB_ACCEPT_MODIFIED;
      decision->payload = packet->data;
      decision->payload_len = packet->len;
      break;
    case 'x': /* "modified" to its payload alone: not an IP packet */
      decision->action = PKTB_ACCEPT_MODIFIED;
      decision->payload = packet->l4_data;
      decision->payload_len = packet->l4_len;
      break;
    case 't':
      ((struct flow_state*)flow->state)->held_packet = packet->id;
      g->host->set_timer(call, 20);
      decision->action = PKTB_HOLD;
      break;
    default: break;
  }
}

static const pktb_plugin descriptor = {
    .abi_version = PKTB_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(pktb_plugin),
    .name = "valid",
    .version = "test",
    .registrations = base_registrations,
    .registration_count = 1,
    .fields = base_fields,
    .init = init,
    .shutdown = shutdown,
    .flow_state_size = sizeof(struct flow_state),
    .on_packet = on_packet,
    .on_timer = on_timer,
};

PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  return &descriptor;
}
