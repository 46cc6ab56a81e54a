// The partner event feed end to end: the real channeld binary sends a kit's email (to the
// outbox folder), a recipient opens it, clicks its link and unsubscribes over real HTTP, and the
// partner whose file asks for the feed gets each of those events at its endpoint: a real HTTP
// receiver on 127.0.0.1 (tests/support/webhook_receiver.py) that checks every signature with
// Python's hmac. A partner without the feed gets nothing and costs no feed row.
#include <gtest/gtest.h>
#include <httplib.h>
#include <soci/soci.h>

#include <csignal>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>

#include "support/process.hpp"
#include "support/support.hpp"
#include "support/webhook_receiver.hpp"

namespace channeld::testing {
namespace {

namespace fs = std::filesystem;
constexpr const char* kSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
constexpr const char* kBrowser =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36";
constexpr const char* kOffer = "https://acme-it.example/offer?k=1";

// A config (email to an outbox folder, loopback allowed for webhooks), one email kit with one
// link, and two partners with the same endpoint: "acme-it" with the feed on, "quiet" without.
class FeedSite {
 public:
  FeedSite(const std::string& database, const std::string& url) : database_(database) {
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
state = "state"
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
    for (const std::string id : {"acme-it", "quiet"}) {
      const std::string events =
          id == "acme-it" ? "events = [\"sent\", \"opened\", \"clicked\", \"unsubscribed\"]\n" : "";
      write_file(dir_ / "partners" / (id + ".toml"), "id = \"" + id + R"("
name = "Partner )" + id + R"("
tier = "gold"
type = "msp"
timezone = "America/Chicago"
contacts = ")" + id + R"(.csv"
[webhook]
url = ")" + url + R"("
secret_file = "hook.secret"
)" + events);
      write_file(dir_ / "partners" / (id + ".csv"),
                 "email,first_name,last_name,company\nann@" + id + ".example,Ann,Lee,Co\n");
    }
    write_file(dir_ / "partners" / "hook.secret", std::string(kSecret) + "\n");
    write_file(dir_ / "campaigns" / "k" / "kit.toml", R"(id = "k"
name = "Kit k"
version = 1
owner = "field-marketing@vendor.example"
expires = 2099-12-31
[audience]
[schedule]
start = 2020-01-01T00:00:00
window = { days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], from = "00:00", to = "24:00" }
[[steps]]
id = "announce"
channel = "email"
subject = "{{partner.name}} news"
html = "body.html.mustache"
text = "body.txt.mustache"
)");
    write_file(dir_ / "campaigns" / "k" / "body.html.mustache",
               std::string("<p>Hello {{contact.first_name}}, <a href=\"") + kOffer +
                   "\">see the offer</a></p>");
    write_file(dir_ / "campaigns" / "k" / "body.txt.mustache", "Hello {{contact.first_name}}.\n");
  }

  std::vector<std::string> channeld(std::vector<std::string> args) const {
    std::vector<std::string> argv{channeld_binary().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--config", (dir_ / "channeld.toml").string()});
    return argv;
  }

  const fs::path& dir() const { return dir_.path(); }

  std::int64_t count(const std::string& sql) const {
    soci::session db("postgresql", database_);
    long long n = 0;
    db << sql, soci::into(n);
    return n;
  }

  // The HTML of the one message the outbox folder holds for `partner`.
  std::string html_of(const std::string& partner) const {
    for (const auto& entry : fs::directory_iterator(dir_ / "outbox" / partner))
      if (entry.path().extension() == ".html") return read_file(entry.path());
    return "";
  }

 private:
  std::string database_;
  TempDir dir_;
};

int http_port_from_log(const std::string& log) {
  std::smatch m;
  static const std::regex re("listening on port ([0-9]+)");
  return std::regex_search(log, m, re) ? std::stoi(m[1].str()) : 0;
}

// The path of the first public_url link of that kind ("c", "o", "u") in `html`.
std::string link_path(const std::string& html, const std::string& kind) {
  std::smatch m;
  const std::regex re("https://mkt\\.vendor\\.example(/" + kind + "/[A-Za-z0-9_.-]+)");
  return std::regex_search(html, m, re) ? m[1].str() : std::string();
}

TEST(PartnerFeed, PartnerWithTheFeedGetsSentOpenedClickedAndUnsubscribedSignedAndOthersNothing) {
  auto db = fresh_database("partner_feed_e2e");
  if (db.empty()) return;
  // The first push fails: its retry must carry the same webhook-id.
  WebhookReceiver receiver([] {
    WebhookReceiver::Options o;
    o.secret = kSecret;
    o.answers = {500, 200};
    return o;
  }());
  if (!receiver.available()) return;
  FeedSite site(db, receiver.url());
  ASSERT_EQ(run_program(site.channeld({"migrate"})).first, 0);
  Process daemon(site.channeld({}), site.dir() / "daemon.log");
  ASSERT_TRUE(eventually([&] {
    return site.count("SELECT count(*) FROM outbox WHERE state = 'sent'") == 2;
  })) << daemon.output();
  // The sent event is on its way (or has failed once) before anyone opens the message.
  ASSERT_TRUE(eventually([&] { return !receiver.requests().empty(); })) << daemon.output();
  const int port = http_port_from_log(daemon.output());
  ASSERT_GT(port, 0) << daemon.output();
  httplib::Client http("127.0.0.1", port);

  for (const std::string partner : {"acme-it", "quiet"}) {
    const std::string html = site.html_of(partner);
    const std::string click = link_path(html, "c"), pixel = link_path(html, "o"),
                      unsubscribe = link_path(html, "u");
    ASSERT_FALSE(click.empty() || pixel.empty() || unsubscribe.empty()) << html;
    // A link scanner and a privacy proxy first: counted, never pushed.
    auto scanned = http.Get(click, {{"User-Agent", "Mozilla/5.0 (compatible; Barracuda)"}});
    ASSERT_TRUE(scanned);
    EXPECT_EQ(scanned->status, 302);
    auto proxied = http.Get(pixel, {{"User-Agent", "Mozilla/5.0"}});
    ASSERT_TRUE(proxied);
    // The person: opens twice, clicks the same link twice, unsubscribes.
    for (int i = 0; i < 2; ++i) {
      auto opened = http.Get(pixel, {{"User-Agent", kBrowser}});
      ASSERT_TRUE(opened);
      EXPECT_EQ(opened->status, 200);
      auto clicked = http.Get(click, {{"User-Agent", kBrowser}});
      ASSERT_TRUE(clicked);
      EXPECT_EQ(clicked->status, 302);
      EXPECT_EQ(clicked->get_header_value("Location"), kOffer);
    }
    auto unsubscribed =
        http.Post(unsubscribe, "List-Unsubscribe=One-Click", "application/x-www-form-urlencoded");
    ASSERT_TRUE(unsubscribed);
    EXPECT_EQ(unsubscribed->status, 200);
  }

  // Four events, the first of them twice (500, then 200).
  ASSERT_TRUE(eventually([&] {
    return site.count("SELECT count(*) FROM partner_event WHERE state = 'sent'") == 4;
  })) << daemon.output();
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(), 0) << daemon.output();

  EXPECT_EQ(site.count("SELECT count(*) FROM partner_event WHERE partner_id = 'quiet'"), 0)
      << "a partner without the feed costs no feed row";
  EXPECT_EQ(site.count("SELECT count(*) FROM partner_feed WHERE partner_id = 'quiet'"), 0);
  const auto requests = receiver.requests();
  ASSERT_EQ(requests.size(), 5u) << daemon.output();
  std::map<std::string, nlohmann::json> by_type;
  std::map<std::string, std::set<std::string>> ids_by_type;
  std::set<std::string> message_ids;
  for (const auto& r : requests) {
    EXPECT_TRUE(r.signature_ok) << r.why;
    auto body = nlohmann::json::parse(r.body);
    const std::string type = body.at("type");
    by_type[type] = body;
    ids_by_type[type].insert(r.id);
    EXPECT_EQ(body.at("partner"), "acme-it") << r.body;
    EXPECT_EQ(body.at("kit"), "k");
    EXPECT_EQ(body.at("step"), "announce");
    EXPECT_EQ(body.at("email"), "ann@acme-it.example");
    EXPECT_TRUE(
        std::regex_match(body.at("timestamp").get<std::string>(),
                         std::regex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")))
        << r.body;
    message_ids.insert(body.at("message_id").get<std::string>());
  }
  EXPECT_EQ(by_type.size(), 4u);
  EXPECT_EQ(requests[0].answer, 500);
  EXPECT_EQ(nlohmann::json::parse(requests[0].body).at("type"), "sent");
  int attempts_of_first = 0;
  for (const auto& r : requests) attempts_of_first += r.id == requests[0].id ? 1 : 0;
  EXPECT_EQ(attempts_of_first, 2) << "the retry carries the same webhook-id";
  for (const std::string type : {"sent", "opened", "clicked", "unsubscribed"})
    EXPECT_EQ(ids_by_type[type].size(), 1u) << type;
  std::set<std::string> all_ids;
  for (const auto& [type, ids] : ids_by_type) all_ids.insert(ids.begin(), ids.end());
  EXPECT_EQ(all_ids.size(), 4u) << "each event has its own webhook-id";
  EXPECT_EQ(by_type["clicked"].at("link"), kOffer);
  EXPECT_FALSE(by_type["opened"].contains("link"));
  ASSERT_EQ(message_ids.size(), 1u);
  EXPECT_EQ(message_ids.begin()->front(), '<');
}

// The API token `channeld token create` printed.
std::string token_of(const std::string& output) {
  std::smatch m;
  static const std::regex re("chd_[A-Za-z0-9_-]{43}");
  return std::regex_search(output, m, re) ? m[0].str() : std::string();
}

TEST(WebhooksApi, FailedReplayAndEnableKeepToTheirRolesAndAReplayReachesTheRecoveredEndpointOnce) {
  auto db = fresh_database("webhooks_api_replay");
  if (db.empty()) return;
  // Gone at first: the sent event fails at once and the endpoint is disabled; then it recovers.
  WebhookReceiver receiver([] {
    WebhookReceiver::Options o;
    o.secret = kSecret;
    o.answers = {410, 200};
    return o;
  }());
  if (!receiver.available()) return;
  FeedSite site(db, receiver.url());
  ASSERT_EQ(run_program(site.channeld({"migrate"})).first, 0);
  std::map<std::string, std::string> tokens;
  for (const std::string role : {"admin", "finance", "partner:acme-it", "partner:quiet"}) {
    auto [code, out] = run_program(site.channeld(
        {"token", "create", "--role", role, "--name", role.substr(role.find(':') + 1)}));
    ASSERT_EQ(code, 0) << out;
    tokens[role] = token_of(out);
  }
  auto as = [&](const std::string& role) {
    return httplib::Headers{{"Authorization", "Bearer " + tokens[role]}};
  };
  Process daemon(site.channeld({}), site.dir() / "daemon.log");
  ASSERT_TRUE(eventually([&] {
    return site.count("SELECT count(*) FROM partner_event WHERE state = 'failed'") == 1;
  })) << daemon.output();
  const int port = http_port_from_log(daemon.output());
  ASSERT_GT(port, 0) << daemon.output();
  httplib::Client http("127.0.0.1", port);
  const std::string failed = "/v1/webhooks/failed?partner=acme-it";

  auto anonymous = http.Get(failed);
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  auto finance = http.Get(failed, as("finance"));
  ASSERT_TRUE(finance);
  EXPECT_EQ(finance->status, 403);
  auto other = http.Get(failed, as("partner:quiet"));
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 403);
  EXPECT_EQ(other->body.find("acme-it.example"), std::string::npos) << other->body;
  EXPECT_EQ(other->body.find("410"), std::string::npos) << other->body;
  auto own = http.Get("/v1/webhooks/failed", as("partner:acme-it"));
  ASSERT_TRUE(own);
  ASSERT_EQ(own->status, 200) << own->body;
  auto listed = nlohmann::json::parse(own->body);
  EXPECT_EQ(listed.at("partner"), "acme-it");
  ASSERT_EQ(listed.at("failed").size(), 1u) << own->body;
  EXPECT_EQ(listed["failed"][0].at("kind"), "event");
  EXPECT_EQ(listed["failed"][0].at("event"), "sent");
  EXPECT_EQ(listed["failed"][0].at("email"), "ann@acme-it.example");
  ASSERT_EQ(listed.at("disabled_endpoints").size(), 1u);
  EXPECT_EQ(listed["disabled_endpoints"][0].at("reason"), "410 Gone");
  auto admin_without_partner = http.Get("/v1/webhooks/failed", as("admin"));
  ASSERT_TRUE(admin_without_partner);
  EXPECT_EQ(admin_without_partner->status, 400);

  for (const std::string body :
       {"{not json", "[1]", R"({"events": ["x"]})", R"({"messages": 3})", R"({"partner": 7})"}) {
    auto bad = http.Post("/v1/webhooks/replay", as("partner:acme-it"), body, "application/json");
    ASSERT_TRUE(bad);
    EXPECT_EQ(bad->status, 400) << body;
    EXPECT_TRUE(nlohmann::json::parse(bad->body).contains("error")) << bad->body;
  }
  auto huge = http.Post("/v1/webhooks/replay", as("admin"), std::string(100 * 1024, ' '),
                        "application/json");
  ASSERT_TRUE(huge);
  EXPECT_EQ(huge->status, 413);
  auto wrong = http.Post("/v1/webhooks/replay", as("partner:quiet"), R"({"partner": "acme-it"})",
                         "application/json");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 403);
  auto finance_replay = http.Post("/v1/webhooks/replay", as("finance"), R"({"partner": "acme-it"})",
                                  "application/json");
  ASSERT_TRUE(finance_replay);
  EXPECT_EQ(finance_replay->status, 403);
  auto no_token = http.Post("/v1/webhooks/enable", R"({"partner": "acme-it"})", "application/json");
  ASSERT_TRUE(no_token);
  EXPECT_EQ(no_token->status, 401);
  EXPECT_EQ(site.count("SELECT count(*) FROM partner_event WHERE state = 'failed'"), 1)
      << "refused requests replay nothing";
  EXPECT_EQ(site.count("SELECT count(*) FROM webhook_endpoint"), 1);
  EXPECT_EQ(receiver.requests().size(), 1u);

  const auto id = listed["failed"][0].at("id").get<std::int64_t>();
  auto replayed = http.Post("/v1/webhooks/replay", as("partner:acme-it"),
                            R"({"events": [)" + std::to_string(id) + "]}", "application/json");
  ASSERT_TRUE(replayed);
  ASSERT_EQ(replayed->status, 200) << replayed->body;
  EXPECT_EQ(nlohmann::json::parse(replayed->body).at("queued"), 1);
  ASSERT_TRUE(eventually([&] {
    return site.count("SELECT count(*) FROM partner_event WHERE state = 'sent'") == 1;
  })) << daemon.output();
  auto enabled = http.Post("/v1/webhooks/enable", as("admin"), R"({"partner": "acme-it"})",
                           "application/json");
  ASSERT_TRUE(enabled);
  EXPECT_EQ(enabled->status, 200);
  EXPECT_EQ(nlohmann::json::parse(enabled->body).at("was_disabled"), false)
      << "the replay enabled the endpoint already";
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(), 0) << daemon.output();

  const auto requests = receiver.requests();
  ASSERT_EQ(requests.size(), 2u) << "the replay reached the recovered endpoint exactly once";
  EXPECT_EQ(requests[0].answer, 410);
  EXPECT_EQ(requests[1].answer, 200);
  EXPECT_EQ(requests[0].id, requests[1].id);
  EXPECT_TRUE(requests[1].signature_ok) << requests[1].why;
}

}  // namespace
}  // namespace channeld::testing
