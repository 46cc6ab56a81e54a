// schedule: when messages are due. Pure functions of (kit, partner, time zone, now): no I/O, no
// clock reads (callers pass `now`), so every rule here is unit-tested without a server. Safe
// from any thread.
#pragma once

#include <date/tz.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "model/model.hpp"

namespace channeld::schedule {

// Why a partner gets no messages from a kit, or nullopt if it is eligible: tier, type, region,
// status or missing opt-in. The text is a plain sentence for logs and `channeld kits`.
std::optional<std::string> ineligibility(const Kit& kit, const Partner& partner);

// The instant step `step_index` becomes due for a partner in `zone`: the kit's local start plus
// the delays of steps 0..step_index, read as local time in the zone (a time skipped by a DST gap
// moves forward, an ambiguous one takes the earlier instant), then moved to the window's next
// opening if it falls outside the window.
SysTime step_due(const Kit& kit, std::size_t step_index, const date::time_zone* zone);

// True if `at` falls inside the send window in the partner's zone.
bool in_window(const SendWindow& window, const date::time_zone* zone, SysTime at);

// `at` if it is inside the window, else the window's next opening after it. A window with no
// days or an empty time range never opens: returns nullopt.
std::optional<SysTime> next_window_open(const SendWindow& window, const date::time_zone* zone,
                                        SysTime at);

// True once the kit's `expires` date has passed in the partner's zone (the kit may still send
// on its expiry day).
bool expired(const Kit& kit, const date::time_zone* zone, SysTime now);

// When a partner's proof of a kit's first email goes out (docs/architecture.md, "Proofs").
struct ProofTiming {
  std::size_t email_step = 0;  // index of the kit's first email step: what the proof shows
  SysTime email_at{};          // when that step goes out for this partner
  SysTime first_step_at{};     // when the partner's first step of any channel goes out
  // first_step_at - lead_time, or `now` when that has passed: a kit loaded (or a partner
  // enrolled) less than lead_time before its start still gets its proof at once, and the step
  // keeps its time (a proof never delays a send).
  SysTime due{};
};
// nullopt when there is no proof to send: lead_time is zero (proofs disabled), the kit has no
// email step, or the partner's first step is already due (it has gone or is going; a proof
// then would only announce the past). Webhook steps count as the partner's first step only
// when it has a [webhook] (otherwise they are never planned for it).
std::optional<ProofTiming> proof_timing(const Kit& kit, bool partner_has_webhook,
                                        const date::time_zone* zone, std::chrono::minutes lead_time,
                                        SysTime now);

// Delay before retry number `attempt` (1 = first retry): base * 2^(attempt-1), capped at `max`,
// with "equal jitter" (half fixed, half drawn from `jitter_seed`) so retries of one message are
// spread but stay reproducible in tests.
std::chrono::seconds retry_delay(int attempt, std::chrono::seconds base, std::chrono::seconds max,
                                 std::uint64_t jitter_seed);

}  // namespace channeld::schedule
