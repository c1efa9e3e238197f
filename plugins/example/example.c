/* The example plugin of plugins/README.md: for UDP datagrams to the echo port (7) it
 * publishes the first word of the payload as `example.word`, counts datagrams, and, when a
 * rule says `inspect: [example]`, drops those whose first word is the configured `forbidden`
 * word. Built out of tree against the installed SDK by the install test. */
#include <pktbroker/plugin.h>

#include <stdlib.h>
#include <string.h>

struct example {
  const pktb_host* host;
  uint32_t datagrams; /* counter handle */
  char forbidden[33];
};

static void* example_init(const pktb_host* host, const char** error) {
  struct example* self = calloc(1, sizeof *self);
  if (self == NULL) {
    *error = "out of memory";
    return NULL;
  }
  self->host = host;
  self->datagrams = host->counter(host, "datagrams");
  const char* forbidden = host->config(host, "forbidden");
  if (forbidden != NULL && strlen(forbidden) >= sizeof self->forbidden) {
    free(self);
    *error = "config forbidden: at most 32 characters";
    return NULL;
  }
  if (forbidden != NULL) strcpy(self->forbidden, forbidden);
  return self;
}

static void example_shutdown(void* global) {
  free(global);
}

static void example_on_packet(void* global, pktb_call* call, pktb_flow* flow,
                              const pktb_packet* packet, pktb_decision* decision) {
  struct example* self = global;
  (void)flow;
  if (packet->direction != PKTB_FROM_CLIENT) return;
  self->host->count(self->host, self->datagrams, 1);
  size_t length = 0;
  while (length < packet->l4_len && length < 32 && packet->l4_data[length] > ' ') ++length;
  if (length == 0) return; /* no word: no opinion */
  const char* word = (const char*)packet->l4_data;
  self->host->set_field(call, "word", word, length);
  if (self->forbidden[0] != '\0' && strlen(self->forbidden) == length &&
      memcmp(self->forbidden, word, length) == 0) {
    decision->action = PKTB_DROP;
  }
}

static const pktb_registration example_registrations[] = {
    {.protocol = 17, .port_first = 7, .port_last = 7}};
static const char* const example_fields[] = {"word", NULL};

static const pktb_plugin example_plugin = {
    .abi_version = PKTB_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(pktb_plugin),
    .name = "example",
    .version = "1.0",
    .registrations = example_registrations,
    .registration_count = 1,
    .fields = example_fields,
    .init = example_init,
    .shutdown = example_shutdown,
    .on_packet = example_on_packet,
};

PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  return &example_plugin;
}
