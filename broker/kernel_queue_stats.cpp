#include "broker/kernel_queue_stats.hpp"

#include <fstream>
#include <string>

namespace pktbroker {

std::optional<KernelQueueStats> read_kernel_queue_stats(std::uint16_t queue) {
  std::ifstream file("/proc/net/netfilter/nfnetlink_queue");
  // Columns: queue_num portid queue_total copy_mode copy_range queue_dropped user_dropped
  //          id_sequence 1
  unsigned num = 0;
  unsigned long portid = 0;
  unsigned long copy_mode = 0;
  unsigned long copy_range = 0;
  std::string rest;
  KernelQueueStats stats;
  while (file >> num >> portid >> stats.queue_total >> copy_mode >> copy_range >>
         stats.queue_dropped >> stats.user_dropped >> stats.id_sequence) {
    std::getline(file, rest);
    if (num == queue) return stats;
  }
  return std::nullopt;
}

}  // namespace pktbroker
