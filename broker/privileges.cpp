#include "broker/privileges.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <system_error>

namespace pktbroker {
namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), "--user: " + what);
}

}  // namespace

void drop_privileges(const std::string& user) {
  errno = 0;
  const passwd* entry = getpwnam(user.c_str());
  if (entry == nullptr) {
    if (errno == 0) errno = ENOENT;
    fail("no user '" + user + "'");
  }
  const uid_t uid = entry->pw_uid;
  const gid_t gid = entry->pw_gid;
  if (prctl(PR_SET_KEEPCAPS, 1L, 0L, 0L, 0L) != 0) fail("keeping capabilities across setuid");
  if (initgroups(user.c_str(), gid) != 0) fail("setting the groups of '" + user + "'");
  if (setresgid(gid, gid, gid) != 0) fail("setting gid " + std::to_string(gid));
  if (setresuid(uid, uid, uid) != 0) fail("setting uid " + std::to_string(uid));
  const std::unique_ptr<_cap_struct, int (*)(void*)> caps(cap_from_text("cap_net_admin=ep"),
                                                          cap_free);
  if (!caps || cap_set_proc(caps.get()) != 0) fail("keeping CAP_NET_ADMIN");
  if (prctl(PR_SET_KEEPCAPS, 0L, 0L, 0L, 0L) != 0) fail("clearing keep-capabilities");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1L, 0L, 0L, 0L) != 0) fail("setting no_new_privs");
  if (uid != 0 && setuid(0) == 0) {
    errno = EPERM;
    fail("root could be regained");
  }
}

}  // namespace pktbroker
