// The engagement endpoints and API authorisation against a real PostgreSQL and a real HTTP
// server on an ephemeral 127.0.0.1 port, called with a real httplib::Client: tracking,
// unsubscribe, bounces and complaints, leads, results, and 401/403/400/413 on every /v1/
// endpoint. The kit's link list is the one test double: the daemon's re-render is covered
// end to end in daemon_test.cpp.
#include "store/engagement.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <soci/soci.h>

#include <atomic>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "api/auth.hpp"
#include "api/engagement_routes.hpp"
#include "api/http_server.hpp"
#include "api/tracker.hpp"
#include "render/render.hpp"
#include "store/store.hpp"
#include "support/support.hpp"

namespace channeld::api {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kSecret = "engagement-test-secret-0123456789";
constexpr const char* kBrowser =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36";
const SysTime kSent =
    std::chrono::sys_days{std::chrono::year{2026} / 12 / 1} + std::chrono::hours{9};
const std::string kOffer = "https://acme-it.example/offer?x=1&y=2";

class EngagementApi : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = testing::fresh_database(testing::database_for_this_test("eng_"));
    if (db_.empty()) GTEST_SKIP();
    store_ = std::make_unique<store::Store>(db_, 4);
    store_->migrate();
    engagement_ = std::make_unique<store::Engagement>(*store_);
    for (const auto& [name, role] :
         std::vector<std::pair<std::string, std::string>>{{"admin", "admin"},
                                                          {"finance", "finance"},
                                                          {"acme", "partner:acme-it"},
                                                          {"northwind", "partner:northwind"}}) {
      tokens_[name] = new_token();
      engagement_->add_token(name, token_hash(tokens_[name]), role);
    }
    acme_ = send("q4", "announce", "acme-it", "dana@example.com", "<acme-1@mkt.vendor.example>");
    northwind_ =
        send("q4", "announce", "northwind", "lee@example.com", "<nw-1@mkt.vendor.example>");

    Routes routes([] { return true; }, registry_, [this] { return store_->delivery_counts(); });
    routes.set_token_lookup([this](const std::string& hash) -> std::optional<StoredToken> {
      auto found = engagement_->token_by_hash(hash);
      if (!found) return std::nullopt;
      return StoredToken{found->first, found->second};
    });
    EngagementDeps deps;
    deps.store = engagement_.get();
    deps.settings = [] { return EngagementSettings{kSecret, std::chrono::hours(24 * 90), "USD"}; };
    // The kit: every message has one link, the offer.
    deps.link = [](const store::MessageRef&,
                   const render::ClickTarget& target) -> std::optional<std::string> {
      if (target.link_digest != render::link_digest(kOffer)) return std::nullopt;
      return kOffer;
    };
    deps.partner_name = [](const std::string& id) { return "Partner " + id; };
    deps.clock = [this] { return kSent + std::chrono::hours(days_later_ * 24); };
    routes.add(engagement_routes(std::move(deps)));
    server_ = std::make_unique<HttpServer>("127.0.0.1:0", std::move(routes));
    server_->start();
  }

  void TearDown() override {
    if (server_) server_->stop();
  }

  // A message that went out: enqueued, claimed and recorded as sent at kSent.
  std::string send(const std::string& kit, const std::string& step, const std::string& partner,
                   const std::string& email, const std::string& message_id) {
    store::NewMessage m;
    m.kit_id = kit;
    m.kit_version = 1;
    m.step_id = step;
    m.partner_id = partner;
    m.email = email;
    m.contact_json = json{{"email", email}}.dump();
    m.due_at = kSent - std::chrono::hours(1);
    store_->enqueue({m});
    auto claimed = store_->claim("test-owner", 10, kSent, std::chrono::seconds(60));
    std::vector<store::Outcome> outcomes;
    for (const auto& row : claimed) {
      store::Outcome o;
      o.id = row.id;
      o.kind = store::OutcomeKind::sent;
      o.detail = "250 ok";
      o.message_id = message_id;
      o.rendered_version = 1;
      outcomes.push_back(o);
    }
    store_->record("test-owner", outcomes, kSent);
    return store::idempotency_key(kit, step, partner, email);
  }

  httplib::Client client() {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_connection_timeout(std::chrono::seconds{5});
    c.set_read_timeout(std::chrono::seconds{5});
    return c;
  }
  httplib::Headers bearer(const std::string& who) {
    return {{"Authorization", "Bearer " + tokens_.at(who)}};
  }

  std::int64_t scalar(const std::string& sql) {
    soci::session db("postgresql", db_);
    long long n = 0;
    db << sql, soci::into(n);
    return n;
  }
  std::int64_t engagement_of(const std::string& key, const std::string& column) {
    return scalar("SELECT COALESCE((SELECT " + column +
                  " FROM message_engagement e JOIN outbox o ON o.id = e.outbox_id"
                  " WHERE o.idem_key = '" +
                  key + "'), 0)");
  }

  std::string db_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<store::Engagement> engagement_;
  std::map<std::string, std::string> tokens_;
  std::string acme_, northwind_;
  std::atomic<int> days_later_{1};
  metrics::Registry registry_;
  std::unique_ptr<HttpServer> server_;
};

// ---- tracking -----------------------------------------------------------------------------

TEST_F(EngagementApi, AClickTokenRecordsItsMessageAndRedirectsToTheKitsLink) {
  const auto token = render::click_token(kSecret, acme_, 0, kOffer);
  auto result = client().Get("/c/" + token, {{"User-Agent", kBrowser}});
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 302);
  EXPECT_EQ(result->get_header_value("Location"), kOffer);
  EXPECT_EQ(engagement_of(acme_, "clicks"), 1);
  EXPECT_EQ(engagement_of(acme_, "human_clicks"), 1);
  EXPECT_EQ(engagement_of(northwind_, "clicks"), 0) << "only the token's message";

  auto scanner =
      client().Get("/c/" + token, {{"User-Agent", "Mozilla/5.0 (compatible; Barracuda)"}});
  ASSERT_TRUE(scanner);
  EXPECT_EQ(scanner->status, 302);
  EXPECT_EQ(engagement_of(acme_, "clicks"), 2);
  EXPECT_EQ(engagement_of(acme_, "human_clicks"), 1) << "a link scanner is not a person";
}

// Concurrent clicks and opens share transactions (group commit): none is lost or counted
// twice, whichever group each one lands in, and each answer comes only once it is recorded.
TEST_F(EngagementApi, ConcurrentClicksAndOpensAreEachRecordedExactlyOnce) {
  constexpr int kClients = 24;
  constexpr int kEach = 5;
  const auto click = "/c/" + render::click_token(kSecret, acme_, 0, kOffer);
  const auto open = "/o/" + render::open_token(kSecret, acme_);
  std::atomic<int> answered{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      auto http = client();
      for (int i = 0; i < kEach; ++i) {
        auto result = http.Get(c % 2 == 0 ? click : open, {{"User-Agent", kBrowser}});
        if (result && (result->status == 302 || result->status == 200)) ++answered;
      }
    });
  }
  for (auto& t : clients) t.join();
  ASSERT_EQ(answered.load(), kClients * kEach);
  EXPECT_EQ(engagement_of(acme_, "clicks"), kClients / 2 * kEach);
  EXPECT_EQ(engagement_of(acme_, "human_clicks"), kClients / 2 * kEach);
  EXPECT_EQ(engagement_of(acme_, "opens"), kClients / 2 * kEach);
  EXPECT_EQ(scalar("SELECT sum(hits) FROM delivery_event WHERE kind IN ('clicked', 'opened')"),
            kClients * kEach)
      << "identical hits recorded together are one row with their count";
}

// User agents are whatever a client sends. Hits share one statement, so one agent PostgreSQL's
// text cannot hold (bytes that are not UTF-8, a NUL, a multi-byte character cut at the length
// limit) must cost nothing: it is stored cleaned, and the hits batched with it are recorded.
TEST_F(EngagementApi, AUserAgentThatIsNotUtf8IsStoredCleanedAndCostsNoOtherHit) {
  const auto message = engagement_->message_by_key(acme_);
  ASSERT_TRUE(message);
  const std::string cut = std::string(199, 'a') + "\xc3\xa9";  // 'e-acute' across byte 200
  const std::vector<std::string> agents = {std::string("bad \xff\xfe agent"),
                                           std::string("nul \0 inside", 12), cut, kBrowser};
  std::atomic<int> recorded{0};
  std::promise<void> all;
  for (const auto& agent : agents) {
    engagement_->record(store::Hit{true, message->outbox_id, message->kit_id, message->partner_id,
                                   false, 0, kOffer, agent, kSent},
                        [&](std::exception_ptr error) {
                          if (!error && ++recorded == static_cast<int>(agents.size()))
                            all.set_value();
                        });
  }
  ASSERT_EQ(all.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(engagement_of(acme_, "clicks"), 4);
  soci::session db("postgresql", db_);
  std::vector<std::string> details(8);
  // Two recorder threads may commit two batches in either order: compared as a set.
  db << "SELECT detail FROM delivery_event WHERE kind = 'clicked' ORDER BY detail",
      soci::into(details);
  EXPECT_THAT(details,
              ::testing::UnorderedElementsAre("link 0; bad ?? agent", "link 0; nul ? inside",
                                              "link 0; " + std::string(199, 'a') + "?",
                                              std::string("link 0; ") + kBrowser))
      << "each agent stored cleaned; the cut one without half a character";
}

// The Tracker as the public front uses it: cache misses looked up on another thread, answers
// given once the hit is durable. Each token's link is resolved once, and again after the kits
// change; a HEAD of the link or the pixel is not a click or an open; a forged token is
// answered at once.
TEST_F(EngagementApi, ATrackerResolvesEachLinkOnceUntilTheKitsChange) {
  std::atomic<int> resolved{0};
  std::atomic<std::uint64_t> kits{1};
  EngagementDeps deps;
  deps.store = engagement_.get();
  deps.settings = [] { return EngagementSettings{kSecret, std::chrono::hours(24 * 90), "USD"}; };
  deps.link = [&](const store::MessageRef&, const render::ClickTarget&) {
    ++resolved;
    return std::optional<std::string>(kOffer);
  };
  deps.clock = [] { return kSent + std::chrono::hours(24); };
  deps.generation = [&] { return kits.load(); };
  std::mutex offloaded_mutex;
  std::vector<std::thread> offloaded;
  Tracker tracker(deps, [&](std::function<void()> work) {
    std::lock_guard lock(offloaded_mutex);
    offloaded.emplace_back(std::move(work));
  });
  auto ask = [&](const std::string& method, const std::string& path) {
    Request request;
    request.method = method;
    request.path = path;
    request.headers["user-agent"] = kBrowser;
    auto answered = std::make_shared<std::promise<Response>>();
    auto answer = answered->get_future();
    EXPECT_TRUE(tracker.serve(request, [answered](Response r) { answered->set_value(r); }));
    EXPECT_EQ(answer.wait_for(std::chrono::seconds(30)), std::future_status::ready);
    return answer.get();
  };
  const auto click = "/c/" + render::click_token(kSecret, acme_, 0, kOffer);
  for (int i = 0; i < 3; ++i) {
    const Response r = ask("GET", click);
    EXPECT_EQ(r.status, 302);
    EXPECT_EQ(r.headers.at("Location"), kOffer);
  }
  EXPECT_EQ(resolved.load(), 1) << "the second and third clicks came from the cache";
  kits = 2;
  EXPECT_EQ(ask("GET", click).status, 302);
  EXPECT_EQ(resolved.load(), 2) << "new kits: the link is resolved again";
  EXPECT_EQ(engagement_of(acme_, "clicks"), 4) << "every click recorded, cached or not";
  const Response checked = ask("HEAD", click);
  EXPECT_EQ(checked.status, 302);
  EXPECT_EQ(checked.headers.at("Location"), kOffer);
  EXPECT_EQ(engagement_of(acme_, "clicks"), 4) << "a HEAD is not a click";

  const auto pixel = "/o/" + render::open_token(kSecret, northwind_);
  EXPECT_EQ(ask("HEAD", pixel).status, 200);
  EXPECT_EQ(engagement_of(northwind_, "opens"), 0) << "a HEAD is not an open";
  EXPECT_EQ(ask("GET", pixel).status, 200);
  EXPECT_EQ(engagement_of(northwind_, "opens"), 1);
  EXPECT_EQ(tracker.cached(), 2u);

  std::string forged = click;
  forged[forged.size() - 2] = forged[forged.size() - 2] == 'A' ? 'B' : 'A';
  bool answered_at_once = false;
  Request request;
  request.method = "GET";
  request.path = forged;
  EXPECT_TRUE(tracker.serve(request, [&](Response r) {
    answered_at_once = true;
    EXPECT_EQ(r.status, 404);
  }));
  EXPECT_TRUE(answered_at_once);
  request.path = "/healthz";
  EXPECT_FALSE(tracker.serve(request, [](Response) { ADD_FAILURE() << "not a tracking path"; }));
  std::lock_guard lock(offloaded_mutex);
  for (auto& t : offloaded) t.join();
}

TEST_F(EngagementApi, AnOpenPixelRecordsItsMessageAndFlagsPrivacyProxies) {
  const auto token = render::open_token(kSecret, northwind_);
  auto person = client().Get("/o/" + token, {{"User-Agent", kBrowser}});
  ASSERT_TRUE(person);
  EXPECT_EQ(person->status, 200);
  EXPECT_EQ(person->get_header_value("Content-Type"), "image/gif");
  EXPECT_EQ(person->body.substr(0, 6), "GIF89a");
  auto proxy = client().Get("/o/" + token, {{"User-Agent", "Mozilla/5.0"}});
  ASSERT_TRUE(proxy);
  EXPECT_EQ(proxy->status, 200);
  EXPECT_EQ(engagement_of(northwind_, "opens"), 2);
  EXPECT_EQ(engagement_of(northwind_, "proxy_opens"), 1);
  EXPECT_EQ(engagement_of(acme_, "opens"), 0);
  EXPECT_EQ(scalar("SELECT count(*) FROM message_engagement WHERE first_open_at IS NOT NULL"), 1);
}

TEST_F(EngagementApi, ForgedOrAlteredTrackingTokensGet404AndNoRedirect) {
  const auto good = render::click_token(kSecret, acme_, 0, kOffer);
  std::string altered = good;
  altered[5] = altered[5] == 'A' ? 'B' : 'A';
  const std::vector<std::string> forged = {
      altered,
      render::click_token("someone-elses-secret", acme_, 0, kOffer),
      render::click_token(kSecret, acme_, 0, "https://evil.example/phish"),  // not the kit's
      render::click_token(kSecret, "q4/announce/acme-it/nobody@example.com", 0, kOffer),
      render::open_token(kSecret, acme_),
      render::unsubscribe_token(kSecret, "acme-it", "dana@example.com"),
      "https%3A%2F%2Fevil.example",
      "x"};
  for (const auto& token : forged) {
    auto result = client().Get("/c/" + token, {{"User-Agent", kBrowser}});
    ASSERT_TRUE(result);
    EXPECT_NE(result->status, 302) << token;
    EXPECT_TRUE(result->status == 404 || result->status == 410) << token << " " << result->status;
    EXPECT_FALSE(result->has_header("Location")) << token;
  }
  auto open = client().Get("/o/" + altered);
  ASSERT_TRUE(open);
  EXPECT_EQ(open->status, 404);
  EXPECT_EQ(scalar("SELECT count(*) FROM message_engagement"), 0) << "nothing recorded";
}

// ---- unsubscribe --------------------------------------------------------------------------

TEST_F(EngagementApi, GetShowsAConfirmationFormAndItsPostUnsubscribesForThatPartnerOnly) {
  const auto path = "/u/" + render::unsubscribe_token(kSecret, "acme-it", "dana@example.com");
  auto page = client().Get(path);
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_THAT(page->get_header_value("Content-Type"), HasSubstr("text/html"));
  EXPECT_THAT(page->body, HasSubstr("<form method=\"post\""));
  EXPECT_THAT(page->body, HasSubstr("name=\"List-Unsubscribe\" value=\"One-Click\""));
  EXPECT_THAT(page->body, HasSubstr("Partner acme-it"));
  EXPECT_FALSE(store_->is_suppressed("dana@example.com", "acme-it")) << "a GET never unsubscribes";

  // What the page's form sends: form-encoded, no cookie, no token.
  auto done =
      client().Post(path, "List-Unsubscribe=One-Click", "application/x-www-form-urlencoded");
  ASSERT_TRUE(done);
  EXPECT_EQ(done->status, 200);
  EXPECT_FALSE(done->has_header("Location"));
  EXPECT_FALSE(done->has_header("Set-Cookie"));
  EXPECT_TRUE(store_->is_suppressed("dana@example.com", "acme-it"));
  EXPECT_FALSE(store_->is_suppressed("dana@example.com", "northwind"));
  EXPECT_EQ(engagement_of(acme_, "CAST(unsubscribed_at IS NOT NULL AS integer)"), 1);
}

TEST_F(EngagementApi, AOneClickMultipartPostUnsubscribesAtOnce) {
  const auto path = "/u/" + render::unsubscribe_token(kSecret, "northwind", "lee@example.com");
  httplib::MultipartFormDataItems form = {{"List-Unsubscribe", "One-Click", "", ""}};
  auto done = client().Post(path, form);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->status, 200);
  EXPECT_TRUE(store_->is_suppressed("lee@example.com", "northwind"));
}

TEST_F(EngagementApi, AnUnsubscribeWithoutOneClickOrWithAForgedTokenSuppressesNothing) {
  const auto good = render::unsubscribe_token(kSecret, "acme-it", "dana@example.com");
  auto missing = client().Post("/u/" + good, "confirm=yes", "application/x-www-form-urlencoded");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 400);
  std::string altered = good;
  altered[2] = altered[2] == 'A' ? 'B' : 'A';
  for (const auto& token :
       {altered, render::unsubscribe_token("other-secret", "acme-it", "dana@example.com"),
        render::view_token(kSecret, acme_)}) {
    auto get = client().Get("/u/" + token);
    ASSERT_TRUE(get);
    EXPECT_EQ(get->status, 404);
    auto post = client().Post("/u/" + token, "List-Unsubscribe=One-Click",
                              "application/x-www-form-urlencoded");
    ASSERT_TRUE(post);
    EXPECT_EQ(post->status, 404);
  }
  EXPECT_EQ(scalar("SELECT count(*) FROM suppression"), 0);
}

// ---- authorisation on every /v1/ endpoint -----------------------------------------------

struct Endpoint {
  std::string method, path, body;
};
const std::vector<Endpoint> kEndpoints = {
    {"GET", "/v1/deliveries", ""},
    {"GET", "/v1/results", ""},
    {"POST", "/v1/events", R"({"type": "complaint", "email": "dana@example.com"})"},
    {"POST", "/v1/leads",
     R"({"partner_id": "acme-it", "email": "dana@example.com", "external_id": "crm-1"})"},
};

httplib::Result call(httplib::Client& c, const Endpoint& e, const httplib::Headers& headers) {
  if (e.method == "GET") return c.Get(e.path, headers);
  return c.Post(e.path, headers, e.body, "application/json");
}

TEST_F(EngagementApi, EveryV1EndpointAnswers401WithoutAToken) {
  auto c = client();
  for (const auto& e : kEndpoints) {
    for (const auto& headers :
         {httplib::Headers{}, httplib::Headers{{"Authorization", "Bearer chd_unknown"}},
          httplib::Headers{{"Authorization", "Basic YWRtaW46YWRtaW4="}}}) {
      auto result = call(c, e, headers);
      ASSERT_TRUE(result);
      EXPECT_EQ(result->status, 401) << e.path;
      EXPECT_TRUE(json::parse(result->body).contains("error")) << e.path;
    }
  }
  EXPECT_EQ(scalar("SELECT count(*) FROM suppression"), 0);
  EXPECT_EQ(scalar("SELECT count(*) FROM lead"), 0);
}

TEST_F(EngagementApi, ARevokedTokenIs401) {
  ASSERT_TRUE(engagement_->revoke_token("finance", kSent));
  auto result = client().Get("/v1/results", bearer("finance"));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 401);
}

TEST_F(EngagementApi, RolesThatMayNotGet403AndChangeNothing) {
  auto c = client();
  for (const auto& [who, endpoint] : std::vector<std::pair<std::string, Endpoint>>{
           {"acme", kEndpoints[0]},     // deliveries span partners
           {"finance", kEndpoints[2]},  // events are the relay's (admin)
           {"acme", kEndpoints[2]},
           {"finance", kEndpoints[3]}}) {  // leads come from CRMs
    auto result = call(c, endpoint, bearer(who));
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, 403) << who << " " << endpoint.path;
  }
  EXPECT_EQ(scalar("SELECT count(*) FROM suppression"), 0);
  EXPECT_EQ(scalar("SELECT count(*) FROM lead"), 0);
}

TEST_F(EngagementApi, APartnerTokenNeverReadsOrWritesAnotherPartnersData) {
  auto c = client();
  auto other = c.Get("/v1/results?partner=acme-it", bearer("northwind"));
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 403);
  EXPECT_THAT(other->body, Not(HasSubstr("\"sent\"")));

  auto own = c.Get("/v1/results", bearer("northwind"));
  ASSERT_TRUE(own);
  EXPECT_EQ(own->status, 200);
  auto rows = json::parse(own->body)["results"];
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]["partner_id"], "northwind");
  auto csv = c.Get("/v1/results?format=csv", bearer("northwind"));
  ASSERT_TRUE(csv);
  EXPECT_THAT(csv->body, Not(HasSubstr("acme-it")));

  auto as_other =
      c.Post("/v1/leads", bearer("northwind"),
             R"({"partner_id": "acme-it", "email": "dana@example.com", "external_id": "x"})",
             "application/json");
  ASSERT_TRUE(as_other);
  EXPECT_EQ(as_other->status, 403);
  // Naming another partner's message gives what a message that does not exist gives.
  auto foreign = c.Post("/v1/leads", bearer("northwind"),
                        R"({"message_id": "<acme-1@mkt.vendor.example>", "external_id": "y"})",
                        "application/json");
  ASSERT_TRUE(foreign);
  EXPECT_EQ(foreign->status, 404);
  EXPECT_THAT(foreign->body, Not(HasSubstr("dana")));
  EXPECT_EQ(scalar("SELECT count(*) FROM lead"), 0);
}

TEST_F(EngagementApi, MalformedOrOversizedBodiesGet400Or413WithAJsonError) {
  auto c = client();
  for (
      const auto& [path, body] : std::vector<std::pair<std::string, std::string>>{
          {"/v1/events", "{not json"},
          {"/v1/events", "[1, 2]"},
          {"/v1/events", R"({"type": "bounced", "email": "a@b.example"})"},
          {"/v1/events", R"({"type": "complaint"})"},
          {"/v1/events", R"({"type": "complaint", "email": 42})"},
          {"/v1/leads", "{\"email\": "},
          // Not UTF-8: the parser's message quotes the byte, and must still be a 400.
          {"/v1/leads", "{\"email\": \"\xff\"}"},
          {"/v1/events", "{\"type\": \"complaint\", \"email\": \"\xc3\"}"},
          {"/v1/leads", R"({"partner_id": "acme-it", "email": "dana@example.com"})"},
          {"/v1/leads",
           R"({"partner_id": "acme-it", "email": "d@e.com", "external_id": "c", "stage": "maybe"})"},
          {"/v1/leads",
           R"({"partner_id": "acme-it", "email": "d@e.com", "external_id": "c", "amount": "1.234"})"},
          {"/v1/leads",
           R"({"partner_id": "acme-it", "email": "d@e.com", "external_id": "c", "currency": "EUR"})"}}) {
    auto result = c.Post(path, bearer("admin"), body, "application/json");
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, 400) << path << " " << body << " -> " << result->body;
    EXPECT_EQ(result->get_header_value("Content-Type"), "application/json");
    EXPECT_FALSE(json::parse(result->body).value("error", "").empty());
  }
  auto bad_format = c.Get("/v1/results?format=xml", bearer("admin"));
  ASSERT_TRUE(bad_format);
  EXPECT_EQ(bad_format->status, 400);
  const std::string huge =
      "{\"type\": \"complaint\", \"email\": \"" + std::string(70 * 1024, 'a') + "\"}";
  auto too_big = c.Post("/v1/events", bearer("admin"), huge, "application/json");
  ASSERT_TRUE(too_big);
  EXPECT_EQ(too_big->status, 413);
  EXPECT_EQ(scalar("SELECT count(*) FROM suppression"), 0);
  EXPECT_EQ(scalar("SELECT count(*) FROM lead"), 0);
}

// ---- bounces and complaints -------------------------------------------------------------

TEST_F(EngagementApi, AHardBounceByMessageIdMarksTheMessageAndSuppressesTheAddressEverywhere) {
  auto result =
      client().Post("/v1/events", bearer("admin"),
                    R"({"type": "hard_bounce", "message_id": "<acme-1@mkt.vendor.example>"})",
                    "application/json");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200) << result->body;
  EXPECT_EQ(scalar("SELECT count(*) FROM outbox WHERE state = 'bounced'"), 1);
  EXPECT_TRUE(store_->is_suppressed("dana@example.com", "acme-it"));
  EXPECT_TRUE(store_->is_suppressed("dana@example.com", "northwind"));
  auto unknown =
      client().Post("/v1/events", bearer("admin"),
                    R"({"type": "hard_bounce", "message_id": "<nope@x>"})", "application/json");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
}

TEST_F(EngagementApi, AComplaintByEmailSuppressesAndASoftBounceOnlyCounts) {
  auto c = client();
  auto soft = c.Post("/v1/events", bearer("admin"),
                     R"({"type": "soft_bounce", "email": "Lee@Example.com"})", "application/json");
  ASSERT_TRUE(soft);
  EXPECT_EQ(soft->status, 200);
  EXPECT_FALSE(store_->is_suppressed("lee@example.com", "northwind"));
  EXPECT_EQ(engagement_of(northwind_, "soft_bounces"), 1);
  auto complaint =
      c.Post("/v1/events", bearer("admin"), R"({"type": "complaint", "email": "Lee@Example.com"})",
             "application/json");
  ASSERT_TRUE(complaint);
  EXPECT_EQ(complaint->status, 200);
  EXPECT_TRUE(store_->is_suppressed("lee@example.com", "acme-it"));
  EXPECT_EQ(engagement_of(northwind_, "CAST(complained_at IS NOT NULL AS integer)"), 1);
  EXPECT_EQ(scalar("SELECT count(*) FROM outbox WHERE state = 'sent'"), 2) << "still delivered";
}

// ---- leads and results --------------------------------------------------------------------

TEST_F(EngagementApi, LeadsAreAttributedToTheKitAndPartnerOfTheLastTouchAndUpdatedByExternalId) {
  auto c = client();
  // A person clicked first, so the partner's campaign sourced this lead.
  ASSERT_EQ(
      c.Get("/c/" + render::click_token(kSecret, acme_, 0, kOffer), {{"User-Agent", kBrowser}})
          ->status,
      302);
  auto created =
      c.Post("/v1/leads", bearer("acme"),
             R"({"email": "DANA@example.com", "stage": "opportunity", "amount": "12000.00",
                            "currency": "USD", "external_id": "crm-123"})",
             "application/json");
  ASSERT_TRUE(created);
  EXPECT_EQ(created->status, 201) << created->body;
  auto body = json::parse(created->body);
  EXPECT_EQ(body["partner_id"], "acme-it");
  EXPECT_EQ(body["kit_id"], "q4");
  EXPECT_EQ(body["step_id"], "announce");
  EXPECT_EQ(body["origin"], "partner_sourced");

  auto won = c.Post(
      "/v1/leads", bearer("acme"),
      R"({"email": "dana@example.com", "stage": "won", "amount": "15000.00", "external_id": "crm-123"})",
      "application/json");
  ASSERT_TRUE(won);
  EXPECT_EQ(won->status, 200);
  EXPECT_EQ(json::parse(won->body)["stage"], "won");
  EXPECT_EQ(scalar("SELECT count(*) FROM lead"), 1);

  // Admin reports for northwind, whose contact only received the message.
  auto admin = c.Post("/v1/leads", bearer("admin"),
                      R"({"partner_id": "northwind", "message_id": "<nw-1@mkt.vendor.example>",
                          "amount": "500", "external_id": "nw-7"})",
                      "application/json");
  ASSERT_TRUE(admin);
  EXPECT_EQ(admin->status, 201) << admin->body;
  EXPECT_EQ(json::parse(admin->body)["origin"], "influenced");
  EXPECT_EQ(json::parse(admin->body)["kit_id"], "q4");

  auto results = c.Get("/v1/results?kit=q4", bearer("finance"));
  ASSERT_TRUE(results);
  ASSERT_EQ(results->status, 200);
  auto rows = json::parse(results->body)["results"];
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["partner_id"], "acme-it");
  EXPECT_EQ(rows[0]["sent"], 1);
  EXPECT_EQ(rows[0]["delivered"], 1);
  EXPECT_EQ(rows[0]["unique_human_clicks"], 1);
  EXPECT_EQ(rows[0]["leads"], 1);
  EXPECT_EQ(rows[0]["won"], "15000.00");
  EXPECT_EQ(rows[0]["pipeline"], "0.00");
  EXPECT_EQ(rows[0]["last_sent_at"], "2026-12-01T09:00:00Z");
  EXPECT_EQ(rows[1]["partner_id"], "northwind");
  EXPECT_EQ(rows[1]["pipeline"], "500.00");
  EXPECT_EQ(rows[1]["unique_human_clicks"], 0);

  auto csv = c.Get("/v1/results?kit=q4&partner=acme-it&format=csv", bearer("admin"));
  ASSERT_TRUE(csv);
  EXPECT_EQ(csv->get_header_value("Content-Type"), "text/csv; charset=utf-8");
  EXPECT_EQ(csv->body,
            "kit_id,partner_id,sent,delivered,bounced,unique_opens,unique_human_clicks,"
            "unsubscribes,complaints,leads,pipeline,won,currency,last_sent_at\r\n"
            "q4,acme-it,1,1,0,0,1,0,0,1,0.00,15000.00,USD,2026-12-01T09:00:00Z\r\n");
}

TEST_F(EngagementApi, ALeadReportedAfterTheWindowIsUnattributed) {
  days_later_ = 91;
  auto late = client().Post("/v1/leads", bearer("acme"),
                            R"({"email": "dana@example.com", "external_id": "crm-late"})",
                            "application/json");
  ASSERT_TRUE(late);
  EXPECT_EQ(late->status, 201);
  auto body = json::parse(late->body);
  EXPECT_EQ(body["origin"], "unattributed");
  EXPECT_TRUE(body["kit_id"].is_null());
  auto results = client().Get("/v1/results", bearer("acme"));
  EXPECT_EQ(json::parse(results->body)["results"][0]["leads"], 0);
}

}  // namespace
}  // namespace channeld::api
