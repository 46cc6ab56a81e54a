// app/decisions: what the dispatcher does with a leased message, as pure functions of the row,
// the snapshot and `now`: whether it may be sent at all, and what a connector's verdict means
// for the row. The Dispatcher only moves data between the store, these rules and the connector.
#pragma once

#include <chrono>
#include <optional>

#include "app/snapshot.hpp"
#include "deliver/verdict.hpp"
#include "store/store.hpp"

namespace channeld::app {

struct RetryPolicy {
  int max_attempts = 8;
  std::chrono::seconds backoff_base{60};
  std::chrono::seconds backoff_max{6 * 3600};
};

// The message to send: its live kit, step and partner.
struct Sendable {
  const catalog::ValidKit* kit = nullptr;
  const Step* step = nullptr;
  const Partner* partner = nullptr;
};

// Either a Sendable, or the outcome that settles the row without sending: suppressed; kit
// removed, expired or without this step; partner removed or suspended (expired); outside the
// send window (deferred to the next opening, not an attempt); out of attempts (failed).
// Input errors defer (for delivery.scan_interval, not an attempt) and never settle: the
// suppression file unreadable (nothing goes out), the kit refused with no good version, the
// partner file refused with no good version, the partner held back for this kit.
struct Decision {
  std::optional<Sendable> send;
  std::optional<store::Outcome> settle;
};
Decision decide(const store::ClaimedMessage& row, const Snapshot& snapshot, SysTime now,
                const RetryPolicy& policy);

// An outcome of `kind` for row `id`, with `detail` for the log and the row's last_error.
store::Outcome make_outcome(std::int64_t id, store::OutcomeKind kind, std::string detail);

// The row's outcome once the connector answered. `attempts` counts this one; a transient
// failure past policy.max_attempts fails for good.
store::Outcome outcome_of_send(std::int64_t id, deliver::Verdict verdict, const std::string& detail,
                               int attempts, SysTime now, const RetryPolicy& policy);

}  // namespace channeld::app
