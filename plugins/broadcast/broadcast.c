/* The `broadcast` channel delivery policy: every frame goes to every member that may receive,
 * except its sender. */
#include <pktbroker/plugin.h>

/* A channel needs no state of its own; channel_open returns a non-NULL token. */
static int channel_token;

static void* broadcast_init(const pktb_host* host, const char** error) {
  (void)host;
  (void)error;
  return &channel_token;
}

static void* broadcast_open(void* global, const char* channel, uint8_t link, const char** error) {
  (void)global;
  (void)channel;
  (void)link;
  (void)error;
  return &channel_token;
}

static size_t broadcast_frame(void* global, void* channel, const pktb_channel_frame* frame,
                              uint32_t* out, size_t capacity) {
  (void)global;
  (void)channel;
  size_t count = 0;
  for (size_t i = 0; i < frame->member_count && count < capacity; ++i) {
    if (frame->members[i] != frame->from) out[count++] = frame->members[i];
  }
  return count;
}

static const pktb_plugin descriptor = {
    .abi_version = PKTB_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(pktb_plugin),
    .name = "broadcast",
    .version = "1.0",
    .init = broadcast_init,
    .channel_open = broadcast_open,
    .channel_frame = broadcast_frame,
};

PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  return &descriptor;
}
