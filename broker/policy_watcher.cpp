#include "broker/policy_watcher.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <system_error>
#include <vector>

#include <sys/inotify.h>
#include <sys/stat.h>

namespace pktbroker {
namespace {

// A file counts once it is written and closed, or moved in: not while it is being written.
constexpr std::uint32_t file_events =
    IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE;
constexpr std::uint32_t written = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE;

int inotify_or_throw() {
  const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "inotify_init1");
  return fd;
}

}  // namespace

PolicyWatcher::PolicyWatcher(boost::asio::io_context& io, std::filesystem::path config,
                             std::function<void()> reload)
    : config_(std::move(config)),
      drop_ins_(config_.parent_path() / "policy.d"),
      reload_(std::move(reload)),
      strand_(boost::asio::make_strand(io)),
      inotify_(strand_, inotify_or_throw()),
      settle_timer_(strand_) {
  const std::filesystem::path dir = config_.parent_path().empty() ? "." : config_.parent_path();
  config_dir_watch_ = ::inotify_add_watch(inotify_.native_handle(), dir.c_str(), file_events);
  if (config_dir_watch_ < 0) {
    throw std::system_error(errno, std::generic_category(), "watching " + dir.string());
  }
  watch_drop_ins();
  spdlog::info("watching {} and {}/ for changes (reload on save)", config_.string(),
               drop_ins_.string());
  read();
}

std::string PolicyWatcher::fingerprint(const std::filesystem::path& config) {
  std::string print;
  const auto add = [&print](const std::filesystem::path& file) {
    struct stat status {};
    if (::stat(file.c_str(), &status) != 0) return;
    print += file.native() + ':' + std::to_string(status.st_size) + ':' +
             std::to_string(status.st_mtim.tv_sec) + '.' + std::to_string(status.st_mtim.tv_nsec) +
             ':' + std::to_string(status.st_ino) + '\n';
  };
  add(config);
  std::error_code error;
  std::vector<std::filesystem::path> drop_ins;
  for (const auto& entry :
       std::filesystem::directory_iterator(config.parent_path() / "policy.d", error)) {
    if (entry.path().extension() == ".yaml") drop_ins.push_back(entry.path());
  }
  std::sort(drop_ins.begin(), drop_ins.end());
  for (const auto& file : drop_ins) add(file);
  return print;
}

void PolicyWatcher::watch_drop_ins() {
  if (drop_ins_watch_ >= 0) return;
  drop_ins_watch_ =
      ::inotify_add_watch(inotify_.native_handle(), drop_ins_.c_str(), file_events | IN_ONLYDIR);
}

void PolicyWatcher::stop() {
  boost::asio::post(strand_, [this] {
    boost::system::error_code ignored;
    settle_timer_.cancel();
    inotify_.close(ignored);
  });
}

void PolicyWatcher::read() {
  inotify_.async_read_some(boost::asio::buffer(buffer_),
                           [this](const boost::system::error_code& error, std::size_t length) {
                             if (error) return;  // closed at shutdown
                             on_events(length);
                             read();
                           });
}

void PolicyWatcher::on_events(std::size_t length) {
  bool relevant = false;
  for (std::size_t offset = 0; offset + sizeof(inotify_event) <= length;) {
    inotify_event event{};
    std::memcpy(&event, buffer_.data() + offset, sizeof event);
    if (offset + sizeof event + event.len > length) break;  // never split by the kernel
    const std::string_view name =
        event.len != 0 ? std::string_view(buffer_.data() + offset + sizeof event) : "";
    offset += sizeof event + event.len;
    if ((event.mask & IN_Q_OVERFLOW) != 0) relevant = true;  // events were lost: look again
    if (event.wd == config_dir_watch_) {
      if (name == config_.filename().native() && (event.mask & written) != 0) relevant = true;
      if (name == "policy.d") {  // created, replaced or removed: watch what is there now
        drop_ins_watch_ = -1;
        watch_drop_ins();
        relevant = true;
      }
    } else if (event.wd == drop_ins_watch_) {
      if ((event.mask & IN_IGNORED) != 0) drop_ins_watch_ = -1;  // the directory went away
      if (name.ends_with(".yaml") && (event.mask & written) != 0) relevant = true;
    }
  }
  if (!relevant) return;
  settle_timer_.expires_after(settle);
  settle_timer_.async_wait([this](const boost::system::error_code& error) {
    if (error) return;  // another change came in: that one's timer reloads
    spdlog::info("policy files changed: reloading");
    reload_();
  });
}

}  // namespace pktbroker
