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

// Delay before retry number `attempt` (1 = first retry): base * 2^(attempt-1), capped at `max`,
// with "equal jitter" (half fixed, half drawn from `jitter_seed`) so retries of one message are
// spread but stay reproducible in tests.
std::chrono::seconds retry_delay(int attempt, std::chrono::seconds base, std::chrono::seconds max,
                                 std::uint64_t jitter_seed);

}  // namespace channeld::schedule
