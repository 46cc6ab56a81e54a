// deliver's webhook decisions: Standard Webhooks signatures, the retry policy and the SSRF
// guard's address classifier. Pure; no server. (The connector against a real receiver is in
// tests/integration/webhook_test.cpp.)

#include <arpa/inet.h>
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <set>

#include "deliver/address_guard.hpp"
#include "deliver/webhook_connector.hpp"
#include "deliver/webhook_policy.hpp"
#include "deliver/webhook_signing.hpp"
#include "model/model.hpp"

namespace channeld::deliver {
namespace {

using namespace std::chrono_literals;

// ---- signing -----------------------------------------------------------------------------

// The example from the Standard Webhooks reference libraries' test suites
// (standard-webhooks/libraries, javascript/src/index.test.ts and python/tests).
constexpr const char* kSpecSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
constexpr const char* kSpecId = "msg_p5jXN8AQM9LWM0D4loKWxJek";
constexpr std::int64_t kSpecTimestamp = 1614265330;
constexpr const char* kSpecBody = R"({"test": 2432232314})";
constexpr const char* kSpecSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

TEST(WebhookSigning, SignsTheStandardWebhooksReferenceExampleByteForByte) {
  std::string key = webhook_key_from_secret(kSpecSecret, "acme-it.secret");
  EXPECT_EQ(webhook_signature(key, kSpecId, kSpecTimestamp, kSpecBody), kSpecSignature);
}

TEST(WebhookSigning, SignatureChangesWithIdTimestampBodyAndKey) {
  std::string key = webhook_key_from_secret(kSpecSecret, "s");
  std::string other_key = webhook_key_from_secret("whsec_" + std::string(32, 'A'), "s");
  std::set<std::string> signatures = {
      webhook_signature(key, kSpecId, kSpecTimestamp, kSpecBody),
      webhook_signature(key, "msg_other", kSpecTimestamp, kSpecBody),
      webhook_signature(key, kSpecId, kSpecTimestamp + 1, kSpecBody),
      webhook_signature(key, kSpecId, kSpecTimestamp, R"({"test": 2432232315})"),
      webhook_signature(other_key, kSpecId, kSpecTimestamp, kSpecBody)};
  EXPECT_EQ(signatures.size(), 5u);
}

TEST(WebhookSigning, AcceptsASecretFileWithATrailingNewline) {
  EXPECT_EQ(webhook_key_from_secret(std::string(kSpecSecret) + "\n", "s"),
            webhook_key_from_secret(kSpecSecret, "s"));
}

TEST(WebhookSigning, RefusesASecretWithoutTheWhsecPrefixNamingTheFile) {
  try {
    webhook_key_from_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "/p/acme-it.secret");
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_EQ(e.where(), "/p/acme-it.secret");
    EXPECT_NE(std::string(e.what()).find("whsec_"), std::string::npos);
    EXPECT_EQ(std::string(e.what()).find("MfKQ9r8G"), std::string::npos) << "leaks the secret";
  }
}

TEST(WebhookSigning, RefusesASecretThatIsNotBase64) {
  EXPECT_THROW(webhook_key_from_secret("whsec_not*base64!not*base64!not*base64!", "s"), InputError);
  EXPECT_THROW(webhook_key_from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwA", "s"),
               InputError);  // a length no base64 text has
}

TEST(WebhookSigning, RefusesAKeyShorterThanTwentyFourBytes) {
  // 18 bytes.
  EXPECT_THROW(webhook_key_from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZI", "s"), InputError);
  // Exactly 24 bytes is enough.
  EXPECT_EQ(webhook_key_from_secret(kSpecSecret, "s").size(), 24u);
}

TEST(WebhookSigning, Base64DecodeIsStrict) {
  std::string out;
  EXPECT_TRUE(base64_decode("aGVsbG8=", out));
  EXPECT_EQ(out, "hello");
  EXPECT_TRUE(base64_decode("aGVsbG8", out));  // padding is optional
  EXPECT_EQ(out, "hello");
  EXPECT_FALSE(base64_decode("aGVsbG9=", out));  // non-zero trailing bits
  EXPECT_FALSE(base64_decode("aGV sbG8=", out));
  EXPECT_FALSE(base64_decode("aGVsbG8-", out));  // the URL alphabet is not the standard one
}

TEST(WebhookSigning, WebhookIdIsStableForOneMessageAndDiffersBetweenMessages) {
  std::string a = webhook_id("q4-cloud|crm-sync|acme-it|ann@example.com");
  EXPECT_EQ(a, webhook_id("q4-cloud|crm-sync|acme-it|ann@example.com"));
  EXPECT_NE(a, webhook_id("q4-cloud|crm-sync|acme-it|bob@example.com"));
  EXPECT_TRUE(a.starts_with("msg_"));
  EXPECT_EQ(a.size(), 36u);
}

// ---- retry policy ------------------------------------------------------------------------

TEST(WebhookPolicy, TwoHundredsAreDeliveredGoneDisablesAndEverythingElseRetries) {
  EXPECT_EQ(classify_webhook(CURLE_OK, 200), WebhookVerdict::delivered);
  EXPECT_EQ(classify_webhook(CURLE_OK, 204), WebhookVerdict::delivered);
  EXPECT_EQ(classify_webhook(CURLE_OK, 299), WebhookVerdict::delivered);
  EXPECT_EQ(classify_webhook(CURLE_OK, 410), WebhookVerdict::disable);
  for (long status : {301L, 302L, 307L, 400L, 401L, 404L, 429L, 500L, 502L, 503L}) {
    EXPECT_EQ(classify_webhook(CURLE_OK, status), WebhookVerdict::retry) << status;
  }
  EXPECT_EQ(classify_webhook(CURLE_OPERATION_TIMEDOUT, 0), WebhookVerdict::retry);
  EXPECT_EQ(classify_webhook(CURLE_COULDNT_CONNECT, 0), WebhookVerdict::retry);
  // A 200 whose body was cut off is not a delivery.
  EXPECT_EQ(classify_webhook(CURLE_PARTIAL_FILE, 200), WebhookVerdict::retry);
}

TEST(WebhookPolicy, FollowsTheStandardWebhooksScheduleThenGivesUp) {
  const std::chrono::seconds expected[] = {5s, 5min, 30min, 2h, 5h, 10h, 14h, 20h, 24h};
  for (int attempt = 1; attempt <= 9; ++attempt) {
    EXPECT_EQ(webhook_retry_delay(attempt, 0.5), expected[attempt - 1]) << attempt;
  }
  EXPECT_EQ(webhook_retry_delay(10, 0.5), std::nullopt);
  EXPECT_EQ(webhook_retry_delay(0, 0.5), std::nullopt);
}

TEST(WebhookPolicy, JitterSpreadsEachDelayByTenPercent) {
  EXPECT_EQ(webhook_retry_delay(3, 0.0), 27min);
  EXPECT_EQ(webhook_retry_delay(3, 0.999999), 33min);
  EXPECT_EQ(webhook_retry_delay(1, 0.0), 5s);  // 4.5 s rounds to a whole second
}

TEST(WebhookPolicy, RetryAfterLengthensTheDelayButNeverShortensItOrAddsAttempts) {
  EXPECT_EQ(webhook_retry_delay(1, 0.5, 90s), 90s);
  EXPECT_EQ(webhook_retry_delay(1, 0.5, 0s), 5s);
  EXPECT_EQ(webhook_retry_delay(2, 0.5, 72h), 24h);  // capped
  EXPECT_EQ(webhook_retry_delay(10, 0.5, 5s), std::nullopt);
  // A receiver that answers every burst with "Retry-After: 1" still gets the whole schedule,
  // about three days, before its endpoint is disabled.
  std::chrono::seconds total{0};
  for (int attempt = 1; attempt <= 9; ++attempt) total += *webhook_retry_delay(attempt, 0.5, 1s);
  EXPECT_EQ(total, 5s + 5min + 30min + 2h + 5h + 10h + 14h + 20h + 24h);
}

TEST(WebhookPolicy, ReadsRetryAfterAsSecondsOrHttpDateOnlyOn429And503) {
  auto now = std::chrono::system_clock::from_time_t(1445412480);  // Wed, 21 Oct 2015 07:28:00 GMT
  EXPECT_EQ(parse_retry_after(429, "120", now), 120s);
  EXPECT_EQ(parse_retry_after(503, " 7 ", now), 7s);
  EXPECT_EQ(parse_retry_after(503, "Wed, 21 Oct 2015 07:30:00 GMT", now), 120s);
  EXPECT_EQ(parse_retry_after(503, "Wednesday, 21-Oct-15 07:29:00 GMT", now), 60s);
  EXPECT_EQ(parse_retry_after(429, "Wed, 21 Oct 2015 07:00:00 GMT", now), 0s);  // past
  EXPECT_EQ(parse_retry_after(500, "120", now), std::nullopt);
  EXPECT_EQ(parse_retry_after(429, "soon", now), std::nullopt);
  EXPECT_EQ(parse_retry_after(429, "", now), std::nullopt);
  EXPECT_EQ(parse_retry_after(429, "-5", now), std::nullopt);
  // Past 2262 a time_point of nanoseconds overflows; the delay is plain seconds.
  const auto far = parse_retry_after(503, "Fri, 31 Dec 9999 23:59:59 GMT", now);
  ASSERT_TRUE(far.has_value());
  EXPECT_GT(*far, std::chrono::hours(24) * 365 * 7000);
  EXPECT_EQ(webhook_retry_delay(1, 0.5, far), 24h);
}

// ---- SSRF guard --------------------------------------------------------------------------

AddressKind kind_of(const char* text) {
  auto ip = IpAddress::parse(text);
  EXPECT_TRUE(ip.has_value()) << text;
  return ip ? classify_address(*ip) : AddressKind::global;
}

TEST(AddressGuard, ClassifiesEveryKindOfInternalAddress) {
  struct Case {
    const char* address;
    AddressKind kind;
  };
  const Case cases[] = {
      {"127.0.0.1", AddressKind::loopback},
      {"127.255.0.9", AddressKind::loopback},
      {"::1", AddressKind::loopback},
      {"10.1.2.3", AddressKind::private_network},
      {"172.16.0.1", AddressKind::private_network},
      {"172.31.255.255", AddressKind::private_network},
      {"192.168.1.1", AddressKind::private_network},
      {"fc00::1", AddressKind::private_network},
      {"fdab:1234::5", AddressKind::private_network},
      {"100.64.0.1", AddressKind::shared},
      {"100.127.255.254", AddressKind::shared},
      {"169.254.1.1", AddressKind::link_local},
      {"fe80::1", AddressKind::link_local},
      {"febf::1", AddressKind::link_local},
      {"169.254.169.254", AddressKind::cloud_metadata},
      {"fd00:ec2::254", AddressKind::cloud_metadata},
      {"100.100.100.200", AddressKind::cloud_metadata},
      {"224.0.0.1", AddressKind::multicast},
      {"239.255.255.250", AddressKind::multicast},
      {"ff02::1", AddressKind::multicast},
      {"0.0.0.0", AddressKind::unspecified},
      {"::", AddressKind::unspecified},
      {"0.1.2.3", AddressKind::reserved},
      {"255.255.255.255", AddressKind::reserved},
      {"240.0.0.1", AddressKind::reserved},
      {"192.0.2.7", AddressKind::reserved},
      {"2001:db8::1", AddressKind::reserved},
      // IPv4 inside IPv6 is judged by where the packets end up.
      {"::ffff:127.0.0.1", AddressKind::loopback},
      {"::ffff:10.0.0.1", AddressKind::private_network},
      {"::ffff:169.254.169.254", AddressKind::cloud_metadata},
      {"64:ff9b::a00:1", AddressKind::private_network},  // NAT64 of 10.0.0.1
      {"2002:7f00:1::1", AddressKind::loopback},         // 6to4 of 127.0.0.1
      {"::127.0.0.1", AddressKind::reserved},            // IPv4-compatible, deprecated
  };
  for (const auto& c : cases) {
    EXPECT_EQ(to_string(kind_of(c.address)), to_string(c.kind)) << c.address;
  }
}

TEST(AddressGuard, LetsPublicAddressesThrough) {
  for (const char* address : {"8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "169.255.0.1",
                              "2606:4700::1111", "2a00:1450:4001::200e", "64:ff9b::808:808"}) {
    EXPECT_EQ(to_string(kind_of(address)), "global") << address;
    EXPECT_EQ(refusal(*IpAddress::parse(address), {}), std::nullopt) << address;
  }
}

TEST(AddressGuard, RefusesInternalAddressesWithAReason) {
  auto why = refusal(*IpAddress::parse("169.254.169.254"), {});
  ASSERT_TRUE(why.has_value());
  EXPECT_EQ(*why, "169.254.169.254 is a cloud metadata address (not in [webhooks] allow)");
  EXPECT_TRUE(refusal(*IpAddress::parse("10.0.0.5"), {}).has_value());
  EXPECT_TRUE(refusal(*IpAddress::parse("::1"), {}).has_value());
}

TEST(AddressGuard, AllowListOpensExactlyItsRanges) {
  std::vector<Cidr> allow = parse_allow_list({"127.0.0.0/8", "10.20.0.0/16", "fd12::/16"}, "f");
  EXPECT_EQ(refusal(*IpAddress::parse("127.0.0.1"), allow), std::nullopt);
  EXPECT_EQ(refusal(*IpAddress::parse("::ffff:127.0.0.1"), allow), std::nullopt);
  EXPECT_EQ(refusal(*IpAddress::parse("10.20.255.1"), allow), std::nullopt);
  EXPECT_EQ(refusal(*IpAddress::parse("fd12:abcd::1"), allow), std::nullopt);
  EXPECT_TRUE(refusal(*IpAddress::parse("10.21.0.1"), allow).has_value());
  EXPECT_TRUE(refusal(*IpAddress::parse("::1"), allow).has_value());  // not 127/8
  EXPECT_TRUE(refusal(*IpAddress::parse("169.254.169.254"), allow).has_value());
}

TEST(AddressGuard, ParsesRangesAndBareAddresses) {
  auto r = Cidr::parse("10.1.2.3/8");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->base.to_string(), "10.0.0.0");
  EXPECT_EQ(r->prefix, 8);
  auto one = Cidr::parse("192.168.5.5");
  ASSERT_TRUE(one.has_value());
  EXPECT_TRUE(one->contains(*IpAddress::parse("192.168.5.5")));
  EXPECT_FALSE(one->contains(*IpAddress::parse("192.168.5.6")));
  auto all6 = Cidr::parse("::/0");
  ASSERT_TRUE(all6.has_value());
  EXPECT_TRUE(all6->contains(*IpAddress::parse("fe80::1")));
  EXPECT_FALSE(all6->contains(*IpAddress::parse("10.0.0.1")));  // a family of its own
  for (const char* bad :
       {"10.0.0.0/33", "10.0.0/8", "fd00::/129", "10.0.0.0/", "10.0.0.0/x", "localhost", ""}) {
    EXPECT_FALSE(Cidr::parse(bad).has_value()) << bad;
  }
}

TEST(AddressGuard, ParseAllowListNamesTheBadEntry) {
  try {
    parse_allow_list({"127.0.0.0/8", "10.0.0.0/40"}, "channeld.toml:12");
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_EQ(e.where(), "channeld.toml:12");
    EXPECT_NE(std::string(e.what()).find("10.0.0.0/40"), std::string::npos);
  }
}

TEST(AddressGuard, ReadsTheAddressCurlIsAboutToConnectTo) {
  sockaddr_in a4{};
  a4.sin_family = AF_INET;
  ::inet_pton(AF_INET, "10.9.8.7", &a4.sin_addr);
  auto ip = IpAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&a4), sizeof a4);
  ASSERT_TRUE(ip.has_value());
  EXPECT_EQ(ip->to_string(), "10.9.8.7");

  sockaddr_in6 a6{};
  a6.sin6_family = AF_INET6;
  ::inet_pton(AF_INET6, "::ffff:169.254.169.254", &a6.sin6_addr);
  ip = IpAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&a6), sizeof a6);
  ASSERT_TRUE(ip.has_value());
  EXPECT_EQ(to_string(classify_address(*ip)), "cloud-metadata");
}

}  // namespace
}  // namespace channeld::deliver
