#include "deliver/rate_limit.hpp"

#include <algorithm>

namespace channeld::deliver {

namespace {

// A bucket saves at most a second's worth of tokens, and always at least one, so a limit of 0.5
// per second still lets a message through every two seconds.
double default_burst(double rate) { return std::max(1.0, rate); }

}  // namespace

TokenBucket::TokenBucket(double rate, double burst) : rate_(rate), burst_(burst), tokens_(burst) {}

void TokenBucket::refill(Clock::time_point now) {
  // The first use starts the clock, so a bucket is full whenever it is first used; a clock that
  // seems to go backwards adds nothing.
  if (!last_) last_ = now;
  if (now <= *last_) return;
  std::chrono::duration<double> elapsed = now - *last_;
  tokens_ = std::min(burst_, tokens_ + elapsed.count() * rate_);
  last_ = now;
}

TokenBucket::Clock::duration TokenBucket::wait(Clock::time_point now) {
  if (unlimited()) return Clock::duration::zero();
  refill(now);
  // The slack absorbs rounding in refill(), so waiting exactly the time returned below is
  // always enough.
  if (tokens_ >= 1.0 - 1e-9) return Clock::duration::zero();
  // Rounded up, so a caller that sleeps exactly this long finds the token there.
  std::chrono::duration<double> missing((1.0 - tokens_) / rate_);
  return std::chrono::ceil<Clock::duration>(missing);
}

void TokenBucket::take(Clock::time_point now) {
  if (unlimited()) return;
  refill(now);
  tokens_ -= 1.0;
}

RateLimits::RateLimits(double global_per_second, double per_partner_per_second,
                       double per_domain_per_second)
    : per_partner_(per_partner_per_second),
      per_domain_(per_domain_per_second),
      global_(global_per_second, default_burst(global_per_second)) {}

TokenBucket& RateLimits::partner_bucket(const std::string& id) {
  auto it = partners_.find(id);
  if (it == partners_.end()) {
    it = partners_.emplace(id, TokenBucket(per_partner_, default_burst(per_partner_))).first;
  }
  return it->second;
}

TokenBucket& RateLimits::domain_bucket(const std::string& domain) {
  auto it = domains_.find(domain);
  if (it == domains_.end()) {
    it = domains_.emplace(domain, TokenBucket(per_domain_, default_burst(per_domain_))).first;
  }
  return it->second;
}

TokenBucket::Clock::duration RateLimits::wait(const std::string& partner_id,
                                              const std::string& domain,
                                              TokenBucket::Clock::time_point now) {
  auto longest = global_.wait(now);
  // Unlimited kinds keep no per-key buckets: a map entry per recipient domain is only worth
  // having when domains are limited.
  if (per_partner_ > 0) longest = std::max(longest, partner_bucket(partner_id).wait(now));
  if (per_domain_ > 0) longest = std::max(longest, domain_bucket(domain).wait(now));
  return longest;
}

void RateLimits::take(const std::string& partner_id, const std::string& domain,
                      TokenBucket::Clock::time_point now) {
  global_.take(now);
  if (per_partner_ > 0) partner_bucket(partner_id).take(now);
  if (per_domain_ > 0) domain_bucket(domain).take(now);
}

}  // namespace channeld::deliver
