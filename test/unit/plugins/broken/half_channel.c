/* A channel delivery policy with channel_open but no channel_frame: refused at load. */
#include "valid_base.h"

static void* half_open(void* global, const char* channel, uint8_t link, const char** error) {
  (void)channel, (void)link, (void)error;
  return global;
}

static pktb_plugin descriptor = VALID_DESCRIPTOR("half_channel");

PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  descriptor.channel_open = half_open;
  return &descriptor;
}
