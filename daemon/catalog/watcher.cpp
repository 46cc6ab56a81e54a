#include "catalog/watcher.hpp"

#include <sys/inotify.h>
#include <unistd.h>

// GCC 12 sees a "potential null pointer dereference" in Asio 1.74's scheduler once it is
// inlined here (compensating_work_started, which only runs on a scheduler thread). The warning
// stays on for our own code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#pragma GCC diagnostic pop

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <system_error>

#include "model/model.hpp"

namespace channeld::catalog {

namespace fs = std::filesystem;

namespace {

constexpr std::uint32_t kEvents = IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM |
                                  IN_DELETE | IN_DELETE_SELF | IN_ATTRIB;

}  // namespace

// Shared with the pending handlers, so a completion that arrives after the FolderWatcher is
// gone finds live state (and `stopped`) instead of a dangling pointer.
struct FolderWatcher::State : std::enable_shared_from_this<State> {
  State(boost::asio::io_context& io, std::chrono::milliseconds wait, std::function<void()> notify)
      : inotify(io), timer(io), debounce(wait), on_change(std::move(notify)) {}

  boost::asio::posix::stream_descriptor inotify;
  boost::asio::steady_timer timer;
  std::chrono::milliseconds debounce;
  std::function<void()> on_change;
  std::vector<std::string> roots;
  std::set<int> root_watches;
  std::map<int, std::string> watched;  // watch descriptor -> folder
  // Big enough for hundreds of events per read; the kernel only ever returns whole events.
  std::array<char, 64 * 1024> buffer{};
  bool stopped = false;

  // Returns the watch descriptor, or -1 with errno set.
  int watch(const std::string& folder, bool root) {
    std::uint32_t mask = kEvents | IN_ONLYDIR | (root ? IN_MOVE_SELF : 0);
    int wd = inotify_add_watch(inotify.native_handle(), folder.c_str(), mask);
    if (wd >= 0) {
      watched[wd] = folder;
      if (root) root_watches.insert(wd);
    }
    return wd;
  }

  // Adds watches for the root's subfolders. A subfolder that vanishes between the listing and
  // inotify_add_watch is simply not watched: its deletion is an event of the root already.
  void watch_subfolders(const std::string& root) {
    std::error_code ec;
    for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
      std::error_code type_ec;
      if (it->is_directory(type_ec)) watch(it->path().string(), false);
    }
  }

  void unwatch(const std::string& folder) {
    for (auto it = watched.begin(); it != watched.end(); ++it) {
      if (it->second == folder && root_watches.count(it->first) == 0) {
        inotify_rm_watch(inotify.native_handle(), it->first);
        watched.erase(it);
        return;
      }
    }
  }

  void read() {
    inotify.async_read_some(
        boost::asio::buffer(buffer),
        [self = shared_from_this()](const boost::system::error_code& ec, std::size_t size) {
          if (ec || self->stopped) return;
          self->handle(size);
          self->read();
        });
  }

  void handle(std::size_t size) {
    bool changed = false;
    for (std::size_t offset = 0; offset + sizeof(inotify_event) <= size;) {
      // Events are packed back to back with variable-length names, so they may be unaligned.
      inotify_event event;
      std::memcpy(&event, buffer.data() + offset, sizeof event);
      const char* name_start = buffer.data() + offset + sizeof event;
      std::string name(name_start, strnlen(name_start, event.len));
      offset += sizeof event + event.len;
      changed = true;

      if (event.mask & IN_Q_OVERFLOW) {
        // Events were lost, possibly the creation of a kit folder: look for new ones.
        for (const auto& root : roots) watch_subfolders(root);
        continue;
      }
      if (event.mask & IN_IGNORED) {
        // The kernel dropped the watch (folder deleted, or we removed it).
        watched.erase(event.wd);
        root_watches.erase(event.wd);
        continue;
      }
      auto folder = watched.find(event.wd);
      bool in_root = root_watches.count(event.wd) != 0;
      if (folder == watched.end() || !in_root || !(event.mask & IN_ISDIR)) continue;
      std::string child = (fs::path(folder->second) / name).string();
      if (event.mask & (IN_CREATE | IN_MOVED_TO)) {
        watch(child, false);
      } else if (event.mask & IN_MOVED_FROM) {
        // A watch follows the inode; once the folder has moved out it is none of ours.
        unwatch(child);
      }
    }
    if (changed) restart_timer();
  }

  void restart_timer() {
    // Moving the expiry cancels the pending wait, whose handler then sees operation_aborted:
    // only the wait that survives a quiet `debounce` reaches on_change.
    timer.expires_after(debounce);
    timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->stopped) return;
      self->on_change();
    });
  }

  void stop() {
    if (stopped) return;
    stopped = true;
    timer.cancel();
    boost::system::error_code ignored;
    // Closing the inotify descriptor drops every watch with it.
    inotify.close(ignored);
  }
};

FolderWatcher::FolderWatcher(boost::asio::io_context& io, std::vector<std::string> dirs,
                             std::chrono::milliseconds debounce, std::function<void()> on_change)
    : state_(std::make_shared<State>(io, debounce, std::move(on_change))) {
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "inotify_init1");
  state_->inotify.assign(fd);
  state_->roots = std::move(dirs);
  for (const auto& root : state_->roots) {
    if (state_->watch(root, true) < 0) {
      throw InputError(root, std::string("cannot watch the folder: ") + std::strerror(errno));
    }
    state_->watch_subfolders(root);
  }
  state_->read();
}

FolderWatcher::~FolderWatcher() {
  stop();
}

void FolderWatcher::stop() {
  state_->stop();
}

}  // namespace channeld::catalog
