/* Exports no pktb_plugin_entry: not a pktbroker plugin. */
#include "valid_base.h"

PKTB_PLUGIN_EXPORT const pktb_plugin* some_other_symbol(void) {
  return NULL;
}
