// metrics/log_throttle: quiet outages. A retry loop that fails on every attempt (the database is
// away, the relay refuses) reports the first failure at once, then one line per interval with
// the number of failures since the last line, and one line when it recovers: one line a minute
// instead of one per attempt, and nothing lost from the count.
//
// Pure: the caller passes `now` and writes the line. Not thread-safe: one throttle per loop,
// used from the thread or strand that runs that loop.
#pragma once

#include <chrono>
#include <cstdint>

namespace channeld::metrics {

class LogThrottle {
 public:
  using Clock = std::chrono::steady_clock;

  explicit LogThrottle(Clock::duration interval) : interval_(interval) {}

  // A failure at `now`. Returns how many failures to report (this one and those held back since
  // the last report) if a line is due now, else 0.
  std::int64_t failure(Clock::time_point now) {
    ++held_;
    ++outage_;
    if (reported_ && now - last_report_ < interval_) return 0;
    reported_ = true;
    last_report_ = now;
    const std::int64_t n = held_;
    held_ = 0;
    return n;
  }

  // A success. Returns how many failures the outage that just ended had (0 if there was none),
  // so the caller can say it recovered.
  std::int64_t success() {
    const std::int64_t n = outage_;
    outage_ = 0;
    held_ = 0;
    reported_ = false;
    return n;
  }

 private:
  Clock::duration interval_;
  Clock::time_point last_report_{};
  bool reported_ = false;
  std::int64_t held_ = 0;    // failures since the last report
  std::int64_t outage_ = 0;  // failures since the last success
};

}  // namespace channeld::metrics
