/* A plugin that loads: claims UDP 9000-9001, publishes `value` (the payload), counts packets,
 * reads its `verdict` config, and decides by the payload's first byte. */
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

static void on_packet(void* global, pktb_call* call, pktb_flow* flow, const pktb_packet* packet,
                      pktb_decision* decision) {
  struct global* g = global;
  (void)flow;
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
    .flow_state_size = 16,
    .on_packet = on_packet,
};

PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  return &descriptor;
}
