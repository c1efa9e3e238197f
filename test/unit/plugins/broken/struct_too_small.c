/* Claims a descriptor smaller than this ABI's. */
#include "valid_base.h"

static pktb_plugin descriptor = VALID_DESCRIPTOR("struct_too_small");

PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  descriptor.struct_size = 16;
  return &descriptor;
}
