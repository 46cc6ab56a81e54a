// deliver/webhook_policy: what a webhook endpoint's answer means, and when to try again. Pure.
//
// Follows the Standard Webhooks retry guidance: any 2xx is delivery; 410 Gone means the receiver
// wants no more, so the endpoint is disabled; everything else (3xx included, since redirects are
// never followed, 4xx, 5xx, timeouts, refused connections and addresses the SSRF guard refused)
// is a failed attempt, retried on kWebhookSchedule. Once the schedule is spent the endpoint is
// disabled and its partner flagged, so one dead CRM does not hold messages forever.
#pragma once

#include <array>
#include <chrono>
#include <optional>
#include <string_view>

namespace channeld::deliver {

enum class WebhookVerdict {
  delivered,  // 2xx
  retry,      // a failed attempt: try again on the schedule
  disable,    // 410 Gone: stop sending to this endpoint
};

std::string_view to_string(WebhookVerdict v);

// curl_code is a CURLcode (0 = a complete HTTP answer was read), status the HTTP status (0 if
// none).
WebhookVerdict classify_webhook(int curl_code, long status);

// Delays before the 2nd, 3rd, ... attempt: the Standard Webhooks example schedule. Ten attempts
// in all over about three days.
inline constexpr std::array<std::chrono::seconds, 9> kWebhookSchedule = {
    std::chrono::seconds(5), std::chrono::minutes(5), std::chrono::minutes(30),
    std::chrono::hours(2),   std::chrono::hours(5),   std::chrono::hours(10),
    std::chrono::hours(14),  std::chrono::hours(20),  std::chrono::hours(24)};

// How long to wait after the `failed_attempts`-th failed attempt (1 after the first), or
// nullopt when the schedule is spent (the endpoint is then disabled). `jitter` in [0, 1) spreads
// the delay over +-10%, so endpoints that failed together are not retried in lockstep.
// `retry_after` (from a 429 or 503) lengthens the scheduled delay to what the receiver asked
// for, capped at the schedule's longest step; it never shortens it, and adds no attempts: a
// receiver that answers every burst with "Retry-After: 1" would otherwise spend the whole
// schedule, and have its endpoint disabled, within seconds.
std::optional<std::chrono::seconds> webhook_retry_delay(
    int failed_attempts, double jitter, std::optional<std::chrono::seconds> retry_after = {});

// The Retry-After header of an answer with `status`, as a delay from `now`: delta-seconds
// ("120") or an HTTP-date ("Wed, 21 Oct 2026 07:28:00 GMT"); a date in the past is zero.
// nullopt when the status is not 429 or 503 (the only ones it is honoured on) or the value is
// not understood.
std::optional<std::chrono::seconds> parse_retry_after(long status, std::string_view value,
                                                      std::chrono::system_clock::time_point now);

}  // namespace channeld::deliver
