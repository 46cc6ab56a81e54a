#include "app/webhook_decisions.hpp"

#include "app/decisions.hpp"

namespace channeld::app {

WebhookSettlement settle_webhook(std::int64_t id, const deliver::WebhookResult& result,
                                 int attempts, SysTime now, double jitter) {
  using deliver::WebhookVerdict;
  using store::OutcomeKind;
  WebhookSettlement s{make_outcome(id, OutcomeKind::sent, result.detail), std::nullopt};
  switch (result.verdict) {
    case WebhookVerdict::delivered:
      break;
    case WebhookVerdict::disable:
      s.outcome.kind = OutcomeKind::failed;
      s.outcome.detail = "endpoint answered 410 Gone; disabled: " + result.detail;
      s.disable_reason = "410 Gone";
      break;
    case WebhookVerdict::retry:
      if (result.abandoned) {
        // The daemon stopped, or the request waited too long: the endpoint did nothing wrong,
        // so the attempt is given back (as email's unsent), and a shutdown can never spend the
        // schedule and disable it.
        s.outcome.kind = OutcomeKind::deferred;
        s.outcome.retry_at = now;
      } else if (auto delay = deliver::webhook_retry_delay(attempts, jitter, result.retry_after)) {
        s.outcome.kind = OutcomeKind::retry;
        s.outcome.retry_at = now + *delay;
      } else {
        s.outcome.kind = OutcomeKind::failed;
        s.outcome.detail = "gave up after " + std::to_string(attempts) +
                           " attempts; endpoint disabled: " + result.detail;
        s.disable_reason = "retry schedule spent after " + std::to_string(attempts) +
                           " attempts; last: " + result.detail;
      }
      break;
  }
  return s;
}

}  // namespace channeld::app
