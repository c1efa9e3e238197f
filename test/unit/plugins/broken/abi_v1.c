/* Built for ABI 1: its descriptor ends before on_command, and the host must not read past it. */
#include "valid_base.h"

static pktb_plugin descriptor = VALID_DESCRIPTOR("abi_v1");

PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  descriptor.abi_version = 1;
  descriptor.struct_size = offsetof(pktb_plugin, on_command);
  return &descriptor;
}
