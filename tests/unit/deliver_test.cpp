// deliver: what SMTP outcomes mean, and the token buckets that pace sending. Pure; no server.

#include <gtest/gtest.h>

#include "deliver/backoff.hpp"
#include "deliver/rate_limit.hpp"
#include "deliver/smtp_protocol.hpp"
#include "deliver/verdict.hpp"

namespace channeld::deliver {
namespace {

using namespace std::chrono_literals;
using Clock = TokenBucket::Clock;

// ---- verdicts ----------------------------------------------------------------------------

using smtp::Stage;

struct VerdictCase {
  const char* what;
  Stage stage;
  int code;
  Verdict expected;
};

const VerdictCase kVerdicts[] = {
    {"550 at RCPT TO", Stage::rcpt, 550, Verdict::hard_bounce},
    {"551 at RCPT TO", Stage::rcpt, 551, Verdict::hard_bounce},
    {"553 at RCPT TO", Stage::rcpt, 553, Verdict::hard_bounce},
    {"552 at RCPT TO (RFC 5321: temporary)", Stage::rcpt, 552, Verdict::retry},
    {"450 at RCPT TO (greylisting)", Stage::rcpt, 450, Verdict::retry},
    {"552 at MAIL FROM (too big)", Stage::mail, 552, Verdict::failed},
    {"550 at MAIL FROM (sender refused)", Stage::mail, 550, Verdict::failed},
    {"530 at MAIL FROM (authentication required)", Stage::mail, 530, Verdict::retry},
    {"530 at RCPT TO", Stage::rcpt, 530, Verdict::retry},
    {"554 to the DATA command", Stage::data, 554, Verdict::failed},
    {"554 after the data", Stage::message, 554, Verdict::failed},
    {"451 after the data", Stage::message, 451, Verdict::retry},
    {"421 closing", Stage::mail, 421, Verdict::retry},
    {"535 to AUTH", Stage::auth, 535, Verdict::retry},
    {"504 to AUTH (mechanism)", Stage::auth, 504, Verdict::retry},
    {"554 greeting (no service)", Stage::greeting, 554, Verdict::retry},
    {"550 to EHLO", Stage::hello, 550, Verdict::retry},
    {"454 to STARTTLS", Stage::starttls, 454, Verdict::retry},
    {"connection refused", Stage::connect, 0, Verdict::retry},
    {"no reply after the data", Stage::message, 0, Verdict::retry},
    {"no reply at RCPT", Stage::rcpt, 0, Verdict::retry},
};

TEST(SmtpVerdict, GivesEachOutcomeItsVerdict) {
  for (const auto& c : kVerdicts) {
    EXPECT_EQ(smtp::verdict_for(c.stage, c.code), c.expected)
        << c.what << ": got " << to_string(smtp::verdict_for(c.stage, c.code)) << ", want "
        << to_string(c.expected);
  }
}

TEST(SmtpVerdict, OnlyARefusalAtRcptBouncesTheAddress) {
  for (Stage stage : {Stage::connect, Stage::greeting, Stage::hello, Stage::starttls, Stage::auth,
                      Stage::mail, Stage::data, Stage::message}) {
    for (int code : {0, 421, 450, 500, 550, 551, 553, 554}) {
      EXPECT_NE(smtp::verdict_for(stage, code), Verdict::hard_bounce)
          << smtp::to_string(stage) << " " << code;
    }
  }
}

// ---- the SMTP conversation's pure parts ----------------------------------------------------

TEST(SmtpReply, ParsesOneLineAndSaysHowMuchItTook) {
  std::size_t consumed = 0;
  const std::string input = "250 2.1.0 OK\r\n354 go ahead\r\n";
  auto reply = smtp::parse_reply(input, consumed);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->code, 250);
  EXPECT_EQ(reply->text, "2.1.0 OK");
  EXPECT_EQ(reply->last_line, "250 2.1.0 OK");
  EXPECT_EQ(consumed, 14u);
  // Pipelined replies arrive together; the next one starts where this one ended.
  auto next = smtp::parse_reply(std::string_view(input).substr(consumed), consumed);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->code, 354);
}

TEST(SmtpReply, WaitsForTheLastLineOfAMultiLineReply) {
  std::size_t consumed = 0;
  EXPECT_FALSE(smtp::parse_reply("250-relay.example\r\n250-PIPELINING\r\n", consumed));
  EXPECT_FALSE(smtp::parse_reply("250 OK", consumed));  // no line end yet
  auto reply =
      smtp::parse_reply("250-relay.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n", consumed);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->code, 250);
  EXPECT_EQ(reply->text, "relay.example\nPIPELINING\nSIZE 1000");
  EXPECT_EQ(reply->last_line, "250 SIZE 1000");
}

TEST(SmtpReply, AcceptsABareCodeAndLfLineEnds) {
  std::size_t consumed = 0;
  auto reply = smtp::parse_reply("221\n", consumed);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->code, 221);
  EXPECT_EQ(consumed, 4u);
}

TEST(SmtpReply, CallsAnythingElseAProtocolError) {
  for (std::string bad : {"HTTP/1.1 400 Bad Request\r\n", "25 OK\r\n", "2500 OK\r\n", "999 no\r\n",
                          "250-a\r\n354 mixed codes\r\n", "250_OK\r\n"}) {
    std::size_t consumed = 0;
    auto reply = smtp::parse_reply(bad, consumed);
    ASSERT_TRUE(reply) << bad;
    EXPECT_EQ(reply->code, 0) << bad;
  }
}

TEST(SmtpEhlo, ReadsTheExtensionsAClientUses) {
  std::size_t consumed = 0;
  auto reply = smtp::parse_reply(
      "250-relay.example greets you\r\n250-pipelining\r\n250-SIZE 10240000\r\n"
      "250-STARTTLS\r\n250-AUTH LOGIN PLAIN\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
      consumed);
  ASSERT_TRUE(reply);
  smtp::Extensions x = smtp::parse_ehlo(*reply);
  EXPECT_TRUE(x.pipelining);  // keywords are case-insensitive
  EXPECT_TRUE(x.starttls);
  EXPECT_TRUE(x.auth_plain);
  EXPECT_TRUE(x.auth_login);
  EXPECT_TRUE(x.eight_bit_mime);
  EXPECT_TRUE(x.smtputf8);
  EXPECT_EQ(x.size_limit, std::optional<std::size_t>(10240000));
}

TEST(SmtpEhlo, TakesNothingFromTheGreetingLine) {
  std::size_t consumed = 0;
  auto reply = smtp::parse_reply("250 PIPELINING STARTTLS\r\n", consumed);
  ASSERT_TRUE(reply);
  smtp::Extensions x = smtp::parse_ehlo(*reply);
  EXPECT_FALSE(x.pipelining);
  EXPECT_FALSE(x.starttls);
  EXPECT_FALSE(x.size_limit);
}

TEST(SmtpData, DoublesLeadingDotsAndEndsWithTheTerminator) {
  EXPECT_EQ(smtp::dot_stuff(".a\r\nb\r\n.\r\n..c\r\n"), "..a\r\nb\r\n..\r\n...c\r\n.\r\n");
  EXPECT_EQ(smtp::dot_stuff("no final line end"), "no final line end\r\n.\r\n");
  EXPECT_EQ(smtp::dot_stuff(""), "\r\n.\r\n");
  EXPECT_EQ(smtp::dot_stuff("a.b\r\n"), "a.b\r\n.\r\n");  // only dots that start a line
}

TEST(SmtpMail, AddsOnlyTheParametersTheServerOffersAndTheMessageNeeds) {
  smtp::Extensions none;
  EXPECT_EQ(smtp::mail_command("b@x.example", 1234, true, true, none),
            "MAIL FROM:<b@x.example>\r\n");
  smtp::Extensions all;
  all.size_limit = 0;
  all.eight_bit_mime = true;
  all.smtputf8 = true;
  EXPECT_EQ(smtp::mail_command("b@x.example", 1234, true, true, all),
            "MAIL FROM:<b@x.example> SIZE=1234 BODY=8BITMIME SMTPUTF8\r\n");
  EXPECT_EQ(smtp::mail_command("b@x.example", 1234, false, false, all),
            "MAIL FROM:<b@x.example> SIZE=1234\r\n");
}

TEST(SmtpUrl, FindsHostPortTlsAndHeloDomain) {
  auto plain = smtp::parse_url("smtp://relay.example");
  EXPECT_EQ(plain.host, "relay.example");
  EXPECT_EQ(plain.port, "25");
  EXPECT_FALSE(plain.implicit_tls);
  auto tls = smtp::parse_url("smtps://relay.example:2465/mkt.vendor.example");
  EXPECT_EQ(tls.port, "2465");
  EXPECT_TRUE(tls.implicit_tls);
  EXPECT_EQ(tls.helo_domain, "mkt.vendor.example");
  EXPECT_EQ(smtp::parse_url("smtps://relay.example").port, "465");
  auto v6 = smtp::parse_url("smtp://[::1]:2525");
  EXPECT_EQ(v6.host, "::1");
  EXPECT_EQ(v6.port, "2525");
  EXPECT_THROW(smtp::parse_url("http://relay.example"), std::invalid_argument);
  EXPECT_THROW(smtp::parse_url("smtp://:25"), std::invalid_argument);
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
