// deliver: what SMTP outcomes mean, and the token buckets that pace sending. Pure; no server.

#include <curl/curl.h>
#include <gtest/gtest.h>

#include "deliver/backoff.hpp"
#include "deliver/rate_limit.hpp"
#include "deliver/verdict.hpp"

namespace channeld::deliver {
namespace {

using namespace std::chrono_literals;
using Clock = TokenBucket::Clock;

// ---- verdicts ----------------------------------------------------------------------------

struct VerdictCase {
  const char* what;
  int curl_code;
  long server_code;
  const char* curl_error;
  Verdict expected;
};

// The curl codes and error texts are the ones libcurl 7.88 reports for each situation (see
// verdict.cpp; tests/integration/smtp_test.cpp checks them against a real server).
const VerdictCase kVerdicts[] = {
    {"250 after DATA", CURLE_OK, 250, "", Verdict::sent},
    {"550 at RCPT TO", CURLE_SEND_ERROR, 550, "RCPT failed: 550", Verdict::hard_bounce},
    {"551 at RCPT TO", CURLE_SEND_ERROR, 551, "RCPT failed: 551", Verdict::hard_bounce},
    {"553 at RCPT TO", CURLE_SEND_ERROR, 553, "RCPT failed: 553", Verdict::hard_bounce},
    {"552 at RCPT TO (RFC 5321: temporary)", CURLE_SEND_ERROR, 552, "RCPT failed: 552",
     Verdict::retry},
    {"450 at RCPT TO (greylisting)", CURLE_SEND_ERROR, 450, "RCPT failed: 450", Verdict::retry},
    {"552 at MAIL FROM (too big)", CURLE_SEND_ERROR, 552, "MAIL failed: 552", Verdict::failed},
    {"550 at MAIL FROM (sender refused)", CURLE_SEND_ERROR, 550, "MAIL failed: 550",
     Verdict::failed},
    {"530 at MAIL FROM (authentication required)", CURLE_SEND_ERROR, 530, "MAIL failed: 530",
     Verdict::retry},
    {"554 to the DATA command", CURLE_SEND_ERROR, 554, "DATA failed: 554", Verdict::failed},
    {"554 after the data", CURLE_WEIRD_SERVER_REPLY, 554, "", Verdict::failed},
    {"451 after the data", CURLE_WEIRD_SERVER_REPLY, 451, "", Verdict::retry},
    {"421 closing", CURLE_WEIRD_SERVER_REPLY, 421, "", Verdict::retry},
    {"5xx without the stage known", CURLE_SEND_ERROR, 550, "", Verdict::failed},
    {"535 to AUTH", CURLE_LOGIN_DENIED, 535, "Login denied", Verdict::retry},
    {"connection refused", CURLE_COULDNT_CONNECT, 0, "Failed to connect", Verdict::retry},
    {"timeout", CURLE_OPERATION_TIMEDOUT, 0, "", Verdict::retry},
    {"timeout after a reply", CURLE_OPERATION_TIMEDOUT, 250, "", Verdict::retry},
    {"DNS failure", CURLE_COULDNT_RESOLVE_HOST, 0, "", Verdict::retry},
    {"TLS handshake", CURLE_SSL_CONNECT_ERROR, 0, "", Verdict::retry},
    {"STARTTLS required but not offered", CURLE_USE_SSL_FAILED, 0, "", Verdict::retry},
    {"connection dropped", CURLE_RECV_ERROR, 0, "", Verdict::retry},
    {"send failed without a reply", CURLE_SEND_ERROR, 0, "", Verdict::retry},
    {"dropped after a 250", CURLE_GOT_NOTHING, 250, "", Verdict::retry},
    {"an unknown curl code", 9999, 0, "", Verdict::retry},
};

TEST(ClassifySmtp, GivesEachOutcomeItsVerdict) {
  for (const auto& c : kVerdicts) {
    EXPECT_EQ(classify_smtp(c.curl_code, c.server_code, c.curl_error), c.expected)
        << c.what << ": got " << to_string(classify_smtp(c.curl_code, c.server_code, c.curl_error))
        << ", want " << to_string(c.expected);
  }
}

TEST(ClassifySmtp, NeverBouncesAnAddressWithoutKnowingTheRefusalWasAtRcpt) {
  EXPECT_NE(classify_smtp(CURLE_SEND_ERROR, 550), Verdict::hard_bounce);
}

TEST(VerdictNames, MatchTheEnumerators) {
  EXPECT_EQ(to_string(Verdict::sent), "sent");
  EXPECT_EQ(to_string(Verdict::retry), "retry");
  EXPECT_EQ(to_string(Verdict::failed), "failed");
  EXPECT_EQ(to_string(Verdict::hard_bounce), "hard_bounce");
}

// ---- token buckets -----------------------------------------------------------------------

// An arbitrary steady_clock reading: tests never look at the real clock.
const Clock::time_point kStart = Clock::time_point{} + 1000h;

TEST(TokenBucket, StartsFullAndLetsABurstThrough) {
  TokenBucket bucket(10, 10);
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(bucket.wait(kStart), Clock::duration::zero()) << "message " << i;
    bucket.take(kStart);
  }
  EXPECT_GT(bucket.wait(kStart), Clock::duration::zero());
}

TEST(TokenBucket, SaysHowLongUntilTheNextToken) {
  TokenBucket bucket(4, 1);
  bucket.take(kStart);
  EXPECT_EQ(bucket.wait(kStart), 250ms);
  EXPECT_EQ(bucket.wait(kStart + 100ms), 150ms);
  EXPECT_EQ(bucket.wait(kStart + 250ms), Clock::duration::zero());
}

TEST(TokenBucket, WaitingExactlyTheTimeItSaysIsEnough) {
  TokenBucket bucket(3, 1);  // a third of a second does not divide evenly into nanoseconds
  auto now = kStart;
  for (int i = 0; i < 100; ++i) {
    now += bucket.wait(now);
    ASSERT_EQ(bucket.wait(now), Clock::duration::zero()) << "token " << i;
    bucket.take(now);
  }
  EXPECT_LE(now - kStart, 34s);
}

TEST(TokenBucket, SavesNoMoreThanItsBurstWhileIdle) {
  TokenBucket bucket(2, 2);
  bucket.take(kStart);
  bucket.take(kStart);
  auto later = kStart + 1h;
  bucket.take(later);
  bucket.take(later);
  EXPECT_EQ(bucket.wait(later), 500ms);
}

TEST(TokenBucket, KeepsTheAverageRateOverTime) {
  TokenBucket bucket(50, 50);
  int sent = 0;
  // Offer a message every millisecond for ten seconds.
  for (auto now = kStart; now < kStart + 10s; now += 1ms) {
    if (bucket.wait(now) == Clock::duration::zero()) {
      bucket.take(now);
      ++sent;
    }
  }
  EXPECT_EQ(sent, 50 + 50 * 10 - 1);  // the initial burst, then the rate (the last ms is out)
}

TEST(TokenBucket, WithNoRateIsUnlimited) {
  TokenBucket bucket(0, 1);
  EXPECT_TRUE(bucket.unlimited());
  for (int i = 0; i < 1000; ++i) bucket.take(kStart);
  EXPECT_EQ(bucket.wait(kStart), Clock::duration::zero());
}

TEST(TokenBucket, IgnoresAClockThatGoesBackwards) {
  TokenBucket bucket(1, 1);
  bucket.take(kStart);
  EXPECT_EQ(bucket.wait(kStart - 10s), 1s);
  EXPECT_EQ(bucket.wait(kStart + 1s), Clock::duration::zero());
}

TEST(RateLimits, AFractionalRateStillAllowsOneMessage) {
  RateLimits limits(0.5, 0, 0);
  EXPECT_EQ(limits.wait("acme-it", "example.com", kStart), Clock::duration::zero());
  limits.take("acme-it", "example.com", kStart);
  EXPECT_EQ(limits.wait("acme-it", "example.com", kStart), 2s);
}

TEST(RateLimits, HoldsAPartnerAtItsOwnRateWithoutSlowingOthers) {
  RateLimits limits(0, 2, 0);
  limits.take("acme-it", "a.example", kStart);
  limits.take("acme-it", "b.example", kStart);
  EXPECT_EQ(limits.wait("acme-it", "c.example", kStart), 500ms);
  EXPECT_EQ(limits.wait("globex", "a.example", kStart), Clock::duration::zero());
}

TEST(RateLimits, HoldsARecipientDomainAcrossPartners) {
  RateLimits limits(0, 0, 1);
  limits.take("acme-it", "example.com", kStart);
  EXPECT_EQ(limits.wait("globex", "example.com", kStart), 1s);
  EXPECT_EQ(limits.wait("globex", "example.org", kStart), Clock::duration::zero());
}

TEST(RateLimits, TheGlobalLimitCoversEveryPartner) {
  RateLimits limits(1, 100, 100);
  limits.take("acme-it", "example.com", kStart);
  EXPECT_EQ(limits.wait("globex", "example.org", kStart), 1s);
}

TEST(RateLimits, WaitsForTheSlowestOfTheThree) {
  RateLimits limits(10, 4, 2);
  limits.take("acme-it", "example.com", kStart);
  limits.take("acme-it", "example.com", kStart);
  // global: 8 left; partner: 2 left; domain: empty, next in 500 ms.
  EXPECT_EQ(limits.wait("acme-it", "example.com", kStart), 500ms);
  EXPECT_EQ(limits.wait("acme-it", "example.org", kStart), Clock::duration::zero());
}

TEST(RateLimits, AllZeroMeansUnlimited) {
  RateLimits limits(0, 0, 0);
  for (int i = 0; i < 10000; ++i) limits.take("acme-it", "example.com", kStart);
  EXPECT_EQ(limits.wait("acme-it", "example.com", kStart), Clock::duration::zero());
}

// ---- backoff and log throttle ------------------------------------------------------------

TEST(Backoff, DoublesFromTheFirstWaitUpToTheCapWithJitterBelow) {
  Backoff backoff(250ms, 30s);
  // The top of each draw's range doubles; the bottom stays at half the first wait.
  EXPECT_EQ(backoff.next(1.0), 250ms);
  EXPECT_EQ(backoff.next(1.0), 500ms);
  EXPECT_EQ(backoff.next(1.0), 1000ms);
  EXPECT_EQ(backoff.next(0.0), 125ms);
  for (int i = 0; i < 100; ++i) EXPECT_LE(backoff.next(1.0), 30000ms);
  EXPECT_EQ(backoff.next(1.0), 30000ms) << "capped, even after many failures";
  EXPECT_EQ(backoff.failures(), 105);
}

TEST(Backoff, StartsAgainFromTheFirstWaitAfterASuccess) {
  Backoff backoff(250ms, 30s);
  for (int i = 0; i < 10; ++i) backoff.next(0.5);
  backoff.reset();
  EXPECT_EQ(backoff.next(1.0), 250ms);
}

TEST(LogThrottle, SaysTheFirstErrorAtOnceThenOncePerIntervalWithACount) {
  LogThrottle throttle(30s);
  const auto t0 = LogThrottle::Clock::time_point{} + 1h;
  EXPECT_EQ(throttle.occurred(t0), 1u);
  for (int i = 1; i < 100; ++i) EXPECT_EQ(throttle.occurred(t0 + i * 100ms), std::nullopt);
  EXPECT_EQ(throttle.occurred(t0 + 30s), 100u) << "one line stands for every failure since";
  EXPECT_EQ(throttle.occurred(t0 + 31s), std::nullopt);
  EXPECT_EQ(throttle.clear(), 1u) << "one failure was never said";
  EXPECT_EQ(throttle.occurred(t0 + 32s), 1u) << "after a recovery the next failure is news";
}

}  // namespace
}  // namespace channeld::deliver
