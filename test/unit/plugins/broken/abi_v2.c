/* Built for ABI 2: its descriptor ends before the channel hooks, and the host must not read
 * past it. */
#include "valid_base.h"

static pktb_plugin descriptor = VALID_DESCRIPTOR("abi_v2");

PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  descriptor.abi_version = 2;
  descriptor.struct_size = offsetof(pktb_plugin, channel_open);
  return &descriptor;
}
