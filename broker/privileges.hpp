// Giving up root once the queues and the client socket are bound (pktbrokerd --user).
#pragma once

#include <string>

namespace pktbroker {

/// Becomes `user` (its uid, its primary group and its groups from the group database) and keeps
/// one capability: CAP_NET_ADMIN, which every message on a queue's netlink socket needs
/// (verdicts, unbinding). Call before any other thread starts: capabilities are per thread and
/// threads started later inherit them. Throws std::system_error naming the step that failed.
void drop_privileges(const std::string& user);

}  // namespace pktbroker
