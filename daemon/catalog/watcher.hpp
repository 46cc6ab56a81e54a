// catalog/watcher: notices changes in the kit and partner folders and tells the app, once per
// burst, that it should rescan. It says only "something changed", never what: the rescan
// compares digests, which also covers anything inotify lost (a queue overflow) or a copy that
// was still running when the burst ended (looks_incomplete skips it until its next change).
//
// Threading: every handler runs on the io_context's thread. Like Asio's own I/O objects, a
// FolderWatcher is not thread-safe: construct it, stop it and destroy it on that thread, or
// while the io_context is not running.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

// Declared rather than included: Asio's headers need a diagnostic pragma under GCC 12 (see
// watcher.cpp), which each including file applies where it includes Asio.
namespace boost::asio {
class io_context;
}

namespace channeld::catalog {

class FolderWatcher {
 public:
  // Watches each of `dirs` and each of their immediate subdirectories (one folder per kit),
  // including subdirectories created or moved in later. After any change, `on_change` runs
  // once `debounce` has passed with no further change. Throws InputError naming a folder that
  // cannot be watched, std::system_error if inotify itself fails.
  FolderWatcher(boost::asio::io_context& io, std::vector<std::string> dirs,
                std::chrono::milliseconds debounce, std::function<void()> on_change);
  ~FolderWatcher();
  FolderWatcher(const FolderWatcher&) = delete;
  FolderWatcher& operator=(const FolderWatcher&) = delete;

  // Stops watching; `on_change` is not called after this returns. Idempotent.
  void stop();

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace channeld::catalog
