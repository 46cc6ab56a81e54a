// store/proofs: partner proofs in PostgreSQL (migration 0011): which partners opted out of which
// kits, and the lookups the proof planner needs (which proofs are already queued, how many of a
// partner's contacts are suppressed). Proof messages themselves are outbox rows with channel
// 'proof' (Store::enqueue).
//
// Threads: like Store, safe from any thread; calls block on the database, so the daemon runs
// them on its database pool or HTTP threads. The CLI calls them directly.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "store/store.hpp"

namespace channeld::store {

// The outbox key of a partner's proof of one kit version's first email step: one proof per
// (kit, version, step, partner), whatever the restarts or daemons. A new kit version is a new
// key (a new proof if its first step is still ahead); an edit that keeps the version is not.
std::string proof_key(const std::string& kit_id, int kit_version, const std::string& step_id,
                      const std::string& partner_id);

struct OptOut {
  std::string kit_id;
  std::string partner_id;
  SysTime at{};
  std::string via;  // "link" or "api:<token name>"
};

struct OptOutResult {
  bool recorded = false;      // false: the partner had already opted out of the kit
  std::size_t cancelled = 0;  // queued messages of the kit for the partner settled as expired
};

// The detail of every message an opt-out settles (outbox.last_error, delivery_event.detail).
inline constexpr const char* kOptedOutDetail = "partner opted out of this kit";

class Proofs {
 public:
  explicit Proofs(Store& store) : store_(store) {}

  // Records the opt-out and, in the same transaction, settles every queued message of the kit
  // for the partner (proof included) as `expired` with kOptedOutDetail and a delivery_event.
  // Messages being sent at that moment are left to their dispatcher. Idempotent.
  OptOutResult opt_out(const std::string& kit_id, const std::string& partner_id,
                       const std::string& via, SysTime now);
  // Every opt-out, by kit then partner.
  std::vector<OptOut> opt_outs();
  // (kit, partner) pairs that opted out, for the planner and dispatcher.
  std::set<std::pair<std::string, std::string>> opted_out_pairs();

  // Which of `keys` already have an outbox row.
  std::set<std::string> existing(const std::vector<std::string>& keys);
  // How many of `emails` (lower-cased) are suppressed for the partner or for every partner.
  std::size_t suppressed_among(const std::string& partner_id,
                               const std::vector<std::string>& emails);

 private:
  Store& store_;
};

}  // namespace channeld::store
