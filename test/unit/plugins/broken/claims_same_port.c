/* Claims UDP 9001, which `valid` claims too. */
#include "valid_base.h"

static const pktb_registration overlapping[] = {{17, 0, 9001, 9001}};
static pktb_plugin descriptor = VALID_DESCRIPTOR("claims_same_port");

PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  descriptor.registrations = overlapping;
  return &descriptor;
}
