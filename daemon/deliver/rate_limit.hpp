// deliver/rate_limit: global, per-partner and per-recipient-domain token buckets. Pure: callers
// pass `now`, so tests drive a fake clock. Not thread-safe: owned by the dispatcher's strand.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>

namespace channeld::deliver {

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;
  // rate tokens per second, up to `burst` saved (it starts full); rate <= 0 means unlimited.
  // RateLimits gives each bucket a burst of max(1, rate): one second's worth.
  TokenBucket(double rate, double burst);
  // How long until one token is available (zero if now).
  Clock::duration wait(Clock::time_point now);
  // Takes one token; call only after wait() returned zero.
  void take(Clock::time_point now);
  bool unlimited() const { return rate_ <= 0; }

 private:
  void refill(Clock::time_point now);
  double rate_;
  double burst_;
  double tokens_;
  std::optional<Clock::time_point> last_;
};

class RateLimits {
 public:
  RateLimits(double global_per_second, double per_partner_per_second, double per_domain_per_second);
  // Zero if a message for (partner, recipient domain) may go now, else how long to wait.
  TokenBucket::Clock::duration wait(const std::string& partner_id, const std::string& domain,
                                    TokenBucket::Clock::time_point now);
  // Takes a token from each of the three buckets.
  void take(const std::string& partner_id, const std::string& domain,
            TokenBucket::Clock::time_point now);

 private:
  TokenBucket& partner_bucket(const std::string& id);
  TokenBucket& domain_bucket(const std::string& domain);
  double per_partner_;
  double per_domain_;
  TokenBucket global_;
  std::map<std::string, TokenBucket> partners_;
  std::map<std::string, TokenBucket> domains_;
};

}  // namespace channeld::deliver
