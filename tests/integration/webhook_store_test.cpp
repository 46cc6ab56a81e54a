// store/webhooks against a real PostgreSQL: endpoint states, and failed webhook deliveries that
// an operator lists and replays. Rows reach 'failed' the way the dispatcher puts them there:
// enqueue, claim, record.
#include <gtest/gtest.h>
#include <soci/soci.h>

#include "store/engagement.hpp"
#include "store/partner_events.hpp"
#include "store/webhooks.hpp"
#include "support/process.hpp"
#include "support/support.hpp"

namespace channeld::store {
namespace {

using namespace std::chrono_literals;

const SysTime t0 = SysTime{std::chrono::sys_days{std::chrono::year{2026} / 12 / 1}} + 9h;
const std::string kUrl = "https://crm.acme-it.example/hooks/channeld";

class WebhookStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static const std::string database = [] {
      std::string conninfo = testing::fresh_database("webhook_store_" + std::to_string(::getpid()));
      if (!conninfo.empty()) Store(conninfo, 1).migrate();
      return conninfo;
    }();
    if (database.empty()) {
      if (!IsSkipped() && !HasFailure()) testing::missing_server("PostgreSQL (CHANNELD_TEST_PG)");
      return;
    }
    database_ = database;
    db_.open("postgresql", database);
    db_ << "DELETE FROM partner_event; DELETE FROM partner_feed; DELETE FROM delivery_event;"
           " DELETE FROM message_engagement; DELETE FROM outbox; DELETE FROM webhook_endpoint";
    store_ = std::make_unique<Store>(database, 2);
    endpoints_ = std::make_unique<WebhookEndpoints>(*store_);
  }

  // A webhook message for `email` that failed for good, as the dispatcher would record it.
  std::int64_t failed_webhook(const std::string& email, const std::string& partner = "acme-it") {
    NewMessage m;
    m.kit_id = "q4-cloud";
    m.kit_version = 1;
    m.step_id = "crm-sync";
    m.partner_id = partner;
    m.channel = Channel::webhook;
    m.email = email;
    m.contact_json = R"({"email": ")" + email + R"("})";
    m.due_at = t0;
    EXPECT_EQ(store_->enqueue({m}), 1u);
    auto claimed = store_->claim("test-owner", 10, t0, 60s);
    EXPECT_EQ(claimed.size(), 1u);
    if (claimed.empty()) return 0;
    Outcome o;
    o.id = claimed[0].id;
    o.kind = OutcomeKind::failed;
    o.detail = "gave up after 10 attempts: HTTP 500";
    store_->record("test-owner", {o}, t0 + 1min);
    return o.id;
  }

  std::string state_of(std::int64_t id) {
    std::string state;
    long long key = id;
    db_ << "SELECT state FROM outbox WHERE id = :id", soci::use(key), soci::into(state);
    return state;
  }

  // `channeld webhooks ARGS...` against this database; returns (exit code, output).
  std::pair<int, std::string> cli(std::vector<std::string> args) {
    testing::write_file(dir_ / "channeld.toml", "[database]\nurl = \"" + database_ + R"("
[paths]
campaigns = "."
templates = "."
partners = "."
[http]
public_url = "https://mkt.vendor.example"
[smtp]
from_address = "partners@mkt.vendor.example"
[vendor]
name = "Vendor Inc."
postal_address = "1 Vendor Way, Springfield, IL 62701, USA"
)");
    std::vector<std::string> argv = {testing::channeld_binary().string(), "webhooks"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--config", (dir_ / "channeld.toml").string()});
    return testing::run_program(argv);
  }

  testing::TempDir dir_;
  std::string database_;
  soci::session db_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<WebhookEndpoints> endpoints_;
};

TEST_F(WebhookStoreTest, DisabledEndpointStaysDisabledWithItsFirstReason) {
  if (!store_) return;
  EXPECT_FALSE(endpoints_->disabled("acme-it", kUrl));
  endpoints_->disable("acme-it", kUrl, "410 Gone", t0);
  endpoints_->disable("acme-it", kUrl, "gave up after 10 attempts", t0 + 1h);
  EXPECT_TRUE(endpoints_->disabled("acme-it", kUrl));
  auto all = endpoints_->all_disabled();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].partner_id, "acme-it");
  EXPECT_EQ(all[0].reason, "410 Gone");
  EXPECT_EQ(all[0].disabled_at, t0);
}

TEST_F(WebhookStoreTest, ANewUrlInThePartnerFileIsNotDisabled) {
  if (!store_) return;
  endpoints_->disable("acme-it", kUrl, "410 Gone", t0);
  EXPECT_FALSE(endpoints_->disabled("acme-it", "https://crm.acme-it.example/hooks/v2"));
  EXPECT_FALSE(endpoints_->disabled("globex", kUrl));
}

TEST_F(WebhookStoreTest, EnableClearsEveryUrlOfThePartnerOnly) {
  if (!store_) return;
  endpoints_->disable("acme-it", kUrl, "410 Gone", t0);
  endpoints_->disable("acme-it", kUrl + "/old", "410 Gone", t0);
  endpoints_->disable("globex", kUrl, "410 Gone", t0);
  EXPECT_EQ(endpoints_->enable("acme-it"), 2u);
  EXPECT_FALSE(endpoints_->disabled("acme-it", kUrl));
  EXPECT_TRUE(endpoints_->disabled("globex", kUrl));
  EXPECT_EQ(endpoints_->enable("acme-it"), 0u);
}

TEST_F(WebhookStoreTest, ListsAPartnersFailedWebhooksWithTheirLastError) {
  if (!store_) return;
  auto ann = failed_webhook("ann@example.com");
  failed_webhook("bob@example.com", "globex");
  auto failed = endpoints_->failed("acme-it", 50);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].id, ann);
  EXPECT_EQ(failed[0].email, "ann@example.com");
  EXPECT_EQ(failed[0].step_id, "crm-sync");
  EXPECT_EQ(failed[0].attempts, 1);
  EXPECT_EQ(failed[0].last_error, "gave up after 10 attempts: HTTP 500");
  EXPECT_EQ(failed[0].failed_at, t0 + 1min);
}

TEST_F(WebhookStoreTest, ReplayQueuesFailedWebhooksAgainAndEnablesTheEndpoint) {
  if (!store_) return;
  auto ann = failed_webhook("ann@example.com");
  auto bob = failed_webhook("bob@example.com");
  auto other = failed_webhook("cy@example.com", "globex");
  endpoints_->disable("acme-it", kUrl, "gave up", t0);

  EXPECT_EQ(endpoints_->replay("acme-it", std::nullopt, t0 + 2h), 2u);
  EXPECT_EQ(state_of(ann), "queued");
  EXPECT_EQ(state_of(bob), "queued");
  EXPECT_EQ(state_of(other), "failed");
  EXPECT_FALSE(endpoints_->disabled("acme-it", kUrl));
  EXPECT_TRUE(endpoints_->failed("acme-it", 50).empty());

  // The dispatcher can claim them at once, with a fresh attempt count.
  auto claimed = store_->claim("test-owner", 10, t0 + 2h, 60s);
  ASSERT_EQ(claimed.size(), 2u);
  EXPECT_EQ(claimed[0].attempts, 1);
  int replayed_events = 0;
  long long key = ann;
  db_ << "SELECT count(*) FROM delivery_event WHERE outbox_id = :id AND kind = 'replayed'",
      soci::use(key), soci::into(replayed_events);
  EXPECT_EQ(replayed_events, 1);
}

TEST_F(WebhookStoreTest, ReplayOfOneMessageLeavesTheOthersFailed) {
  if (!store_) return;
  auto ann = failed_webhook("ann@example.com");
  auto bob = failed_webhook("bob@example.com");
  EXPECT_EQ(endpoints_->replay("acme-it", ann, t0 + 2h), 1u);
  EXPECT_EQ(state_of(ann), "queued");
  EXPECT_EQ(state_of(bob), "failed");
  // Another partner's row is not replayed through this partner.
  auto other = failed_webhook("cy@example.com", "globex");
  EXPECT_EQ(endpoints_->replay("acme-it", other, t0 + 2h), 0u);
  EXPECT_EQ(state_of(other), "failed");
}

TEST_F(WebhookStoreTest, TheCliListsReplaysAndReportsEndpoints) {
  if (!store_) return;
  auto ann = failed_webhook("ann@example.com");
  endpoints_->disable("acme-it", kUrl, "410 Gone", t0);

  auto [code, out] = cli({"status"});
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("acme-it"), std::string::npos) << out;
  EXPECT_NE(out.find("410 Gone"), std::string::npos) << out;
  EXPECT_NE(out.find("2026-12-01 09:00:00Z"), std::string::npos) << out;

  std::tie(code, out) = cli({"failed", "--partner", "acme-it"});
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find(std::to_string(ann)), std::string::npos) << out;
  EXPECT_NE(out.find("ann@example.com"), std::string::npos) << out;
  EXPECT_NE(out.find("gave up after 10 attempts: HTTP 500"), std::string::npos) << out;

  std::tie(code, out) = cli({"replay", "--partner", "acme-it", "--message", "12x"});
  EXPECT_EQ(code, 2) << out;
  EXPECT_EQ(state_of(ann), "failed");

  std::tie(code, out) = cli({"replay", "--partner", "acme-it"});
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("queued 1 failed webhook"), std::string::npos) << out;
  EXPECT_EQ(state_of(ann), "queued");
  EXPECT_FALSE(endpoints_->disabled("acme-it", kUrl));

  std::tie(code, out) = cli({"failed"});
  EXPECT_EQ(code, 2) << out;  // --partner is required
  std::tie(code, out) = cli({"resend", "--partner", "acme-it"});
  EXPECT_EQ(code, 2) << out;
}

// The partner event feed's queue: facts recorded by Store::record and Engagement queue an event
// only for a partner whose feed wants that type, once per fact; events fail and replay with the
// failed webhook steps.
TEST_F(WebhookStoreTest, SentAndBouncedQueueFeedEventsOnceAndOnlyForPartnersThatWantThem) {
  if (!store_) return;
  PartnerEvents events(*store_);
  events.subscribe({{"acme-it", {"sent", "bounced"}}});
  std::vector<NewMessage> batch;
  for (const auto& [email, partner] :
       std::vector<std::pair<std::string, std::string>>{{"ann@example.com", "acme-it"},
                                                        {"bob@example.com", "acme-it"},
                                                        {"cat@example.com", "quiet"}}) {
    NewMessage m;
    m.kit_id = "q4-cloud";
    m.kit_version = 1;
    m.step_id = "announce";
    m.partner_id = partner;
    m.email = email;
    m.contact_json = R"({"email": ")" + email + R"("})";
    m.due_at = t0;
    batch.push_back(m);
  }
  ASSERT_EQ(store_->enqueue(batch), 3u);
  auto claimed = store_->claim("test-owner", 10, t0, 60s);
  ASSERT_EQ(claimed.size(), 3u);
  std::vector<Outcome> outcomes;
  for (const auto& row : claimed) {
    Outcome o;
    o.id = row.id;
    o.kind = row.email == "bob@example.com" ? OutcomeKind::bounced : OutcomeKind::sent;
    o.detail = o.kind == OutcomeKind::sent ? "250 ok" : "550 no such user";
    o.message_id = "<" + row.email + ">";
    outcomes.push_back(o);
  }
  store_->record("test-owner", outcomes, t0 + 1min);
  auto count = [&](const std::string& where) {
    long long n = 0;
    db_ << "SELECT count(*) FROM partner_event WHERE " + where, soci::into(n);
    return n;
  };
  EXPECT_EQ(count("partner_id = 'quiet'"), 0) << "no feed, no write";
  EXPECT_EQ(count("event_type = 'sent'"), 1);
  EXPECT_EQ(count("event_type = 'bounced'"), 1);

  // The relay reports ann's message bounced later, twice: one more event, not two.
  Engagement engagement(*store_);
  auto ann = engagement.message_by_message_id("<ann@example.com>");
  ASSERT_TRUE(ann.has_value());
  engagement.report(ReportKind::hard_bounce, ann, "", t0 + 1h);
  engagement.report(ReportKind::hard_bounce, ann, "", t0 + 2h);
  EXPECT_EQ(count("event_type = 'bounced'"), 2);
  // Opens are not wanted by this feed: none queued.
  engagement.record_open(*ann, false, "Mozilla/5.0", t0 + 3h);
  EXPECT_EQ(count("event_type = 'opened'"), 0);

  auto pushed = events.claim("feed-owner", 10, t0 + 4h, 60s);
  ASSERT_EQ(pushed.size(), 3u);
  for (const auto& e : pushed) {
    EXPECT_EQ(e.partner_id, "acme-it");
    EXPECT_NE(e.body.find(R"("partner" : "acme-it")"), std::string::npos) << e.body;
    EXPECT_NE(e.body.find(R"("type" : ")" + e.event_type + "\""), std::string::npos) << e.body;
  }
  std::vector<Outcome> results;
  for (const auto& e : pushed) {
    Outcome o;
    o.id = e.id;
    o.kind = e.event_type == "sent" ? OutcomeKind::failed : OutcomeKind::sent;
    o.detail = "endpoint answered 410 Gone";
    results.push_back(o);
  }
  events.record("feed-owner", results, t0 + 4h);
  auto failed = endpoints_->failed("acme-it", 50);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].event, "sent");
  EXPECT_EQ(failed[0].email, "ann@example.com");
  EXPECT_TRUE(endpoints_->failed("quiet", 50).empty());
  WebhookEndpoints::Selection which;
  which.all = false;
  which.events = {failed[0].id};
  EXPECT_EQ(endpoints_->replay("quiet", which, t0 + 5h), 0u) << "another partner's event";
  EXPECT_EQ(endpoints_->replay("acme-it", which, t0 + 5h), 1u);
  EXPECT_EQ(events.claim("feed-owner", 10, t0 + 5h, 60s).size(), 1u);

  events.subscribe({});
  long long feeds = -1;
  db_ << "SELECT count(*) FROM partner_feed", soci::into(feeds);
  EXPECT_EQ(feeds, 0);
}

}  // namespace
}  // namespace channeld::store
