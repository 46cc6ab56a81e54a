// deliver/backoff: how a retry loop waits and how loudly it complains while something it needs
// (PostgreSQL, the relay) is away. Pure: the caller passes "now" and the random draw, so tests
// need no clock.
//
// Threads: plain values; each loop owns its own.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace channeld::deliver {

// Exponential backoff with a cap and full jitter: the n-th consecutive failure waits a uniform
// draw in [first/2, min(cap, first * 2^n)], so many daemons that lost the database together do
// not come back in step. reset() after a success.
class Backoff {
 public:
  using Duration = std::chrono::milliseconds;
  Backoff(Duration first, Duration cap) : first_(first), cap_(cap) {}
  // The wait before the next try; `draw` is uniform in [0, 1).
  Duration next(double draw);
  void reset() { failures_ = 0; }
  int failures() const { return failures_; }

 private:
  Duration first_;
  Duration cap_;
  int failures_ = 0;
};

// Logs a repeated error once per interval with how many times it happened, not once per try.
class LogThrottle {
 public:
  using Clock = std::chrono::steady_clock;
  explicit LogThrottle(Clock::duration interval) : interval_(interval) {}
  // Counts one occurrence. Returns how many occurrences the line to log now stands for (this
  // one included), or nullopt when this one is to be kept quiet.
  std::optional<std::uint64_t> occurred(Clock::time_point now);
  // The trouble ended: returns how many occurrences were never logged (to say so once), and
  // starts afresh so the next failure is logged at once.
  std::uint64_t clear();

 private:
  Clock::duration interval_;
  std::optional<Clock::time_point> last_logged_;
  std::uint64_t unlogged_ = 0;
};

}  // namespace channeld::deliver
