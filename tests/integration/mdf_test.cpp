// MDF end to end: the real channeld binary runs a kit for several partners into an outbox
// folder, claims arrive in the claims folder (good rows, a bad row, duplicates), the daemon
// reconciles them against a real PostgreSQL, and `channeld report mdf` prints what finance gets;
// the running daemon takes claims over the API and serves the same report.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <soci/soci.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <regex>

#include "support/process.hpp"
#include "support/support.hpp"

namespace channeld::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A site whose mail goes to an outbox folder: the kit "cloud" (MDF-eligible) and "plain" (no
// [mdf]), four partners, and the [mdf] program terms.
class MdfSite {
 public:
  explicit MdfSite(const std::string& database) : database_(database) {
    fs::copy(source_dir() / "templates", dir_ / "templates", fs::copy_options::recursive);
    fs::create_directories(dir_ / "claims");
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
[vendor]
name = "Vendor Inc."
postal_address = "1 Vendor Way, Springfield, IL 62701, USA"
[limits]
messages_per_second = 0
per_partner_per_second = 0
[delivery]
scan_interval = "1s"
[mdf]
currency = "USD"
allocation = { platinum = "20000.00", gold = "1000.00", silver = "2500.00", registered = "0" }
gross_margin_rate = 0.30
program_costs = { "2026-Q4" = "45000.00" }
)");
    add_partner("acme-it", "gold", "msp", 3);
    add_partner("northwind", "platinum", "var", 2, "[mdf]\nallocation = \"300.00\"\n");
    add_partner("bluepeak", "silver", "msp", 2);  // outside the kit's audience
    add_kit("cloud", R"([mdf]
eligible = true
coop_ratio = 0.5
max_per_partner = "650.00"
currency = "USD"
claim_window_days = 60
min_delivered = 2
)");
    add_kit("plain", "");
  }

  std::vector<std::string> channeld(std::vector<std::string> args) const {
    std::vector<std::string> argv{channeld_binary().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--config");
    argv.push_back((dir_ / "channeld.toml").string());
    return argv;
  }

  void run_until_idle() const {
    Process daemon(channeld({"--until-idle"}), dir_ / "daemon.log");
    EXPECT_EQ(daemon.wait(), 0) << daemon.output();
  }

  std::string report(const std::string& format = "csv") const {
    auto [code, output] =
        run_program(channeld({"report", "mdf", "--period", "2026-Q4", "--format", format}));
    EXPECT_EQ(code, 0) << output;
    return output;
  }

  std::int64_t count(const std::string& query) const {
    soci::session db("postgresql", database_);
    std::int64_t n = 0;
    db << query, soci::into(n);
    return n;
  }

  const fs::path& dir() const { return dir_.path(); }

 private:
  void add_partner(const std::string& id, const std::string& tier, const std::string& type,
                   int contacts, const std::string& extra = "") {
    write_file(dir_ / "partners" / (id + ".toml"), "id = \"" + id + "\"\nname = \"Partner " + id +
                                                       "\"\ntier = \"" + tier + "\"\ntype = \"" +
                                                       type +
                                                       "\"\nregion = \"NA\"\n"
                                                       "timezone = \"America/Chicago\"\n"
                                                       "status = \"active\"\ncontacts = \"" +
                                                       id + ".csv\"\n" + extra + R"(
[branding]
logo_url = "https://example.com/logo.png"
primary_color = "#0a5fff"
website = "https://example.com"
postal_address = "200 Main St, Austin TX"
sender_name = "Sender"
reply_to = "marketing@example.com"
)");
    std::string csv = "email,first_name,last_name,company\n";
    for (int i = 0; i < contacts; ++i) {
      csv += "contact" + std::to_string(i) + "@" + id + ".example.com,First,Last,Co\n";
    }
    write_file(dir_ / "partners" / (id + ".csv"), csv);
  }

  void add_kit(const std::string& id, const std::string& mdf) {
    write_file(dir_ / "campaigns" / id / "kit.toml", "id = \"" + id + "\"\nname = \"Kit " + id +
                                                         R"("
version = 1
owner = "field-marketing@vendor.example"
expires = 2099-12-31
[audience]
tiers = ["gold", "platinum"]
[schedule]
start = 2020-01-01T00:00:00
window = { days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], from = "00:00", to = "24:00" }
[[steps]]
id = "announce"
channel = "email"
delay = "0d"
subject = "News from {{partner.name}}"
html = "body.html.mustache"
text = "body.txt.mustache"
)" + mdf);
    write_file(dir_ / "campaigns" / id / "body.html.mustache",
               "<p>Hello {{contact.first_name}}</p>");
    write_file(dir_ / "campaigns" / id / "body.txt.mustache", "Hello {{contact.first_name}}\n");
  }

  std::string database_;
  TempDir dir_;
};

constexpr const char* kHeader =
    "claim_id,partner_id,kit_id,period,activity_start,activity_end,amount_claimed,actual_spend,"
    "currency,invoice_ref\n";

// The page finance opens, in a real browser (Debian's chromium, headless): it loads without a
// console message, and every figure it shows (each marked data-figure="<JSON path>") equals the
// JSON report's value there.
void expect_browser_shows_json(const fs::path& dir, const std::string& html,
                               const std::string& json) {
  const fs::path chromium = "/usr/bin/chromium";
  if (!fs::exists(chromium)) {
    missing_server("chromium (scripts/bootstrap.sh installs it)");
    return;
  }
  const fs::path page = dir / "mdf-report.html";
  write_file(page, html);
  auto [code, out] = run_program(
      {chromium.string(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
       "--no-first-run", "--disable-background-networking", "--disable-component-update",
       "--disable-sync", "--user-data-dir=" + (dir / "chromium-profile").string(),
       "--enable-logging=stderr", "--v=0", "--dump-dom", "file://" + page.string()});
  ASSERT_EQ(code, 0) << out;
  EXPECT_THAT(out, ::testing::Not(HasSubstr(":CONSOLE"))) << "console messages: " << out;
  const auto data = nlohmann::json::parse(json);
  static const std::regex kFigure("<span data-figure=\"([^\"]+)\">([^<]*)</span>");
  std::size_t shown = 0;
  for (std::sregex_iterator it(out.begin(), out.end(), kFigure), end; it != end; ++it, ++shown) {
    std::string pointer = "/" + (*it)[1].str();
    std::replace(pointer.begin(), pointer.end(), '.', '/');
    const auto& value = data.at(nlohmann::json::json_pointer(pointer));
    const std::string expected = value.is_string() ? value.get<std::string>()
                                 : value.is_null() ? "n/a"
                                                   : value.dump();
    EXPECT_EQ((*it)[2].str(), expected) << "figure " << pointer;
  }
  EXPECT_GT(shown, 20u) << "the page shows the report's figures: " << out;
}

TEST(Mdf, ClaimsFromTheFolderAreReconciledIntoTheExpectedReportIdempotently) {
  auto db = fresh_database("mdf_report");
  if (db.empty()) return;
  MdfSite site(db);
  site.run_until_idle();  // both kits run: acme-it 3 and northwind 2 messages each
  ASSERT_EQ(site.count("SELECT count(*) FROM outbox WHERE state = 'sent'"), 10);

  write_file(site.dir() / "claims" / "q4-a.csv",
             std::string(kHeader) +
                 "A-1,acme-it,cloud,2026-Q4,2026-12-01,2026-12-15,400.00,1000.00,USD,INV-A1\n"
                 "A-2,acme-it,cloud,2026-Q4,2026-12-01,2026-12-15,300.00,400.00,USD,INV-A2\n"
                 "A-3,acme-it,cloud,2026-Q4,2026-12-01,2026-12-15,40.00,150.00,USD,\n"
                 "N-1,northwind,cloud,2026-Q4,2026-12-01,2026-12-15,500.00,2000.00,USD,INV-N1\n"
                 "N-2,northwind,plain,2026-Q4,2026-12-01,2026-12-15,50.00,100.00,USD,INV-N2\n"
                 "B-1,bluepeak,cloud,2026-Q4,2026-12-01,2026-12-15,100.00,200.00,USD,INV-B1\n"
                 "X-1,ghost,cloud,2026-Q4,2026-12-01,2026-12-15,10.00,20.00,USD,INV-X1\n"
                 "E-1,acme-it,cloud,2026-Q4,2026-12-01,2026-12-15,10.00,20.00,EUR,INV-E1\n"
                 "A-4,acme-it,cloud,2026-Q4,2026-12-01,2026-12-15,\"12,50\",20.00,USD,INV-A4\n"
                 "A-1,acme-it,cloud,2026-Q4,2026-12-01,2026-12-15,400.00,1000.00,USD,INV-A1\n");
  write_file(site.dir() / "claims" / "q4-b.csv",
             std::string(kHeader) +
                 "A-9,acme-it,cloud,2026-Q4,2026-12-01,2026-12-15,10.00,20.00,USD,INV-A1\n");
  site.run_until_idle();

  // Each file is processed once and set aside with its per-row result.
  EXPECT_FALSE(fs::exists(site.dir() / "claims" / "q4-a.csv"));
  ASSERT_TRUE(fs::exists(site.dir() / "claims" / "processed" / "q4-a.csv"));
  const std::string result = read_file(site.dir() / "claims" / "processed" / "q4-a.csv.result.csv");
  EXPECT_THAT(result, HasSubstr("2,A-1,acme-it,added,\n"));
  EXPECT_THAT(result, HasSubstr("10,,,refused,\"amount_claimed: '12,50' is not an amount"));
  EXPECT_THAT(result, HasSubstr("11,A-1,acme-it,refused,duplicate claim_id\n"));
  EXPECT_THAT(read_file(site.dir() / "claims" / "processed" / "q4-b.csv.result.csv"),
              HasSubstr("2,A-9,acme-it,refused,duplicate invoice_ref\n"));
  EXPECT_EQ(site.count("SELECT count(*) FROM mdf_claim"), 8) << "duplicates are not counted";

  const std::string csv = site.report();
  EXPECT_EQ(csv, read_file(source_dir() / "tests/data/mdf/expected-2026-Q4.csv"));

  // Reconciling again on unchanged inputs records nothing and gives the same bytes.
  const std::int64_t records = site.count("SELECT count(*) FROM mdf_decision");
  const std::string json = site.report("json");
  const std::string html = site.report("html");
  site.run_until_idle();
  EXPECT_EQ(site.count("SELECT count(*) FROM mdf_decision"), records);
  EXPECT_EQ(site.report(), csv);
  EXPECT_EQ(site.report("json"), json);
  EXPECT_EQ(site.report("html"), html);

  const auto program = nlohmann::json::parse(json)["program"];
  EXPECT_EQ(program["approved"], "900.00");  // 400 + 200 + 300
  EXPECT_EQ(program["pending"], "40.00");
  EXPECT_EQ(program["program_costs"], "45000.00");
  EXPECT_EQ(program["total_cost"], "45900.00");
  EXPECT_EQ(program["ropi"], "0.00") << "no leads won yet";
  EXPECT_THAT(html, HasSubstr("<svg"));
  EXPECT_THAT(html, ::testing::Not(HasSubstr("<script")));
  expect_browser_shows_json(site.dir(), html, json);

  // A late invoice turns the pending claim into a decision; the history keeps both records.
  write_file(site.dir() / "claims" / "q4-c.csv",
             std::string(kHeader) +
                 "A-3,acme-it,cloud,2026-Q4,2026-12-01,2026-12-15,40.00,150.00,USD,INV-A3\n");
  site.run_until_idle();
  EXPECT_THAT(read_file(site.dir() / "claims" / "processed" / "q4-c.csv.result.csv"),
              HasSubstr("2,A-3,acme-it,invoice supplied,\n"));
  EXPECT_EQ(site.count("SELECT count(*) FROM mdf_decision"), records + 1);
  auto [code, history] =
      run_program(site.channeld({"claims", "show", "A-3", "--partner", "acme-it"}));
  EXPECT_EQ(code, 0) << history;
  EXPECT_THAT(history, HasSubstr("decision 1 of 2 (superseded)"));
  EXPECT_THAT(history, HasSubstr(": pending, approved 0.00"));
  EXPECT_THAT(history, HasSubstr("decision 2 of 2 (current)"));
  EXPECT_THAT(history, HasSubstr(": approved, approved 40.00"));
  EXPECT_THAT(history, HasSubstr("\"fund_used_before\":\"600.00\""));
  EXPECT_THAT(site.report(), HasSubstr("A-3,acme-it,gold,cloud,USD,40.00,150.00,40.00,approved,"));

  auto [missing, why] = run_program(site.channeld({"claims", "show", "Z-9"}));
  EXPECT_EQ(missing, 2);
  EXPECT_THAT(why, HasSubstr("no claim 'Z-9'"));
}

// The running daemon serves the API: a claim posted with a partner token is taken in and
// reconciled like one from the folder, and the report it serves is the CLI's.
TEST(Mdf, TheRunningDaemonTakesClaimsOverTheApiAndServesTheReportTheCliPrints) {
  auto db = fresh_database("mdf_api_daemon");
  if (db.empty()) return;
  MdfSite site(db);
  auto token_for = [&](const std::string& role, const std::string& name) {
    auto [code, output] =
        run_program(site.channeld({"token", "create", "--role", role, "--name", name}));
    EXPECT_EQ(code, 0) << output;
    std::smatch m;
    static const std::regex re("chd_[A-Za-z0-9_-]{43}");
    return std::regex_search(output, m, re) ? m[0].str() : std::string();
  };
  Process daemon(site.channeld({}), site.dir() / "daemon.log");
  int port = 0;
  ASSERT_TRUE(eventually([&] {
    std::smatch m;
    static const std::regex re("listening on port ([0-9]+)");
    const std::string log = daemon.output();
    if (std::regex_search(log, m, re)) port = std::stoi(m[1].str());
    return port > 0;
  })) << daemon.output();
  const std::string partner = token_for("partner:acme-it", "acme"),
                    finance = token_for("finance", "finance");
  ASSERT_TRUE(eventually([&] {
    return site.count("SELECT count(*) FROM outbox WHERE state = 'sent'") == 10;
  })) << daemon.output();

  httplib::Client http("127.0.0.1", port);
  const nlohmann::json claim{{"claim_id", "A-1"},
                             {"partner_id", "acme-it"},
                             {"kit_id", "cloud"},
                             {"period", "2026-Q4"},
                             {"activity_start", "2026-12-01"},
                             {"activity_end", "2026-12-15"},
                             {"amount_claimed", "400.00"},
                             {"actual_spend", "1000.00"},
                             {"currency", "USD"},
                             {"invoice_ref", "INV-A1"}};
  auto posted = http.Post("/v1/claims", {{"Authorization", "Bearer " + partner}}, claim.dump(),
                          "application/json");
  ASSERT_TRUE(posted);
  ASSERT_EQ(posted->status, 200) << posted->body;
  EXPECT_THAT(posted->body, HasSubstr("\"outcome\": \"added\""));
  ASSERT_TRUE(eventually([&] { return site.count("SELECT count(*) FROM mdf_decision") == 1; }))
      << daemon.output();

  for (const std::string format : {"csv", "json", "html"}) {
    auto served = http.Get("/v1/reports/mdf?period=2026-Q4&format=" + format,
                           {{"Authorization", "Bearer " + finance}});
    ASSERT_TRUE(served);
    ASSERT_EQ(served->status, 200) << served->body;
    EXPECT_EQ(served->body, site.report(format)) << format;
  }
  EXPECT_THAT(site.report(),
              HasSubstr("A-1,acme-it,gold,cloud,USD,400.00,1000.00,400.00,approved"));
  auto refused =
      http.Get("/v1/reports/mdf?period=2026-Q4", {{"Authorization", "Bearer " + partner}});
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 403);
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(), 0);
}

}  // namespace
}  // namespace channeld::testing
