/* Built for a future ABI version. */
#include "valid_base.h"

static pktb_plugin descriptor = VALID_DESCRIPTOR("abi_mismatch");

PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  descriptor.abi_version = PKTB_PLUGIN_ABI_VERSION + 1;
  return &descriptor;
}
