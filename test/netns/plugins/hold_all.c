/* A test plugin that holds every UDP datagram to ports 9000-9099 until its deadline
 * (config `hold_ms`, default 2000): it drives a queue into the broker's hold bounds. */
#include <pktbroker/plugin.h>

#include <stdlib.h>

static uint32_t hold_ms = 2000;

static void* hold_all_init(const pktb_host* host, const char** error) {
  const char* configured = host->config(host, "hold_ms");
  if (configured != NULL) hold_ms = (uint32_t)strtoul(configured, NULL, 10);
  (void)error;
  return &hold_ms;
}

static void hold_all_on_packet(void* global, pktb_call* call, pktb_flow* flow,
                               const pktb_packet* packet, pktb_decision* decision) {
  (void)global, (void)call, (void)flow, (void)packet;
  decision->action = PKTB_HOLD;
  decision->hold_ms = hold_ms;
}

static const pktb_registration hold_all_registrations[] = {
    {.protocol = 17, .port_first = 9000, .port_last = 9099}};

static const pktb_plugin hold_all_plugin = {
    .abi_version = PKTB_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(pktb_plugin),
    .name = "hold_all",
    .version = "1",
    .registrations = hold_all_registrations,
    .registration_count = 1,
    .init = hold_all_init,
    .on_packet = hold_all_on_packet,
};

PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  return &hold_all_plugin;
}
