// Webhook steps end to end: the real channeld binary plans a kit's webhook step, renders each
// contact's JSON payload and POSTs it to the partner's endpoint, a real HTTP receiver on
// 127.0.0.1 (tests/support/webhook_receiver.py) that checks every signature with Python's hmac.
#include <gtest/gtest.h>
#include <soci/soci.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "support/process.hpp"
#include "support/support.hpp"
#include "support/webhook_receiver.hpp"

namespace channeld::testing {
namespace {

namespace fs = std::filesystem;
constexpr const char* kSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

// A config (email to an outbox folder, loopback allowed for webhooks), one kit with a webhook
// step, a partner whose endpoint is `url` and one without a [webhook].
class WebhookSite {
 public:
  WebhookSite(const std::string& database, const std::string& url) : database_(database) {
    fs::copy(source_dir() / "templates", dir_ / "templates", fs::copy_options::recursive);
    write_file(dir_ / "link.secret", "test-link-secret-0123456789abcdef");
    write_file(dir_ / "channeld.toml", R"([database]
url = ")" + database + R"("
[paths]
campaigns = "campaigns"
templates = "templates"
partners = "partners"
claims = "claims"
outbox = "outbox"
[http]
listen = "127.0.0.1:0"
public_url = "https://mkt.vendor.example"
link_secret_file = "link.secret"
[smtp]
from_address = "partners@mkt.vendor.example"
[webhooks]
allow = ["127.0.0.0/8"]
[vendor]
name = "Vendor Inc."
postal_address = "1 Vendor Way, Springfield, IL 62701, USA"
[limits]
messages_per_second = 0
per_partner_per_second = 0
[delivery]
scan_interval = "1s"
)");
    for (const std::string id : {"acme-it", "plain"}) {
      std::string hook =
          id == "acme-it" ? "[webhook]\nurl = \"" + url + "\"\nsecret_file = \"acme-it.secret\"\n"
                          : "";
      write_file(dir_ / "partners" / (id + ".toml"), "id = \"" + id + R"("
name = "Partner )" + id + R"("
tier = "gold"
type = "msp"
timezone = "America/Chicago"
contacts = ")" + id + R"(.csv"
)" + hook);
      write_file(dir_ / "partners" / (id + ".csv"),
                 "email,first_name,last_name,company\n"
                 "ann@" +
                     id +
                     ".example,Ann,O'Neil,\"Reyes \"\"Dental\"\"\"\n"
                     "bob@" +
                     id + ".example,Bob,Li,Co\n");
    }
    write_file(dir_ / "partners" / "acme-it.secret", std::string(kSecret) + "\n");
    write_file(dir_ / "campaigns" / "crm" / "kit.toml", R"(id = "crm"
name = "CRM sync"
version = 1
owner = "field-marketing@vendor.example"
expires = 2099-12-31
[audience]
[schedule]
start = 2020-01-01T00:00:00
window = { days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], from = "00:00", to = "24:00" }
[[steps]]
id = "crm-sync"
channel = "webhook"
payload = "lead.json.mustache"
)");
    write_file(dir_ / "campaigns" / "crm" / "lead.json.mustache",
               R"({"event": "lead", "partner": "{{partner.id}}", "kit": "{{kit.id}}",
 "contact": {"email": "{{contact.email}}", "company": "{{contact.company}}"}})");
  }

  std::vector<std::string> channeld(std::vector<std::string> args) const {
    std::vector<std::string> argv{channeld_binary().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--config", (dir_ / "channeld.toml").string()});
    return argv;
  }

  std::string run_until_idle() const {
    Process daemon(channeld({"--until-idle"}), dir_ / "daemon.log");
    EXPECT_EQ(daemon.wait(), 0) << daemon.output();
    return daemon.output();
  }

  std::int64_t count(const std::string& sql) const {
    soci::session db("postgresql", database_);
    std::int64_t n = 0;
    db << sql, soci::into(n);
    return n;
  }

 private:
  std::string database_;
  TempDir dir_;
};

TEST(WebhookDaemon, PostsEachContactsSignedPayloadAndRetriesUntilTheEndpointRecovers) {
  auto db = fresh_database("webhook_daemon_recover");
  if (db.empty()) return;
  // Every request fails once (the first two answers go to the first attempt of each contact).
  WebhookReceiver receiver([] {
    WebhookReceiver::Options o;
    o.secret = kSecret;
    o.answers = {500, 500, 200};
    return o;
  }());
  if (!receiver.available()) return;
  WebhookSite site(db, receiver.url());
  std::string log = site.run_until_idle();

  EXPECT_EQ(site.count("SELECT count(*) FROM outbox WHERE channel = 'webhook' AND state = 'sent'"),
            2)
      << log;
  // The partner without a [webhook] gets no webhook rows at all.
  EXPECT_EQ(site.count("SELECT count(*) FROM outbox WHERE partner_id = 'plain'"), 0);
  auto requests = receiver.requests();
  ASSERT_EQ(requests.size(), 4u) << log;
  std::map<std::string, int> attempts_by_id;
  std::set<std::string> emails;
  for (const auto& r : requests) {
    EXPECT_TRUE(r.signature_ok) << r.why;
    ++attempts_by_id[r.id];
    auto body = nlohmann::json::parse(r.body);
    EXPECT_EQ(body["partner"], "acme-it");
    EXPECT_EQ(body["kit"], "crm");
    emails.insert(body["contact"]["email"].get<std::string>());
    if (body["contact"]["email"] == "ann@acme-it.example") {
      EXPECT_EQ(body["contact"]["company"], "Reyes \"Dental\"");
    }
  }
  EXPECT_EQ(emails, (std::set<std::string>{"ann@acme-it.example", "bob@acme-it.example"}));
  // One webhook-id per message, the same on its retry.
  ASSERT_EQ(attempts_by_id.size(), 2u);
  for (const auto& [id, n] : attempts_by_id) EXPECT_EQ(n, 2) << id;
}

TEST(WebhookDaemon, GoneDisablesTheEndpointAndReplaySendsAgain) {
  auto db = fresh_database("webhook_daemon_gone");
  if (db.empty()) return;
  WebhookReceiver receiver([] {
    WebhookReceiver::Options o;
    o.secret = kSecret;
    o.answers = {410, 410, 200};
    return o;
  }());
  if (!receiver.available()) return;
  WebhookSite site(db, receiver.url());
  std::string log = site.run_until_idle();
  EXPECT_EQ(
      site.count("SELECT count(*) FROM outbox WHERE channel = 'webhook' AND state = 'failed'"), 2)
      << log;
  EXPECT_EQ(site.count("SELECT count(*) FROM webhook_endpoint WHERE partner_id = 'acme-it'"), 1);
  EXPECT_NE(log.find("webhook endpoint " + receiver.url() + " disabled: 410 Gone"),
            std::string::npos)
      << log;

  auto [code, out] = run_program(site.channeld({"webhooks", "status"}));
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("410 Gone"), std::string::npos) << out;

  std::tie(code, out) = run_program(site.channeld({"webhooks", "replay", "--partner", "acme-it"}));
  EXPECT_EQ(code, 0) << out;
  log = site.run_until_idle();
  EXPECT_EQ(site.count("SELECT count(*) FROM outbox WHERE channel = 'webhook' AND state = 'sent'"),
            2)
      << log;
  EXPECT_EQ(receiver.requests().size(), 4u);
}

}  // namespace
}  // namespace channeld::testing
