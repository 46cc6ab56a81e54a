// app/proofs: partner proofs (docs/architecture.md, "Proofs"). Before a kit's first step each
// eligible partner's branding.reply_to gets a proof of the kit's first email, co-branded for it,
// `[proofs] lead_time` ahead, with a signed opt-out link; a partner that opts out gets nothing
// more from that kit.
//
//   ProofPlanner     queues the proofs that are due as outbox rows (channel 'proof'), one per
//                    (kit, version, first email step, partner) by their idempotency key
//   decide_proof     whether a leased proof row may go now (pure, like app/decisions)
//   render_proof_row the proof's bytes for a leased row
//
// Threads: ProofPlanner::run does file and database I/O on the catalog strand (after the
// Planner); decide_proof and render_proof_row run on the database pool inside the Dispatcher.
#pragma once

#include <date/tz.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "app/decisions.hpp"
#include "app/snapshot.hpp"
#include "render/render.hpp"
#include "store/store.hpp"

namespace channeld::app {

// What a proof row carries in the outbox's contact column (instead of a contact): counted when
// the proof was queued, just before it goes.
struct ProofDetails {
  std::int64_t audience = 0;         // the partner's contacts the step will reach
  std::vector<std::string> columns;  // the contacts file's extra columns, for the sample
};
std::string proof_json(const ProofDetails& details);
// Throws nlohmann::json::exception if `text` is not what proof_json() wrote.
ProofDetails proof_from_json(const std::string& text);

// The made-up contact a proof is rendered for: every field shows its column name in brackets
// ("[first_name]"), so no real contact's data reaches the proof and the partner sees where
// each value goes; the address is on example.com (RFC 2606), which never receives mail.
Contact sample_contact(const std::vector<std::string>& extra_columns);

// "on Tuesday 01 December 2026 at 09:00 CST (America/Chicago)".
std::string goes_out_text(SysTime at, const date::time_zone* zone);

class ProofPlanner {
 public:
  explicit ProofPlanner(store::Store& store) : store_(store) {}

  struct Result {
    std::size_t enqueued = 0;
    std::optional<SysTime> next_due;  // the earliest proof not yet due, to wake up for
  };
  // Nothing when [proofs] lead_time is 0. Skips partners that opted out of the kit, are held
  // back from it or have no reply_to (logged once per kit and partner).
  Result run(const Snapshot& snapshot, SysTime now);

 private:
  store::Store& store_;
  std::set<std::pair<std::string, std::string>> warned_;  // (kit, partner) told: no reply_to
};

// Partners of live kits that will get no proof because they have no branding.reply_to, one
// sentence each, for check-config and `channeld kits`. Empty when proofs are off.
std::vector<std::string> proof_warnings(const Snapshot& snapshot, SysTime now);

// As decide() for contact messages, for a proof row: suppressed reply_to → suppressed; input
// errors defer; kit or partner gone, kit expired, a newer kit version live (its own proof
// follows), the first step already due or proofs turned off, the first email step changed →
// expired; out of attempts → failed. The send window does not apply: a proof is a notice to
// the partner, due at a time of its own.
Decision decide_proof(const store::ClaimedMessage& row, const Snapshot& snapshot, SysTime now,
                      const RetryPolicy& policy);

// The proof for a row decide_proof() let through. Throws on a row it cannot render.
render::RenderedEmail render_proof_row(const Sendable& send, const render::Context& ctx,
                                       const store::ClaimedMessage& row, SysTime now,
                                       std::chrono::minutes lead_time);

}  // namespace channeld::app
