// The webhook connector against a real HTTP receiver on 127.0.0.1
// (tests/support/webhook_receiver.py), which checks every signature with Python's hmac; where
// node and the npm `standardwebhooks` package are installed, the reference verifier checks the
// same requests again. The SSRF tests point the connector at internal addresses with an empty
// allow-list and assert that nothing is connected to.

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "deliver/webhook_connector.hpp"
#include "deliver/webhook_signing.hpp"
#include "support/process.hpp"
#include "support/support.hpp"
#include "support/webhook_receiver.hpp"

namespace channeld::deliver {
namespace {

using namespace std::chrono_literals;
using channeld::testing::WebhookReceiver;

constexpr const char* kSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

WebhookReceiver::Options answering(std::vector<int> answers = {200}, std::string location = "",
                                   std::string retry_after = "") {
  WebhookReceiver::Options o;
  o.secret = kSecret;
  o.answers = std::move(answers);
  o.location = std::move(location);
  o.retry_after = std::move(retry_after);
  return o;
}

WebhookSettings loopback_allowed() {
  WebhookSettings s;
  s.allow = parse_allow_list({"127.0.0.0/8"}, "test");
  s.connect_timeout = 5s;
  s.timeout = 10s;
  return s;
}

WebhookRequest request(std::int64_t id, const std::string& url, const std::string& body = "") {
  WebhookRequest r;
  r.id = id;
  r.url = url;
  r.webhook_id =
      webhook_id("q4-cloud|crm-sync|acme-it|contact" + std::to_string(id) + "@example.com");
  r.key = webhook_key_from_secret(kSecret, "test");
  r.body = body.empty() ? R"({"event":"lead","contact":{"email":"contact)" + std::to_string(id) +
                              R"(@example.com","name":"Zoë \"Z\" O'Neil"}})"
                        : body;
  return r;
}

// Runs the io_context until `connector` has reported every request it was given. A wait that
// sees no event for 30 s fails the test instead of hanging it.
std::vector<WebhookResult> run(boost::asio::io_context& io, WebhookConnector& connector,
                               std::vector<WebhookRequest> requests) {
  std::vector<WebhookResult> results;
  std::size_t expected = requests.size();
  for (auto& r : requests) {
    connector.send(std::move(r),
                   [&results](WebhookResult result) { results.push_back(std::move(result)); });
  }
  io.restart();
  while (results.size() < expected) {
    if (io.run_one_for(30s) == 0) {
      ADD_FAILURE() << "no progress for 30 s with " << results.size() << " of " << expected;
      break;
    }
  }
  return results;
}

WebhookResult run_one(boost::asio::io_context& io, WebhookConnector& connector, WebhookRequest r) {
  auto results = run(io, connector, {std::move(r)});
  return results.empty() ? WebhookResult{} : results.front();
}

// The npm reference verifier's opinion of every request `receiver` logged, or "" when node or
// the package is missing (Python's check then stands alone).
std::string reference_verifier_failures(const WebhookReceiver& receiver) {
  auto dir = testing::source_dir() / "tests/support/webhook_verify";
  if (::access("/usr/bin/node", X_OK) != 0 ||
      !std::filesystem::exists(dir / "node_modules/standardwebhooks")) {
    return "";
  }
  auto [code, output] = testing::run_program(
      {"/usr/bin/node", (dir / "verify.mjs").string(), kSecret, receiver.log().string()});
  return code == 0 ? "" : "exit " + std::to_string(code) + ": " + output;
}

TEST(WebhookConnector, DeliversASignedJsonPostTheReceiverVerifiesIndependently) {
  WebhookReceiver receiver(answering());
  if (!receiver.available()) return;
  boost::asio::io_context io;
  auto connector = make_webhook_connector(io, loopback_allowed());
  WebhookRequest sent = request(7, receiver.url());

  WebhookResult result = run_one(io, *connector, sent);
  EXPECT_EQ(result.id, 7);
  EXPECT_EQ(result.verdict, WebhookVerdict::delivered) << result.detail;
  EXPECT_EQ(result.status, 200);

  auto got = receiver.requests();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].signature_ok) << got[0].why;
  EXPECT_EQ(got[0].id, sent.webhook_id);
  EXPECT_EQ(got[0].body, sent.body);
  EXPECT_EQ(got[0].content_type, "application/json");
  EXPECT_EQ(got[0].path, "/hooks/channeld");
  EXPECT_EQ(reference_verifier_failures(receiver), "");
}

TEST(WebhookConnector, ReceiverThatFailsThreeTimesGetsTheEventOnceItRecovers) {
  WebhookReceiver receiver(answering({500, 500, 500, 200}));
  if (!receiver.available()) return;
  boost::asio::io_context io;
  auto connector = make_webhook_connector(io, loopback_allowed());

  // The dispatcher waits webhook_retry_delay() between attempts; here each retry goes at once.
  std::vector<WebhookVerdict> verdicts;
  for (int attempt = 1; attempt <= 10; ++attempt) {
    WebhookResult result = run_one(io, *connector, request(1, receiver.url()));
    verdicts.push_back(result.verdict);
    if (result.verdict != WebhookVerdict::retry) break;
    EXPECT_EQ(result.status, 500);
    EXPECT_NE(result.detail.find("HTTP 500"), std::string::npos) << result.detail;
    ASSERT_TRUE(webhook_retry_delay(attempt, 0.5).has_value());
  }
  EXPECT_EQ(verdicts,
            (std::vector<WebhookVerdict>{WebhookVerdict::retry, WebhookVerdict::retry,
                                         WebhookVerdict::retry, WebhookVerdict::delivered}));
  auto got = receiver.requests();
  ASSERT_EQ(got.size(), 4u);
  for (const auto& r : got) {
    EXPECT_TRUE(r.signature_ok) << r.why;
    EXPECT_EQ(r.id, got[0].id) << "webhook-id must not change between attempts";
  }
  EXPECT_EQ(got.back().answer, 200);
  EXPECT_EQ(reference_verifier_failures(receiver), "");
}

TEST(WebhookConnector, GoneDisablesTheEndpoint) {
  WebhookReceiver receiver(answering({410}));
  if (!receiver.available()) return;
  boost::asio::io_context io;
  auto connector = make_webhook_connector(io, loopback_allowed());
  WebhookResult result = run_one(io, *connector, request(1, receiver.url()));
  EXPECT_EQ(result.verdict, WebhookVerdict::disable) << result.detail;
  EXPECT_EQ(result.status, 410);
}

TEST(WebhookConnector, HonoursRetryAfterOn503) {
  WebhookReceiver receiver(answering({503}, "", "120"));
  if (!receiver.available()) return;
  boost::asio::io_context io;
  auto connector = make_webhook_connector(io, loopback_allowed());
  WebhookResult result = run_one(io, *connector, request(1, receiver.url()));
  EXPECT_EQ(result.verdict, WebhookVerdict::retry);
  EXPECT_EQ(result.retry_after, std::optional<std::chrono::seconds>(120s));
  EXPECT_EQ(webhook_retry_delay(1, 0.5, result.retry_after), 120s);
}

TEST(WebhookConnector, NeverFollowsARedirectToAPrivateAddress) {
  WebhookReceiver receiver(answering({302}, "http://10.0.0.1/steal"));
  if (!receiver.available()) return;
  boost::asio::io_context io;
  auto connector = make_webhook_connector(io, loopback_allowed());
  WebhookResult result = run_one(io, *connector, request(1, receiver.url()));
  EXPECT_EQ(result.verdict, WebhookVerdict::retry);
  EXPECT_EQ(result.status, 302);
  EXPECT_FALSE(result.address_refused);  // not even tried: the 302 itself is the failure
  EXPECT_EQ(receiver.requests().size(), 1u);
}

TEST(WebhookConnector, NeverFollowsARedirectEvenToAnAllowedAddress) {
  // A followed redirect would show as a request at `target`.
  WebhookReceiver target(answering());
  if (!target.available()) return;
  WebhookReceiver redirecting(answering({307}, target.url("/elsewhere")));
  if (!redirecting.available()) return;
  boost::asio::io_context io;
  auto connector = make_webhook_connector(io, loopback_allowed());
  WebhookResult result = run_one(io, *connector, request(1, redirecting.url()));
  EXPECT_EQ(result.verdict, WebhookVerdict::retry);
  EXPECT_EQ(result.status, 307);
  EXPECT_EQ(redirecting.requests().size(), 1u);
  EXPECT_EQ(target.requests().size(), 0u);
}

// ---- SSRF guard --------------------------------------------------------------------------

TEST(WebhookConnector, RefusesInternalAddressesWhenTheAllowListIsEmpty) {
  WebhookReceiver receiver(answering());
  if (!receiver.available()) return;
  const std::string port = std::to_string(receiver.port());
  boost::asio::io_context io;
  WebhookSettings settings;  // allow = []
  settings.connect_timeout = 5s;
  settings.timeout = 10s;
  auto connector = make_webhook_connector(io, settings);

  // The last three would reach the receiver if the guard let them through.
  const std::vector<std::pair<std::string, std::string>> targets = {
      {"http://10.1.2.3:8080/hook", "private"},
      {"http://169.254.169.254/latest/meta-data/", "cloud metadata"},
      {"http://[::1]:" + port + "/hook", "loopback"},
      {"http://localhost:" + port + "/hook", "loopback"},
      {"http://127.0.0.1:" + port + "/hook", "loopback"},
      {"http://[::ffff:127.0.0.1]:" + port + "/hook", "loopback"},
  };
  std::vector<WebhookRequest> requests;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    requests.push_back(request(static_cast<std::int64_t>(i), targets[i].first));
  }
  auto results = run(io, *connector, std::move(requests));
  ASSERT_EQ(results.size(), targets.size());
  for (const auto& result : results) {
    const auto& [url, kind] = targets[static_cast<std::size_t>(result.id)];
    EXPECT_EQ(result.verdict, WebhookVerdict::retry) << url;
    EXPECT_TRUE(result.address_refused) << url << ": " << result.detail;
    EXPECT_NE(result.detail.find(kind), std::string::npos) << url << ": " << result.detail;
    EXPECT_EQ(result.status, 0) << url;
  }
  EXPECT_EQ(receiver.requests().size(), 0u);
}

TEST(WebhookConnector, AllowListLetsLocalhostThroughOnlyOverTheAllowedFamily) {
  WebhookReceiver receiver(answering());
  if (!receiver.available()) return;
  boost::asio::io_context io;
  // localhost is ::1 and 127.0.0.1; only the latter is allowed (and listening).
  auto connector = make_webhook_connector(io, loopback_allowed());
  WebhookResult result = run_one(
      io, *connector, request(1, "http://localhost:" + std::to_string(receiver.port()) + "/h"));
  EXPECT_EQ(result.verdict, WebhookVerdict::delivered) << result.detail;
  ASSERT_EQ(receiver.requests().size(), 1u);
  EXPECT_TRUE(receiver.requests()[0].signature_ok);
}

TEST(WebhookConnector, SpeaksOnlyHttpAndHttps) {
  boost::asio::io_context io;
  auto connector = make_webhook_connector(io, loopback_allowed());
  for (const char* url : {"file:///etc/passwd", "gopher://127.0.0.1:70/", "ftp://127.0.0.1/"}) {
    WebhookResult result = run_one(io, *connector, request(1, url));
    EXPECT_EQ(result.verdict, WebhookVerdict::retry) << url;
    EXPECT_EQ(result.status, 0) << url;
    EXPECT_NE(result.detail.find("rotocol"), std::string::npos) << url << ": " << result.detail;
  }
}

// ---- timeouts and cancellation -------------------------------------------------------------

// An endpoint on a port that listens and never answers.
std::string silent_url(const testing::SilentListener& silent) {
  return "http://127.0.0.1:" + std::to_string(silent.port()) + "/hook";
}

TEST(WebhookConnector, AnEndpointThatNeverAnswersTimesOutAndIsRetried) {
  testing::SilentListener silent;
  boost::asio::io_context io;
  WebhookSettings settings = loopback_allowed();
  settings.timeout = 1s;
  auto connector = make_webhook_connector(io, settings);
  auto started = std::chrono::steady_clock::now();
  WebhookResult result = run_one(io, *connector, request(1, silent_url(silent)));
  EXPECT_EQ(result.verdict, WebhookVerdict::retry);
  EXPECT_EQ(result.status, 0);
  EXPECT_NE(result.detail.find("imed out"), std::string::npos) << result.detail;
  EXPECT_FALSE(result.abandoned) << "a timeout is the endpoint's failure";
  EXPECT_LT(std::chrono::steady_clock::now() - started, 20s);
}

// A request that could not start before its deadline (the dispatcher's lease on the row would
// run out under it) is given back unsent, and the endpoint never sees it.
TEST(WebhookConnector, ARequestPastItsDeadlineIsAbandonedUnsent) {
  WebhookReceiver receiver(answering());
  if (!receiver.available()) return;
  boost::asio::io_context io;
  auto connector = make_webhook_connector(io, loopback_allowed());
  EXPECT_EQ(connector->parallelism(), 8u);
  EXPECT_EQ(connector->transfer_timeout(), 10s);
  WebhookRequest late = request(1, receiver.url());
  late.deadline = std::chrono::steady_clock::now() - 1s;
  auto results = run(io, *connector, {std::move(late), request(2, receiver.url())});
  ASSERT_EQ(results.size(), 2u);
  std::map<std::int64_t, WebhookResult> by_id;
  for (auto& r : results) by_id[r.id] = r;
  EXPECT_EQ(by_id[1].verdict, WebhookVerdict::retry);
  EXPECT_TRUE(by_id[1].abandoned);
  EXPECT_NE(by_id[1].detail.find("deadline"), std::string::npos) << by_id[1].detail;
  EXPECT_EQ(by_id[2].verdict, WebhookVerdict::delivered) << by_id[2].detail;
  EXPECT_FALSE(by_id[2].abandoned);
  EXPECT_EQ(receiver.requests().size(), 1u) << "the late one never reached the endpoint";
}

TEST(WebhookConnector, CancelAllReportsEveryRequestStillWaiting) {
  testing::SilentListener silent;
  boost::asio::io_context io;
  WebhookSettings settings = loopback_allowed();
  settings.max_connections = 2;  // two running, three waiting
  auto connector = make_webhook_connector(io, settings);
  std::map<std::int64_t, WebhookResult> results;
  for (std::int64_t id = 1; id <= 5; ++id) {
    connector->send(request(id, silent_url(silent)),
                    [&results](WebhookResult r) { results[r.id] = std::move(r); });
  }
  EXPECT_EQ(connector->in_flight(), 5u);
  connector->cancel_all();
  EXPECT_EQ(connector->in_flight(), 0u);
  ASSERT_EQ(results.size(), 5u);
  for (const auto& [id, r] : results) {
    EXPECT_EQ(r.verdict, WebhookVerdict::retry) << id;
    EXPECT_TRUE(r.abandoned) << id << ": a cancelled attempt must not count";
  }
  // Nothing more arrives later, and destroying the connector with transfers cancelled is clean.
  io.restart();
  io.run_for(200ms);
  EXPECT_EQ(results.size(), 5u);
  connector.reset();
}

}  // namespace
}  // namespace channeld::deliver
