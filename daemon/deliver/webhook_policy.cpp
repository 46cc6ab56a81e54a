#include "deliver/webhook_policy.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <string>

namespace channeld::deliver {

std::string_view to_string(WebhookVerdict v) {
  switch (v) {
    case WebhookVerdict::delivered:
      return "delivered";
    case WebhookVerdict::retry:
      return "retry";
    case WebhookVerdict::disable:
      return "disable";
  }
  return "unknown";
}

WebhookVerdict classify_webhook(int curl_code, long status) {
  // An answer cut short is not an answer: the receiver may not have stored the event.
  if (curl_code != CURLE_OK) return WebhookVerdict::retry;
  if (status >= 200 && status < 300) return WebhookVerdict::delivered;
  if (status == 410) return WebhookVerdict::disable;
  return WebhookVerdict::retry;
}

std::optional<std::chrono::seconds> webhook_retry_delay(
    int failed_attempts, double jitter, std::optional<std::chrono::seconds> retry_after) {
  if (failed_attempts < 1 || static_cast<std::size_t>(failed_attempts) > kWebhookSchedule.size()) {
    return std::nullopt;
  }
  auto base = kWebhookSchedule[static_cast<std::size_t>(failed_attempts - 1)];
  double factor = 0.9 + 0.2 * std::clamp(jitter, 0.0, 1.0);
  auto jittered = std::chrono::seconds(
      std::max<long long>(1, std::llround(static_cast<double>(base.count()) * factor)));
  if (retry_after) return std::max(jittered, std::min(*retry_after, kWebhookSchedule.back()));
  return jittered;
}

std::optional<std::chrono::seconds> parse_retry_after(long status, std::string_view value,
                                                      std::chrono::system_clock::time_point now) {
  if (status != 429 && status != 503) return std::nullopt;
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    long long seconds = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
    if (ec == std::errc::result_out_of_range) return kWebhookSchedule.back();
    if (ec != std::errc() || end != value.data() + value.size()) return std::nullopt;
    return std::chrono::seconds(seconds);
  }
  // curl_getdate reads the three date forms RFC 9110 allows (IMF-fixdate, RFC 850, asctime);
  // it is a pure parser and needs no curl handle.
  std::string text(value);
  time_t at = curl_getdate(text.c_str(), nullptr);
  if (at < 0) return std::nullopt;
  // In seconds: curl_getdate takes years up to INT_MAX, and from_time_t's nanoseconds overflow
  // past 2262.
  const auto delay = std::chrono::seconds(at) -
                     std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch());
  return std::max(delay, std::chrono::seconds(0));
}

}  // namespace channeld::deliver
