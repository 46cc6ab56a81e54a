// app/webhook_decisions: what a webhook connector's answer means for the outbox row and for the
// partner's endpoint. Pure, like app/decisions; the dispatcher applies the result.
#pragma once

#include <optional>
#include <string>

#include "deliver/webhook_connector.hpp"
#include "store/store.hpp"

namespace channeld::app {

// Attempts a webhook message gets: the first and one per step of deliver::kWebhookSchedule.
// Used instead of delivery.max_attempts for webhook rows.
inline constexpr int kWebhookAttempts = static_cast<int>(deliver::kWebhookSchedule.size()) + 1;

struct WebhookSettlement {
  store::Outcome outcome;
  // Set when the endpoint must be disabled (410 Gone, or the schedule is spent): the reason to
  // store with it and log when flagging the partner.
  std::optional<std::string> disable_reason;
};

// The row's outcome once the endpoint answered. `attempts` counts this one; `jitter` in [0, 1)
// spreads the retry delay (see deliver::webhook_retry_delay).
WebhookSettlement settle_webhook(std::int64_t id, const deliver::WebhookResult& result,
                                 int attempts, SysTime now, double jitter);

}  // namespace channeld::app
