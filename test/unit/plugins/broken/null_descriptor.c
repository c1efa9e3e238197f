/* The entry point returns no descriptor. */
#include "valid_base.h"

PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  return NULL;
}
