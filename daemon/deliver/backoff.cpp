#include "deliver/backoff.hpp"

#include <algorithm>

namespace channeld::deliver {

Backoff::Duration Backoff::next(double draw) {
  // Doubling stops at the cap; the exponent is bounded so the shift cannot overflow.
  const int exponent = std::min(failures_, 30);
  ++failures_;
  const auto ceiling = std::min<std::int64_t>(cap_.count(), first_.count() << exponent);
  const auto floor = std::min<std::int64_t>(first_.count() / 2, ceiling);
  draw = std::clamp(draw, 0.0, 1.0);
  return Duration(floor + static_cast<std::int64_t>(draw * static_cast<double>(ceiling - floor)));
}

std::optional<std::uint64_t> LogThrottle::occurred(Clock::time_point now) {
  ++unlogged_;
  if (last_logged_ && now - *last_logged_ < interval_) return std::nullopt;
  last_logged_ = now;
  const auto count = unlogged_;
  unlogged_ = 0;
  return count;
}

std::uint64_t LogThrottle::clear() {
  const auto count = unlogged_;
  unlogged_ = 0;
  last_logged_.reset();
  return count;
}

}  // namespace channeld::deliver
