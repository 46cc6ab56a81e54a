// app/snapshot: the daemon's current view of what users wrote: config, partners and live kits.
// A snapshot is immutable once published; a reload builds a new one and swaps the pointer, so
// the dispatcher and planner read a consistent set without locks while a reload runs.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "catalog/catalog.hpp"
#include "model/model.hpp"

namespace channeld::app {

enum class KitState { live, refused, expired, done };
std::string_view to_string(KitState s);

struct KitEntry {
  // Set when some version of the kit passed validation; a refused newer version leaves the
  // previous one here and records why in `error`.
  std::shared_ptr<const catalog::ValidKit> live;
  KitState state = KitState::refused;
  int version_seen = 0;  // the version in the folder now (may be the refused one)
  std::string error;     // last refusal, empty if the folder's version is live
};

struct Snapshot {
  Config config;
  catalog::PartnerSet partners;
  std::map<std::string, KitEntry> kits;  // by kit id
  std::string link_secret;

  const Partner* partner(const std::string& id) const {
    auto it = partners.partners.find(id);
    return it == partners.partners.end() ? nullptr : &it->second;
  }
  const catalog::ValidKit* live_kit(const std::string& id) const {
    auto it = kits.find(id);
    return it == kits.end() || !it->second.live ? nullptr : it->second.live.get();
  }
};

// Holds the published snapshot. Thread-safe: any thread may read or publish.
class SnapshotHolder {
 public:
  std::shared_ptr<const Snapshot> get() const {
    std::lock_guard lock(mutex_);
    return current_;
  }
  void publish(std::shared_ptr<const Snapshot> next) {
    std::lock_guard lock(mutex_);
    current_ = std::move(next);
  }

 private:
  mutable std::mutex mutex_;  // guards current_ (the pointer, not the snapshot: that is const)
  std::shared_ptr<const Snapshot> current_;
};

// Loads everything from disk into a new snapshot, carrying forward the live version of any kit
// whose new version is refused. Pure of the database; runs on a worker thread. `problems`
// collects what was refused or skipped, for logging and `channeld check-config`.
// `stored_secret` signs links when the config names no http.link_secret_file.
std::shared_ptr<const Snapshot> load_snapshot(const Config& config, const Snapshot* previous,
                                              SysTime now, const std::string& stored_secret,
                                              std::vector<std::string>& problems);

// Reads a secret file (link secret, SMTP password) whole, without a trailing newline. Throws
// InputError naming the config key if it cannot be read or is empty.
std::string read_secret(const std::string& path, const std::string& key);

}  // namespace channeld::app
