// app/snapshot: the daemon's current view of what users wrote: config, partners and live kits.
// A snapshot is immutable once published; a reload builds a new one and swaps the pointer, so
// the dispatcher and planner read a consistent set without locks while a reload runs.
#pragma once

#include <atomic>
#include <cstdint>
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
  int version_seen = 0;       // the version in the folder now (may be the refused one)
  std::string error;          // last refusal or held partners, empty if all is well
  bool folder_valid = false;  // the folder as it is now passed: a last good version to keep
};

struct Snapshot {
  Config config;
  // A partner whose file is broken now keeps the version last loaded (in `partners`), and
  // stays in `partners.broken`, so decide() can tell broken (wait) from removed (stop).
  catalog::PartnerSet partners;
  std::map<std::string, KitEntry> kits;  // by kit id
  std::string link_secret;
  // paths.partners/suppressions.csv as read for this snapshot. If it could not be read or
  // validated, `suppressions_error` says why and no new message goes out (decide() defers
  // every row) until it is fixed: mailing someone who asked not to be mailed is worse than
  // mailing late.
  std::vector<catalog::SuppressionRow> suppressions;
  std::string suppressions_error;

  // Why nothing may be sent right now, or "" (shown by /readyz, check-config and kits).
  const std::string& sending_held() const { return suppressions_error; }

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
    generation_.fetch_add(1, std::memory_order_release);
  }
  // Counts publishes: what was derived from an older snapshot (a cached link) is stale when it
  // changed. Cheaper than get() for a caller that only needs to know that.
  std::uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

 private:
  mutable std::mutex mutex_;  // guards current_ (the pointer, not the snapshot: that is const)
  std::shared_ptr<const Snapshot> current_;
  std::atomic<std::uint64_t> generation_{0};
};

// The last good version of each kit folder and partner file, as the daemon keeps it in the
// store, so that a file broken while the daemon was down still has its previous version in
// force after a restart. Kit files are by path relative to the kit folder.
struct LastGood {
  std::map<std::string, std::map<std::string, std::string>> kit_files;  // kit id -> files
  std::map<std::string, std::string> partner_files;                     // partner id -> bytes
};

// Loads everything from disk into a new snapshot, carrying forward the live version of any kit
// or partner whose file is now refused: from `previous`, else from `last_good` (re-validated
// from a scratch copy). Pure of the database; runs on a worker thread. `problems` collects what
// was refused, held or skipped, for logging and `channeld check-config`. `stored_secret` signs
// links when the config names no http.link_secret_file.
std::shared_ptr<const Snapshot> load_snapshot(const Config& config, const Snapshot* previous,
                                              SysTime now, const std::string& stored_secret,
                                              std::vector<std::string>& problems,
                                              const LastGood* last_good = nullptr);

// A kit folder's files (dot-files left out, as in the kit's digest), relative path -> bytes,
// for LastGood. Throws InputError if a file cannot be read.
std::map<std::string, std::string> kit_files(const std::string& folder);

// Reads a secret file (link secret, SMTP password) whole, without a trailing newline. Throws
// InputError naming the config key if it cannot be read or is empty.
std::string read_secret(const std::string& path, const std::string& key);

}  // namespace channeld::app
