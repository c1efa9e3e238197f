/* init refuses to start. */
#include "valid_base.h"

static void* failing_init(const pktb_host* host, const char** error) {
  (void)host;
  *error = "missing license file";
  return NULL;
}

static pktb_plugin descriptor = VALID_DESCRIPTOR("init_fails");

PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  descriptor.init = failing_init;
  return &descriptor;
}
