// app/planner: expands due kit steps into the durable outbox: for every live kit, eligible
// partner and step whose due time has come, streams the partner's contacts CSV into outbox rows
// in batches (never the whole audience in memory). Idempotent: rows are keyed by (kit, step,
// partner, email) and a (kit, step, partner, audience digest) expansion is done once, so a
// restart, a second daemon or a re-import never queues a message twice.
//
// Threads: run() does file and database I/O; the daemon calls it on its catalog strand (one
// run at a time), never on the network I/O thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>

#include "app/snapshot.hpp"
#include "store/store.hpp"

namespace channeld::app {

class Planner {
 public:
  explicit Planner(store::Store& store) : store_(store) {}

  struct Result {
    std::size_t enqueued = 0;
    std::optional<SysTime> next_due;  // the earliest step not yet due, to wake up for
    std::set<std::string> kits_with_steps_ahead;  // some step is not yet due for some partner
  };
  Result run(const Snapshot& snapshot, SysTime now);

 private:
  void expand(const Kit& kit, const Step& step, const Partner& partner, SysTime due,
              const std::string& audience_digest, std::size_t field_bytes, Result& result);
  // Hashing a large CSV every scan would be wasteful: reuse the digest while size and mtime
  // are unchanged.
  std::string audience_digest(const std::string& path);

  store::Store& store_;
  std::map<std::string, std::tuple<std::uintmax_t, std::int64_t, std::string>> digests_;
};

}  // namespace channeld::app
