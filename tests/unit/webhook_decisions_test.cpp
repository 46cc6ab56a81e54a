// app/webhook_decisions: a webhook answer becomes an outbox outcome and, when the endpoint is
// gone or the schedule spent, a reason to disable it. Pure; no server.
#include "app/webhook_decisions.hpp"

#include <gtest/gtest.h>

namespace channeld::app {
namespace {

using namespace std::chrono_literals;
using deliver::WebhookResult;
using deliver::WebhookVerdict;
using store::OutcomeKind;

const SysTime t0 = SysTime{std::chrono::sys_days{std::chrono::year{2026} / 12 / 1}} + 9h;

WebhookResult answer(WebhookVerdict verdict, long status, std::string detail,
                     std::optional<std::chrono::seconds> retry_after = {}) {
  WebhookResult r;
  r.id = 42;
  r.verdict = verdict;
  r.status = status;
  r.detail = std::move(detail);
  r.retry_after = retry_after;
  return r;
}

TEST(SettleWebhook, TwoHundredIsSent) {
  auto s = settle_webhook(42, answer(WebhookVerdict::delivered, 200, "HTTP 200"), 1, t0, 0.5);
  EXPECT_EQ(s.outcome.id, 42);
  EXPECT_EQ(s.outcome.kind, OutcomeKind::sent);
  EXPECT_FALSE(s.disable_reason.has_value());
}

TEST(SettleWebhook, FailureRetriesOnTheWebhookSchedule) {
  auto first = settle_webhook(42, answer(WebhookVerdict::retry, 500, "HTTP 500"), 1, t0, 0.5);
  EXPECT_EQ(first.outcome.kind, OutcomeKind::retry);
  EXPECT_EQ(first.outcome.retry_at, t0 + 5s);
  EXPECT_EQ(first.outcome.detail, "HTTP 500");
  auto fourth = settle_webhook(42, answer(WebhookVerdict::retry, 0, "timed out"), 4, t0, 0.5);
  EXPECT_EQ(fourth.outcome.retry_at, t0 + 2h);
  EXPECT_FALSE(fourth.disable_reason.has_value());
}

TEST(SettleWebhook, RetryAfterSetsTheNextAttempt) {
  auto s = settle_webhook(42, answer(WebhookVerdict::retry, 429, "HTTP 429", 600s), 1, t0, 0.5);
  EXPECT_EQ(s.outcome.kind, OutcomeKind::retry);
  EXPECT_EQ(s.outcome.retry_at, t0 + 600s);
}

// A shutdown that cancels the last scheduled attempt must not disable a healthy endpoint, and
// no cancelled attempt may count.
TEST(SettleWebhook, ACancelledAttemptIsGivenBackAndNeverDisablesTheEndpoint) {
  auto cancelled = answer(WebhookVerdict::retry, 0, "cancelled before the endpoint answered");
  cancelled.abandoned = true;
  for (int attempts : {1, kWebhookAttempts}) {
    auto s = settle_webhook(42, cancelled, attempts, t0, 0.5);
    EXPECT_EQ(s.outcome.kind, OutcomeKind::deferred) << attempts;
    EXPECT_EQ(s.outcome.retry_at, t0);
    EXPECT_FALSE(s.disable_reason.has_value()) << attempts;
  }
}

TEST(SettleWebhook, GoneFailsTheMessageAndDisablesTheEndpoint) {
  auto s = settle_webhook(42, answer(WebhookVerdict::disable, 410, "HTTP 410"), 1, t0, 0.5);
  EXPECT_EQ(s.outcome.kind, OutcomeKind::failed);
  ASSERT_TRUE(s.disable_reason.has_value());
  EXPECT_EQ(*s.disable_reason, "410 Gone");
}

TEST(SettleWebhook, TheLastScheduledAttemptFailingDisablesTheEndpoint) {
  auto before = settle_webhook(42, answer(WebhookVerdict::retry, 500, "HTTP 500"),
                               kWebhookAttempts - 1, t0, 0.5);
  EXPECT_EQ(before.outcome.kind, OutcomeKind::retry);
  EXPECT_EQ(before.outcome.retry_at, t0 + 24h);
  auto last =
      settle_webhook(42, answer(WebhookVerdict::retry, 500, "HTTP 500"), kWebhookAttempts, t0, 0.5);
  EXPECT_EQ(last.outcome.kind, OutcomeKind::failed);
  EXPECT_EQ(last.outcome.detail, "gave up after 10 attempts; endpoint disabled: HTTP 500");
  ASSERT_TRUE(last.disable_reason.has_value());
  EXPECT_NE(last.disable_reason->find("HTTP 500"), std::string::npos);
}

}  // namespace
}  // namespace channeld::app
