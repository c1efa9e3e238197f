/* A minimal valid plugin each broken test plugin starts from (and breaks one thing of). */
#ifndef PKTBROKER_TEST_VALID_BASE_H
#define PKTBROKER_TEST_VALID_BASE_H

#include <pktbroker/plugin.h>
#include <stddef.h>

__attribute__((unused)) static void* base_init(const pktb_host* host, const char** error) {
  (void)error;
  return (void*)host;
}

__attribute__((unused)) static void base_on_packet(void* global, pktb_call* call, pktb_flow* flow,
                                                   const pktb_packet* packet,
                                                   pktb_decision* decision) {
  (void)global, (void)call, (void)flow, (void)packet, (void)decision;
}

__attribute__((unused)) static const pktb_registration base_registrations[] = {{17, 0, 9000, 9001}};
__attribute__((unused)) static const char* const base_fields[] = {"value", NULL};

#define VALID_DESCRIPTOR(plugin_name)                                            \
  {                                                                              \
    .abi_version = PKTB_PLUGIN_ABI_VERSION, .struct_size = sizeof(pktb_plugin),  \
    .name = plugin_name, .version = "test", .registrations = base_registrations, \
    .registration_count = 1, .fields = base_fields, .init = base_init,           \
    .on_packet = base_on_packet,                                                 \
  }

#endif
