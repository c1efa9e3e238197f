// A C++ plugin that lets exceptions escape its hooks: the host must contain them.
#include <pktbroker/plugin.h>

#include <stdexcept>

namespace {

void on_packet(void*, pktb_call*, pktb_flow*, const pktb_packet*, pktb_decision*) {
  throw std::runtime_error("bug in the plugin");
}

const pktb_registration registrations[] = {{17, 0, 9100, 9100}};

const pktb_plugin descriptor = {
    .abi_version = PKTB_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(pktb_plugin),
    .name = "throws",
    .version = "test",
    .registrations = registrations,
    .registration_count = 1,
    .on_packet = on_packet,
};

}  // namespace

extern "C" PKTB_PLUGIN_EXPORT const pktb_plugin* pktb_plugin_entry(void) {
  return &descriptor;
}
