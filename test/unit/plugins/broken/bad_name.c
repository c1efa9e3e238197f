/* A name that cannot prefix policy fields. */
#include "valid_base.h"

static pktb_plugin descriptor = VALID_DESCRIPTOR("Bad Name!");

PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  return &descriptor;
}
