// End-to-end: the real channeld binary against a real PostgreSQL cluster and a real SMTP server
// on 127.0.0.1. Each test builds a site (config, partners, contacts, kits) in a temp folder and
// runs the daemon as a user would.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <soci/soci.h>

#include <algorithm>
#include <cstdlib>
#include <future>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "support/process.hpp"
#include "support/smtp_server.hpp"
#include "support/support.hpp"

namespace channeld::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

// ---- reading what arrived ---------------------------------------------------------------

struct Mail {
  std::map<std::string, std::string> headers;  // lower-cased names, unfolded values
  std::string raw;
  std::string decoded;  // every part's body, quoted-printable decoded
};

std::string decode_qp(const std::string& in) {
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '=' && i + 1 < in.size() && (in[i + 1] == '\r' || in[i + 1] == '\n')) {
      i += in[i + 1] == '\r' ? 2 : 1;  // soft line break
    } else if (in[i] == '=' && i + 2 < in.size() && std::isxdigit(in[i + 1]) &&
               std::isxdigit(in[i + 2])) {
      out += static_cast<char>(std::stoi(in.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += in[i];
    }
  }
  return out;
}

Mail parse_mail(const std::string& raw) {
  Mail m;
  m.raw = raw;
  std::size_t end = raw.find("\r\n\r\n");
  if (end == std::string::npos) end = raw.find("\n\n");
  std::istringstream head(raw.substr(0, end));
  std::string line, name;
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      m.headers[name] += line.substr(1);
      continue;
    }
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(), ::tolower);
    m.headers[name] = line.substr(colon + 2);
  }
  m.decoded = decode_qp(raw.substr(end == std::string::npos ? raw.size() : end));
  return m;
}

std::vector<Mail> mails(const SmtpTestServer& server) {
  std::vector<Mail> out;
  for (const auto& raw : server.messages()) out.push_back(parse_mail(raw));
  return out;
}

// ---- a site: config, partners, kits in a temp folder -------------------------------------

struct PartnerSpec {
  PartnerSpec(std::string id_, std::string tier_, std::string type_,
              std::string timezone_ = "America/Chicago", int contacts_ = 3)
      : id(std::move(id_)),
        tier(std::move(tier_)),
        type(std::move(type_)),
        timezone(std::move(timezone_)),
        contacts(contacts_) {}
  std::string id, tier, type, timezone;
  int contacts;
  std::string extra_toml;
};

class Site {
 public:
  // `lease` is short where a test restarts after kill -9 (the restart waits for it to expire).
  Site(const std::string& database, int smtp_port, const std::string& delivery_toml = "",
       const std::string& lease = "30s")
      : database_(database) {
    fs::copy(source_dir() / "templates", dir_ / "templates", fs::copy_options::recursive);
    fs::create_directories(dir_ / "campaigns");
    fs::create_directories(dir_ / "partners");
    write_file(dir_ / "link.secret", "test-link-secret-0123456789abcdef");
    write_file(dir_ / "channeld.toml", R"([database]
url = ")" + database + R"("
[paths]
campaigns = "campaigns"
templates = "templates"
partners = "partners"
claims = "claims"
state = "state"
[http]
listen = "127.0.0.1:0"
public_url = "https://mkt.vendor.example"
link_secret_file = "link.secret"
[smtp]
url = "smtp://127.0.0.1:)" + std::to_string(smtp_port) +
                                           R"("
from_address = "partners@mkt.vendor.example"
max_connections = 8
timeout = "3s"
[vendor]
name = "Vendor Inc."
postal_address = "1 Vendor Way, Springfield, IL 62701, USA"
[limits]
messages_per_second = 0
per_partner_per_second = 0
[delivery]
lease = ")" + lease + R"("
backoff_base = "1s"
backoff_max = "2s"
scan_interval = "1s"
)" + delivery_toml);
  }

  fs::path config() const { return dir_ / "channeld.toml"; }
  const fs::path& dir() const { return dir_.path(); }

  static std::string email(const std::string& partner, int i) {
    return "contact" + std::to_string(i) + "@" + partner + ".example.com";
  }

  void add_partner(const PartnerSpec& p) {
    write_file(dir_ / "partners" / (p.id + ".toml"), R"(id = ")" + p.id + R"("
name = "Partner )" + p.id + R"("
tier = ")" + p.tier + R"("
type = ")" + p.type + R"("
region = "NA"
timezone = ")" + p.timezone + R"("
status = "active"
contacts = ")" + p.id + R"(.csv"
)" + p.extra_toml + R"(
[branding]
logo_url = "https://)" + p.id + R"(.example/logo.png"
primary_color = "#0a5fff"
website = "https://)" + p.id + R"(.example"
postal_address = "200 Main St, Austin TX, )" + p.id + R"( office"
sender_name = "Sender )" + p.id + R"("
reply_to = "marketing@)" + p.id + R"(.example"
)");
    std::string csv = "email,first_name,last_name,company,industry\n";
    for (int i = 0; i < p.contacts; ++i)
      csv += email(p.id, i) + ",First" + std::to_string(i) + ",Last,Co " + p.id + ",retail\n";
    write_file(dir_ / "partners" / (p.id + ".csv"), csv);
  }

  // A one-step email kit, due since long ago, sending all day every day.
  void add_kit(const std::string& id, const std::string& audience, int version = 1,
               const std::string& html =
                   "<p>Hello {{contact.first_name}}, from "
                   "{{partner.name}} ({{partner.branding.website}})</p>") {
    write_file(dir_ / "campaigns" / id / "kit.toml", R"(id = ")" + id + R"("
name = "Kit )" + id + R"("
version = )" + std::to_string(version) + R"(
owner = "field-marketing@vendor.example"
expires = 2099-12-31

[audience]
)" + audience + R"(

[schedule]
start = 2020-01-01T00:00:00
window = { days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], from = "00:00", to = "24:00" }

[[steps]]
id = "announce"
channel = "email"
delay = "0d"
subject = "{{partner.name}} and {{vendor.name}}: kit )" + id +
                                                         R"("
html = "body.html.mustache"
text = "body.txt.mustache"
)");
    write_file(dir_ / "campaigns" / id / "body.html.mustache", html);
    write_file(dir_ / "campaigns" / id / "body.txt.mustache",
               "Hello {{contact.first_name}}, from {{partner.name}}.\n");
  }

  std::vector<std::string> channeld(std::vector<std::string> args) const {
    std::vector<std::string> argv{channeld_binary().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--config");
    argv.push_back(config().string());
    return argv;
  }

  // Runs the daemon until nothing is due; returns its log.
  std::string run_until_idle() const {
    Process daemon(channeld({"--until-idle"}), dir_ / "daemon.log");
    int code = daemon.wait();
    EXPECT_EQ(code, 0) << daemon.output();
    return daemon.output();
  }

  // Applies the schema, so a test can watch the outbox while a daemon starts.
  void migrate() const { ASSERT_EQ(run_program(channeld({"migrate"})).first, 0); }

  std::int64_t count(const std::string& where) const {
    soci::session db("postgresql", database_);
    std::int64_t n = 0;
    db << "SELECT count(*) FROM outbox WHERE " + where, soci::into(n);
    return n;
  }

 private:
  std::string database_;
  TempDir dir_;
};

const char* kGoldPlatinumMspVar = R"(tiers = ["gold", "platinum"]
types = ["msp", "var"])";

// ---- tests ------------------------------------------------------------------------------

TEST(Daemon, SendsEachEligiblePartnerItsOwnCoBrandedMailAndNothingElse) {
  auto db = fresh_database("daemon_cobrand");
  if (db.empty()) return;
  SmtpTestServer smtp;
  Site site(db, smtp.port());
  site.add_partner({"acme-it", "gold", "msp", "America/Chicago", 3});
  site.add_partner({"northwind", "platinum", "var", "Europe/Berlin", 2});
  site.add_partner({"bluepeak", "silver", "msp", "America/Denver", 2});  // tier not in audience
  site.add_partner({"contoso-si", "gold", "si", "Asia/Tokyo", 2});       // type not in audience
  write_file(site.dir() / "partners" / "suppressions.csv",
             "email,partner_id,reason\n" + Site::email("acme-it", 1) + ",acme-it,unsubscribed\n");
  site.add_kit("cloud", kGoldPlatinumMspVar);

  const std::string output = site.run_until_idle();
  // The summary's rate counts this run's sends, timed in the process (sent_at has seconds).
  EXPECT_THAT(output, HasSubstr("This run sent 4 messages in ")) << output;

  auto got = mails(smtp);
  std::set<std::string> recipients;
  for (const auto& m : got) recipients.insert(m.headers.at("to"));
  ASSERT_EQ(got.size(), 4u) << "acme-it 0 and 2, northwind 0 and 1";
  for (const auto& m : got) {
    const std::string to = m.headers.at("to");
    const std::string partner = to.find("acme-it") != std::string::npos ? "acme-it" : "northwind";
    SCOPED_TRACE(to);
    EXPECT_THAT(m.headers.at("from"), HasSubstr("Sender " + partner));
    EXPECT_THAT(m.headers.at("from"), HasSubstr("<partners@mkt.vendor.example>"));
    EXPECT_EQ(m.headers.at("reply-to"), "marketing@" + partner + ".example");
    EXPECT_EQ(m.headers.at("subject"), "Partner " + partner + " and Vendor Inc.: kit cloud");
    EXPECT_THAT(m.headers.at("list-unsubscribe"), HasSubstr("https://mkt.vendor.example/u/"));
    EXPECT_EQ(m.headers.at("list-unsubscribe-post"), "List-Unsubscribe=One-Click");
    EXPECT_THAT(m.headers.at("message-id"), HasSubstr("@mkt.vendor.example>"));
    EXPECT_THAT(m.headers.at("content-type"), HasSubstr("multipart/alternative"));
    EXPECT_THAT(m.decoded, HasSubstr("from Partner " + partner + " (https://" + partner));
    EXPECT_THAT(m.decoded, HasSubstr("https://" + partner + ".example/logo.png"));
    EXPECT_THAT(m.decoded, HasSubstr("200 Main St, Austin TX, " + partner + " office"));
    const std::string other = partner == "acme-it" ? "northwind" : "acme-it";
    EXPECT_THAT(m.decoded, Not(HasSubstr(other)));
  }
  EXPECT_EQ(recipients.count(Site::email("acme-it", 1)), 0u) << "suppressed contact";
  for (const auto& r : recipients) {
    EXPECT_THAT(r, Not(HasSubstr("bluepeak")));
    EXPECT_THAT(r, Not(HasSubstr("contoso-si")));
  }
  EXPECT_EQ(site.count("state = 'suppressed'"), 1);
  EXPECT_EQ(site.count("state = 'sent'"), 4);
}

TEST(Daemon, RefusesBrokenKitsByNameWhileAGoodKitKeepsSending) {
  auto db = fresh_database("daemon_broken_kits");
  if (db.empty()) return;
  SmtpTestServer smtp;
  Site site(db, smtp.port());
  site.add_partner({"acme-it", "gold", "msp", "America/Chicago", 2});
  site.add_partner({"northwind", "gold", "msp", "Europe/Berlin", 2});
  // northwind's contacts lack the `segment` column one kit uses.
  write_file(site.dir() / "partners" / "acme-it.csv",
             "email,first_name,last_name,company,segment\n" + Site::email("acme-it", 0) +
                 ",A,B,C,smb\n" + Site::email("acme-it", 1) + ",A,B,C,smb\n");
  site.add_kit("good", "");
  site.add_kit("bad-toml", "");
  write_file(site.dir() / "campaigns" / "bad-toml" / "kit.toml", "id = \"bad-toml\"\nname = \n");
  site.add_kit("missing-template", "");
  fs::remove(site.dir() / "campaigns" / "missing-template" / "body.txt.mustache");
  site.add_kit("missing-variable", "", 1, "<p>{{contact.segment}}</p>");
  // Half-copied: kit.toml arrived, its templates did not yet.
  site.add_kit("half-copied", "");
  fs::remove(site.dir() / "campaigns" / "half-copied" / "body.html.mustache");
  fs::remove(site.dir() / "campaigns" / "half-copied" / "body.txt.mustache");

  auto log = site.run_until_idle();

  EXPECT_THAT(log, HasSubstr("kit refused"));
  auto [code, kits] = run_program(site.channeld({"kits"}));
  ASSERT_EQ(code, 0) << kits;
  auto line = [&](const std::string& id) {
    std::smatch m;
    std::regex re("(^|\n)(" + id + " [^\n]*)");
    return std::regex_search(kits, m, re) ? m[2].str() : std::string("<no line for " + id + ">");
  };
  EXPECT_THAT(line("good"), HasSubstr("live"));
  EXPECT_THAT(line("bad-toml"), HasSubstr("refused"));
  EXPECT_THAT(line("bad-toml"), HasSubstr("kit.toml:2"));
  EXPECT_THAT(line("missing-template"), HasSubstr("refused"));
  EXPECT_THAT(line("missing-template"), HasSubstr("body.txt.mustache"));
  // Only northwind's CSV lacks the column: only northwind is held back from that kit.
  EXPECT_THAT(line("missing-variable"), HasSubstr("live"));
  EXPECT_THAT(line("missing-variable"), HasSubstr("partner northwind held back"));
  EXPECT_THAT(line("missing-variable"), HasSubstr("contact.segment"));
  EXPECT_THAT(line("missing-variable"), Not(HasSubstr("acme-it")));
  EXPECT_THAT(line("half-copied"), HasSubstr("refused"));
  EXPECT_THAT(line("half-copied"), HasSubstr("body.html.mustache"));

  auto got = mails(smtp);
  EXPECT_EQ(got.size(), 6u) << "kit good to all four, missing-variable to acme-it's two";
  for (const auto& m : got) {
    if (m.headers.at("subject").find("kit missing-variable") != std::string::npos)
      EXPECT_THAT(m.headers.at("to"), HasSubstr("acme-it"));
    else
      EXPECT_THAT(m.headers.at("subject"), HasSubstr("kit good"));
  }
}

TEST(Daemon, ARefusedNewVersionLeavesThePreviousVersionSending) {
  auto db = fresh_database("daemon_kit_versions");
  if (db.empty()) return;
  SmtpTestServer smtp;
  Site site(db, smtp.port());
  site.add_partner({"acme-it", "gold", "msp", "America/Chicago", 2});
  site.add_kit("cloud", "", 1, "<p>version one for {{contact.first_name}}</p>");
  Process daemon(site.channeld({}), site.dir() / "daemon.log");
  ASSERT_TRUE(eventually([&] { return smtp.messages().size() == 2; })) << daemon.output();

  // Version 2 is broken: it must be refused and version 1 must stay live.
  write_file(site.dir() / "campaigns" / "cloud" / "kit.toml.new", "garbage = = =\n");
  fs::rename(site.dir() / "campaigns" / "cloud" / "kit.toml.new",
             site.dir() / "campaigns" / "cloud" / "kit.toml");
  std::string kits;
  ASSERT_TRUE(eventually([&] {
    kits = run_program(site.channeld({"kits"})).second;
    return kits.find("kit.toml:1") != std::string::npos;
  })) << kits
      << daemon.output();
  // Version 1 stays in force (live, or done once all its messages are out), not refused.
  EXPECT_THAT(kits, ::testing::ContainsRegex("cloud +1 +(live|done)"));

  // A new contact arrives: it gets version 1, the last good one.
  write_file(site.dir() / "partners" / "acme-it.csv",
             "email,first_name,last_name,company,industry\n" + Site::email("acme-it", 0) +
                 ",F0,L,C,x\n" + Site::email("acme-it", 1) + ",F1,L,C,x\n" +
                 Site::email("acme-it", 7) + ",Newcomer,L,C,x\n");
  ASSERT_TRUE(eventually([&] { return smtp.messages().size() == 3; })) << daemon.output();
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(), 0);
  auto got = mails(smtp);
  EXPECT_THAT(got.back().decoded, HasSubstr("version one for Newcomer"));
  EXPECT_EQ(got.size(), 3u) << "nothing already sent was sent again";
}

// Writes `n` contacts spread over `partners` gold MSPs.
void add_audience(Site& site, int partners, int per_partner) {
  for (int p = 0; p < partners; ++p)
    site.add_partner({"p" + std::to_string(p), "gold", "msp", "America/Chicago", per_partner});
}

std::multiset<std::string> message_ids(const SmtpTestServer& smtp) {
  std::multiset<std::string> ids;
  for (const auto& m : mails(smtp)) ids.insert(m.headers.at("message-id"));
  return ids;
}

TEST(Daemon, KillNineMidCampaignThenRestartDeliversEveryMessage) {
  auto db = fresh_database("daemon_kill9");
  if (db.empty()) return;
  SmtpTestServer smtp;
  Site site(db, smtp.port(), "", "10s");
  add_audience(site, 5, 2000);
  site.add_kit("big", "");
  site.migrate();

  {
    Process daemon(site.channeld({}), site.dir() / "first.log");
    ASSERT_TRUE(eventually([&] { return site.count("state = 'sent'") >= 3000; }))
        << daemon.output();
    daemon.signal(SIGKILL);
    daemon.wait();
  }
  const auto in_flight = site.count("state = 'sending'");
  const auto sent_before = site.count("state = 'sent'");
  ASSERT_LT(sent_before, 10000) << "the kill must land mid-campaign";
  constexpr std::int64_t kConnections = 8;  // smtp.max_connections: transfers open at the kill

  auto log = site.run_until_idle();

  auto ids = message_ids(smtp);
  std::set<std::string> unique(ids.begin(), ids.end());
  EXPECT_EQ(unique.size(), 10000u) << "every recipient got the message";
  const auto duplicates = static_cast<std::int64_t>(ids.size() - unique.size());
  EXPECT_LE(duplicates, kConnections)
      << "duplicates only among transfers open at the kill: the journal has every other verdict";
  EXPECT_EQ(site.count("state = 'sent'"), 10000);
  const auto reported = site.count("reclaimed AND state = 'sent'");
  std::printf("kill -9 after %lld sent: %lld in flight, %lld duplicates, %lld reported\n",
              static_cast<long long>(sent_before), static_cast<long long>(in_flight),
              static_cast<long long>(duplicates), static_cast<long long>(reported));
  EXPECT_GE(reported, duplicates) << "every possible duplicate is reported";
  if (in_flight > 0) {
    EXPECT_THAT(log, HasSubstr("duplicates"));
  }
}

// A PostgreSQL cluster of the test's own, which it may stop and start (the shared one must
// stay up for the other tests).
class PrivateCluster {
 public:
  // free-port.sh finds a port nobody listens on, but another test may bind it before
  // PostgreSQL does (tests run two at a time): a few other ports before giving up. Restarts
  // keep the port the cluster first started on, which the daemon's config names.
  PrivateCluster() {
    for (int attempt = 0; attempt < 5 && conninfo_.empty(); ++attempt) {
      auto [code, out] = run_program({"/bin/sh", "-c",
                                      (source_dir() / "scripts/free-port.sh").string() + " " +
                                          std::to_string(56250 + 40 * attempt)});
      port_ = out.substr(0, out.find('\n'));
      start();
    }
  }
  ~PrivateCluster() { stop(); }
  PrivateCluster(const PrivateCluster&) = delete;
  PrivateCluster& operator=(const PrivateCluster&) = delete;

  bool start() {
    auto [code, out] = run_program(
        {(source_dir() / "scripts/pg-cluster.sh").string(), "start", dir_.path().string(), port_});
    if (code != 0) return false;
    conninfo_ = out.substr(0, out.find('\n'));
    return true;
  }
  void stop() {
    run_program({(source_dir() / "scripts/pg-cluster.sh").string(), "stop", dir_.path().string()});
  }
  const std::string& conninfo() const { return conninfo_; }

 private:
  TempDir dir_;
  std::string port_;
  std::string conninfo_;
};

TEST(Daemon, SigtermWithThePostgresqlStoppedExitsInTimeQuietlyAndTheRestartSendsEachOnce) {
  if (std::getenv("CHANNELD_TEST_PG") == nullptr) return (void)fresh_database("");
  PrivateCluster pg;
  ASSERT_FALSE(pg.conninfo().empty()) << "cannot start a private PostgreSQL cluster";
  SmtpTestServer::Options options;
  options.data_delay_seconds = 0.05;
  SmtpTestServer smtp(options);
  if (!smtp.available()) return;
  Site site(pg.conninfo(), smtp.port(), "shutdown_grace = \"2s\"\nbatch_size = 50\n", "6s");
  add_audience(site, 2, 300);
  site.add_kit("k", "");
  site.migrate();
  {
    Process daemon(site.channeld({}), site.dir() / "first.log");
    ASSERT_TRUE(eventually([&] { return site.count("state = 'sent'") >= 100; })) << daemon.output();
    pg.stop();
    const std::string before = daemon.output();
    const auto lines_before = std::count(before.begin(), before.end(), '\n');
    const auto signalled = std::chrono::steady_clock::now();
    daemon.signal(SIGTERM);
    daemon.wait(std::chrono::seconds(30));
    const auto took = std::chrono::steady_clock::now() - signalled;
    EXPECT_LT(took, std::chrono::seconds(2 + 5)) << daemon.output();
    const std::string log = daemon.output();
    const auto lines = std::count(log.begin(), log.end(), '\n') - lines_before;
    EXPECT_LT(lines, 100) << log;
    EXPECT_THAT(log, HasSubstr("stay in the journal")) << log;
  }
  ASSERT_TRUE(pg.start());
  const auto log = site.run_until_idle();
  EXPECT_THAT(log, HasSubstr("from the journal of a stopped daemon"));
  auto ids = message_ids(smtp);
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 600u) << "nothing lost";
  EXPECT_EQ(ids.size(), 600u) << "nothing sent twice";
  EXPECT_EQ(site.count("state = 'sent'"), 600);
}

TEST(Daemon, ASlowRelayNeverGetsAMessageAfterItsLeaseEndedNorADuplicateFromASecondDaemon) {
  auto db = fresh_database("daemon_slow_relay");
  if (db.empty()) return;
  SmtpTestServer::Options options;
  options.data_delay_seconds = 2;  // each message takes two seconds
  SmtpTestServer smtp(options);
  if (!smtp.available()) return;
  // A 6 s lease, a 3 s transfer limit: a send must start within 2 s of its claim or go back.
  // Each daemon holds up to three batches of 4 but sends 8 at a time (8 connections), so with
  // the old queueing some rows waited in the connector past their lease and the other daemon,
  // having reclaimed them, sent them too.
  Site site(db, smtp.port(), "batch_size = 4\n", "6s");
  add_audience(site, 2, 10);
  site.add_kit("k", "");
  site.migrate();
  Process a(site.channeld({"--until-idle", "--owner", "a"}), site.dir() / "a.log");
  Process b(site.channeld({"--until-idle", "--owner", "b"}), site.dir() / "b.log");
  EXPECT_EQ(a.wait(std::chrono::seconds(120)), 0) << a.output();
  EXPECT_EQ(b.wait(std::chrono::seconds(120)), 0) << b.output();

  auto ids = message_ids(smtp);
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 20u);
  EXPECT_EQ(ids.size(), 20u) << "no duplicate";
  EXPECT_EQ(site.count("state = 'sent'"), 20);
  EXPECT_EQ(site.count("reclaimed"), 0) << "no lease ended while its message was being sent";
}

TEST(Daemon, TwoDaemonsOnOneDatabaseDeliverTenThousandWithoutDuplicates) {
  auto db = fresh_database("daemon_two");
  if (db.empty()) return;
  SmtpTestServer smtp;
  Site site(db, smtp.port());
  add_audience(site, 4, 2500);
  site.add_kit("big", "");
  // Apply the schema first so both daemons race on the outbox, not only on migrations.
  site.migrate();

  Process a(site.channeld({"--until-idle", "--owner", "a"}), site.dir() / "a.log");
  Process b(site.channeld({"--until-idle", "--owner", "b"}), site.dir() / "b.log");
  EXPECT_EQ(a.wait(), 0) << a.output();
  EXPECT_EQ(b.wait(), 0) << b.output();

  auto ids = message_ids(smtp);
  std::set<std::string> unique(ids.begin(), ids.end());
  EXPECT_EQ(ids.size(), 10000u);
  EXPECT_EQ(unique.size(), 10000u) << "no duplicates";
  soci::session sql("postgresql", db);
  std::int64_t by_a = 0, by_b = 0;
  sql << "SELECT count(*) FROM outbox WHERE sent_by = 'a' AND state = 'sent'", soci::into(by_a);
  sql << "SELECT count(*) FROM outbox WHERE sent_by = 'b' AND state = 'sent'", soci::into(by_b);
  EXPECT_GT(by_a, 0) << "both daemons took part";
  EXPECT_GT(by_b, 0) << "both daemons took part";
}

TEST(Daemon, TemporaryFailuresAreRetriedUntilEveryMessageArrives) {
  auto db = fresh_database("daemon_tempfail");
  if (db.empty()) return;
  SmtpTestServer::Options options;
  options.tempfail_first = 30;
  SmtpTestServer smtp(options);
  Site site(db, smtp.port());
  add_audience(site, 2, 20);
  site.add_kit("k", "");

  site.run_until_idle();

  EXPECT_EQ(message_ids(smtp).size(), 40u);
  EXPECT_EQ(site.count("state = 'sent'"), 40);
  EXPECT_GE(site.count("attempts > 1"), 1) << "some messages needed a retry";
}

TEST(Daemon, APermanentRecipientFailureSuppressesTheAddress) {
  auto db = fresh_database("daemon_bounce");
  if (db.empty()) return;
  SmtpTestServer::Options options;
  options.reject_rcpt = "contact1@";
  SmtpTestServer smtp(options);
  Site site(db, smtp.port());
  add_audience(site, 1, 3);
  site.add_kit("k", "");

  const std::string log = site.run_until_idle();

  EXPECT_EQ(message_ids(smtp).size(), 2u);
  EXPECT_EQ(site.count("state = 'bounced'"), 1);
  // Said once, with everything an operator needs to find the message and the reason.
  const std::string line =
      "message bounced: kit k step announce partner p0 recipient " + Site::email("p0", 1) + ": ";
  EXPECT_THAT(log, HasSubstr(line + "RCPT TO refused: 550 5.1.1"));
  EXPECT_EQ(log.find(line), log.rfind(line)) << log;
  soci::session sql("postgresql", db);
  std::int64_t suppressed = 0;
  const std::string bounced = Site::email("p0", 1);
  sql << "SELECT count(*) FROM suppression WHERE email = :e AND partner_id = ''",
      soci::use(bounced), soci::into(suppressed);
  EXPECT_EQ(suppressed, 1);
}

TEST(Daemon, ADownServerDelaysDeliveryAndLosesNothing) {
  auto db = fresh_database("daemon_down");
  if (db.empty()) return;
  // Reserve a port, then leave it closed while the daemon tries.
  int port = 0;
  {
    SmtpTestServer probe;
    port = probe.port();
  }
  Site site(db, port, "max_attempts = 1000\n");
  add_audience(site, 1, 5);
  site.add_kit("k", "");
  site.migrate();

  Process daemon(site.channeld({"--until-idle"}), site.dir() / "daemon.log");
  ASSERT_TRUE(eventually([&] { return site.count("state = 'queued' AND attempts >= 1") == 5; }))
      << daemon.output();
  EXPECT_EQ(site.count("state IN ('failed', 'bounced')"), 0);

  SmtpTestServer::Options options;
  options.port = port;
  SmtpTestServer smtp(options);
  EXPECT_EQ(daemon.wait(), 0) << daemon.output();
  EXPECT_EQ(message_ids(smtp).size(), 5u);
  EXPECT_EQ(site.count("state = 'sent'"), 5);
}

}  // namespace
}  // namespace channeld::testing

namespace channeld::testing {
namespace {

// The API token `channeld token create` printed.
std::string first_token(const std::string& output) {
  std::smatch m;
  static const std::regex re("chd_[A-Za-z0-9_-]{43}");
  return std::regex_search(output, m, re) ? m[0].str() : std::string();
}

int http_port_from_log(const std::string& log) {
  std::smatch m;
  static const std::regex re("listening on port ([0-9]+)");
  return std::regex_search(log, m, re) ? std::stoi(m[1].str()) : 0;
}

TEST(Daemon, SigtermStopsCleanlyReleasingWhatItHeldAndLosingNothing) {
  auto db = fresh_database("daemon_sigterm");
  if (db.empty()) return;
  SmtpTestServer smtp;
  Site site(db, smtp.port());
  add_audience(site, 2, 2500);
  site.add_kit("k", "");
  site.migrate();
  {
    Process daemon(site.channeld({}), site.dir() / "first.log");
    ASSERT_TRUE(eventually([&] { return site.count("state = 'sent'") >= 500; })) << daemon.output();
    daemon.signal(SIGTERM);
    EXPECT_EQ(daemon.wait(std::chrono::seconds(40)), 0) << daemon.output();
    EXPECT_THAT(daemon.output(), HasSubstr("SIGTERM: stopping"));
  }
  EXPECT_EQ(site.count("state = 'sending'"), 0) << "every leased row was recorded or released";
  EXPECT_EQ(site.count("state IN ('sent', 'queued')"), 5000);

  site.run_until_idle();
  auto ids = message_ids(smtp);
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 5000u);
  EXPECT_EQ(ids.size(), 5000u) << "a clean stop causes no duplicate";
}

TEST(Daemon, SighupReloadsTheConfigForMessagesNotYetRendered) {
  auto db = fresh_database("daemon_sighup");
  if (db.empty()) return;
  SmtpTestServer smtp;
  Site site(db, smtp.port());
  site.add_partner({"acme-it", "gold", "msp", "America/Chicago", 1});
  site.add_kit("k", "");
  Process daemon(site.channeld({}), site.dir() / "daemon.log");
  ASSERT_TRUE(eventually([&] { return smtp.messages().size() == 1; })) << daemon.output();

  auto config = read_file(site.config());
  config.replace(config.find("name = \"Vendor Inc.\""), 20, "name = \"Vendor Two\"");
  write_file(site.config(), config);
  daemon.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] {
    return daemon.output().find("config reloaded") != std::string::npos;
  })) << daemon.output();
  write_file(site.dir() / "partners" / "acme-it.csv",
             "email,first_name,last_name,company,industry\n" + Site::email("acme-it", 0) +
                 ",F,L,C,x\n" + Site::email("acme-it", 5) + ",G,L,C,x\n");
  ASSERT_TRUE(eventually([&] { return smtp.messages().size() == 2; })) << daemon.output();
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(), 0);
  auto got = mails(smtp);
  EXPECT_EQ(got[0].headers.at("subject"), "Partner acme-it and Vendor Inc.: kit k");
  EXPECT_EQ(got[1].headers.at("subject"), "Partner acme-it and Vendor Two: kit k");
}

TEST(Daemon, ServesHealthReadinessMetricsAndDeliveryCounts) {
  auto db = fresh_database("daemon_http");
  if (db.empty()) return;
  SmtpTestServer smtp;
  Site site(db, smtp.port());
  site.add_partner({"acme-it", "gold", "msp", "America/Chicago", 2});
  site.add_kit("k", "");
  site.migrate();
  Process daemon(site.channeld({}), site.dir() / "daemon.log");
  ASSERT_TRUE(eventually([&] { return site.count("state = 'sent'") == 2; })) << daemon.output();
  const int port = http_port_from_log(daemon.output());
  ASSERT_GT(port, 0) << daemon.output();

  httplib::Client http("127.0.0.1", port);
  auto health = http.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto ready = http.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  // The outbox gauge is as of the last background check (every 2 s), so it may lag the rows.
  std::string metrics;
  EXPECT_TRUE(eventually([&] {
    auto scraped = http.Get("/metrics");
    metrics = scraped ? scraped->body : "";
    return metrics.find("channeld_outbox_messages{state=\"sent\"} 2") != std::string::npos;
  })) << metrics;
  EXPECT_THAT(metrics, HasSubstr("channeld_messages_total{state=\"sent\"} 2"));
  EXPECT_THAT(metrics, HasSubstr("channeld_kits{state=\"live\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("channeld_send_latency_seconds_bucket"));
  auto anonymous = http.Get("/v1/deliveries");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  auto [created, token] =
      run_program(site.channeld({"token", "create", "--role", "admin", "--name", "ops"}));
  ASSERT_EQ(created, 0) << token;
  token = first_token(token);
  auto counts = http.Get("/v1/deliveries", {{"Authorization", "Bearer " + token}});
  ASSERT_TRUE(counts);
  EXPECT_EQ(counts->status, 200);
  EXPECT_THAT(counts->body, HasSubstr("\"kit_id\":\"k\""));
  EXPECT_THAT(counts->body, HasSubstr("\"partner_id\":\"acme-it\""));
  EXPECT_THAT(counts->body, HasSubstr("\"sent\":2"));
  std::string kits;
  EXPECT_TRUE(eventually([&] {
    kits = run_program(site.channeld({"kits"})).second;
    return kits.find("done") != std::string::npos;
  })) << "a kit whose every message is settled is done: "
      << kits;
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(), 0);
}

// HTTP requests have database sessions of their own (database.api_sessions), and wait for one
// only database.api_session_wait: with every API session stuck in the database, a burst of API
// calls is answered 503 with Retry-After at once while delivery, on its own sessions, finishes
// the whole campaign.
TEST(Daemon, ABurstOfApiCallsIsRefusedWithRetryAfterWhileDeliveryKeepsRecordingVerdicts) {
  auto db = fresh_database("daemon_api_burst");
  if (db.empty()) return;
  SmtpTestServer smtp;
  Site site(db, smtp.port());
  auto config = read_file(site.config());
  config.replace(config.find("[paths]"), 7, "api_sessions = 2\napi_session_wait = \"1s\"\n[paths]");
  write_file(site.config(), config);
  add_audience(site, 2, 500);
  site.add_kit("k", "");
  site.migrate();
  auto [created, token] =
      run_program(site.channeld({"token", "create", "--role", "admin", "--name", "ops"}));
  ASSERT_EQ(created, 0) << token;
  token = first_token(token);

  Process daemon(site.channeld({}), site.dir() / "daemon.log");
  ASSERT_TRUE(eventually([&] { return http_port_from_log(daemon.output()) > 0; }))
      << daemon.output();
  const int port = http_port_from_log(daemon.output());
  // Every token check waits on this lock, holding an API session while it does; delivery never
  // reads api_token.
  soci::session blocker("postgresql", db);
  soci::transaction hold(blocker);
  blocker << "LOCK TABLE api_token IN ACCESS EXCLUSIVE MODE";

  struct Answer {
    int status = 0;
    std::string retry_after;
  };
  constexpr int kBurst = 12;
  std::vector<std::future<Answer>> burst;
  for (int i = 0; i < kBurst; ++i) {
    burst.push_back(std::async(std::launch::async, [port, &token] {
      httplib::Client http("127.0.0.1", port);
      http.set_read_timeout(std::chrono::seconds(120));
      auto result = http.Get("/v1/deliveries", {{"Authorization", "Bearer " + token}});
      Answer answer;
      if (result) {
        answer.status = result->status;
        answer.retry_after = result->get_header_value("Retry-After");
      }
      return answer;
    }));
  }
  // The two requests holding the API sessions wait on the lock; all the others give up after
  // the wait.
  const auto answered = [&] {
    return std::count_if(burst.begin(), burst.end(), [](const std::future<Answer>& answer) {
      return answer.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
    });
  };
  EXPECT_TRUE(eventually([&] { return answered() == kBurst - 2; }, std::chrono::seconds(60)))
      << answered() << " of " << kBurst << " answered\n"
      << daemon.output();
  for (auto& answer : burst) {
    if (answer.wait_for(std::chrono::seconds(0)) != std::future_status::ready) continue;
    const Answer got = answer.get();
    EXPECT_EQ(got.status, 503);
    EXPECT_EQ(got.retry_after, "1");
  }
  EXPECT_TRUE(eventually([&] { return site.count("state = 'sent'") == 1000; }))
      << "delivery stalled while the API sessions were stuck: " << site.count("state = 'sent'")
      << " sent\n"
      << daemon.output();

  hold.rollback();
  httplib::Client http("127.0.0.1", port);
  auto after = http.Get("/v1/deliveries", {{"Authorization", "Bearer " + token}});
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200) << after->body;
  for (auto& answer : burst) {
    if (answer.valid()) {
      EXPECT_EQ(answer.get().status, 200) << "a request that got a session";
    }
  }
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(), 0) << daemon.output();
}

TEST(Daemon, OptInKitsGoOnlyToPartnersThatOptedIn) {
  auto db = fresh_database("daemon_opt_in");
  if (db.empty()) return;
  SmtpTestServer smtp;
  Site site(db, smtp.port());
  PartnerSpec joined("joined", "gold", "msp", "America/Chicago", 2);
  joined.extra_toml = "opt_in_kits = [\"webinar\"]\n";
  site.add_partner(joined);
  site.add_partner({"declined", "gold", "msp", "America/Chicago", 2});
  site.add_kit("webinar", "enrollment = \"opt-in\"");

  site.run_until_idle();

  auto got = mails(smtp);
  ASSERT_EQ(got.size(), 2u);
  for (const auto& m : got) EXPECT_THAT(m.headers.at("to"), HasSubstr("joined"));
}

TEST(Daemon, AnExpiredKitSendsNothingNew) {
  auto db = fresh_database("daemon_expired");
  if (db.empty()) return;
  SmtpTestServer smtp;
  Site site(db, smtp.port());
  site.add_partner({"acme-it", "gold", "msp", "America/Chicago", 2});
  site.add_kit("old", "");
  auto kit = read_file(site.dir() / "campaigns" / "old" / "kit.toml");
  kit.replace(kit.find("2099-12-31"), 10, "2021-01-31");
  write_file(site.dir() / "campaigns" / "old" / "kit.toml", kit);

  site.run_until_idle();

  EXPECT_TRUE(smtp.messages().empty());
  auto [code, kits] = run_program(site.channeld({"kits"}));
  EXPECT_EQ(code, 0);
  EXPECT_THAT(kits, HasSubstr("expired"));
}

TEST(Cli, CheckConfigExitsZeroForAGoodSiteAndTwoNamingTheBrokenFile) {
  auto db = fresh_database("cli_check");
  if (db.empty()) return;
  Site site(db, 25);
  site.add_partner({"acme-it", "gold", "msp", "America/Chicago", 2});
  site.add_kit("good", "");
  auto [ok, ok_out] = run_program(site.channeld({"check-config"}));
  EXPECT_EQ(ok, 0) << ok_out;

  site.add_kit("broken", "");
  write_file(site.dir() / "campaigns" / "broken" / "kit.toml",
             "id = \"broken\"\nname = \"x\"\nversion = \"one\"\n");
  auto [bad, bad_out] = run_program(site.channeld({"check-config"}));
  EXPECT_EQ(bad, 2);
  EXPECT_THAT(bad_out, HasSubstr("broken/kit.toml:3"));
}

TEST(Cli, PreviewWritesOnePartnersMessageWithoutSending) {
  auto db = fresh_database("cli_preview");
  if (db.empty()) return;
  Site site(db, 25);
  site.add_partner({"acme-it", "gold", "msp", "America/Chicago", 2});
  site.add_kit("k", "");
  TempDir out;
  auto [code, output] =
      run_program(site.channeld({"preview", "--kit", "k", "--partner", "acme-it", "--contact",
                                 Site::email("acme-it", 1), "--out", out.path().string()}));
  ASSERT_EQ(code, 0) << output;
  auto eml = parse_mail(read_file(out / "k-announce-acme-it.eml"));
  EXPECT_EQ(eml.headers.at("to").find(Site::email("acme-it", 1)) != std::string::npos, true);
  EXPECT_THAT(eml.headers.at("from"), HasSubstr("Sender acme-it"));
  EXPECT_THAT(read_file(out / "k-announce-acme-it.html"), HasSubstr("Hello First1"));

  auto [unknown, message] = run_program(site.channeld(
      {"preview", "--kit", "k", "--partner", "nobody", "--out", out.path().string()}));
  EXPECT_EQ(unknown, 2);
  EXPECT_THAT(message, HasSubstr("--partner"));
}

TEST(Cli, CheckConfigAndKitsWarnAboutAKitThatWouldLookLikeSpamWithoutFailing) {
  auto db = fresh_database("cli_spam_warnings");
  if (db.empty()) return;
  Site site(db, 25);
  site.add_partner({"acme-it", "gold", "msp", "America/Chicago", 1});
  site.add_kit(
      "k", "", 1,
      "<p>Hi {{contact.first_name}}, <a href=\"http://acme-it.example/offer\">offer</a></p>");
  auto [code, out] = run_program(site.channeld({"check-config"}));
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("warning: kit k step 'announce': a link over plain http: "
                             "http://acme-it.example/offer"));
  site.migrate();
  auto [kits_code, kits] = run_program(site.channeld({"kits"}));
  EXPECT_EQ(kits_code, 0) << kits;
  EXPECT_THAT(kits, HasSubstr("warning: kit k step 'announce': a link over plain http"));
}

TEST(Cli, TokenCreatePrintsATokenOnceAndRevokeEndsIt) {
  auto db = fresh_database("cli_tokens");
  if (db.empty()) return;
  Site site(db, 25);
  auto [code, out] = run_program(
      site.channeld({"token", "create", "--role", "partner:acme-it", "--name", "acme-crm"}));
  ASSERT_EQ(code, 0) << out;
  const std::string token = first_token(out);
  ASSERT_EQ(token.size(), 47u) << out;
  {
    soci::session session("postgresql", db);
    std::string hash, role;
    session << "SELECT token_hash, role FROM api_token WHERE name = 'acme-crm'", soci::into(hash),
        soci::into(role);
    EXPECT_EQ(role, "partner:acme-it");
    EXPECT_EQ(hash.size(), 64u);
    EXPECT_THAT(hash, Not(HasSubstr(token.substr(4, 10)))) << "only a hash is stored";
  }
  EXPECT_EQ(run_program(site.channeld({"token", "create", "--role", "admin", "--name", "acme-crm"}))
                .first,
            2)
      << "a live token's name is taken";
  EXPECT_EQ(run_program(site.channeld({"token", "create", "--role", "root", "--name", "x"})).first,
            2);
  auto [revoked, said] = run_program(site.channeld({"token", "revoke", "acme-crm"}));
  EXPECT_EQ(revoked, 0) << said;
  EXPECT_EQ(run_program(site.channeld({"token", "revoke", "acme-crm"})).first, 2)
      << "nothing left to revoke";
}

TEST(Cli, UnknownCommandsAndOptionsAreUsageErrors) {
  auto [verb, verb_out] = run_program({channeld_binary().string(), "frobnicate"});
  EXPECT_EQ(verb, 2);
  EXPECT_THAT(verb_out, HasSubstr("unknown command 'frobnicate'"));
  auto [opt, opt_out] = run_program({channeld_binary().string(), "kits", "--colour"});
  EXPECT_EQ(opt, 2);
  EXPECT_THAT(opt_out, HasSubstr("--colour"));
  auto [version, version_out] = run_program({channeld_binary().string(), "--version"});
  EXPECT_EQ(version, 0);
  EXPECT_THAT(version_out, HasSubstr("channeld 0."));
}

}  // namespace
}  // namespace channeld::testing

namespace channeld::testing {
namespace {

std::string first_match(const std::string& text, const std::string& pattern) {
  std::smatch m;
  return std::regex_search(text, m, std::regex(pattern)) ? m[0].str() : std::string();
}

// The path (from "/") of a public_url link.
std::string path_of(const std::string& url) {
  const std::string base = "https://mkt.vendor.example";
  return url.rfind(base, 0) == 0 ? url.substr(base.size()) : url;
}

// The site's daemon also serves http.public_listen (the event-driven front) on a free port.
void serve_public_front(const Site& site) {
  auto config = read_file(site.dir() / "channeld.toml");
  config.replace(config.find("listen = \"127.0.0.1:0\"\n"), 23,
                 "listen = \"127.0.0.1:0\"\npublic_listen = \"127.0.0.1:0\"\n");
  write_file(site.dir() / "channeld.toml", config);
}

// The port the public front says it listens on in the daemon's log; empty if it has not.
std::string public_front_port(const std::string& log) {
  const std::string prefix = "public front listening on port ";
  const std::string line = first_match(log, prefix + "[0-9]+");
  return line.empty() ? line : line.substr(prefix.size());
}

// Everything a recipient reaches goes through http.public_listen, as public_url's proxy would
// send it: clicks and opens answered by the front itself, the unsubscribe page and its form and
// multipart posts relayed to http.listen.
TEST(Engagement, UnsubscribingAfterStepOneByPageOrOneClickStopsStepTwoForThatAddressOnly) {
  auto db = fresh_database("daemon_unsubscribe");
  if (db.empty()) return;
  SmtpTestServer smtp;
  Site site(db, smtp.port());
  site.add_partner({"acme-it", "gold", "msp", "America/Chicago", 3});
  site.add_kit("k", "", 1,
               "<p>Hello {{contact.first_name}}, <a href=\"https://acme-it.example/offer?c="
               "{{contact.first_name}}&amp;k=1\">see the offer</a></p>");
  serve_public_front(site);
  site.migrate();
  Process daemon(site.channeld({}), site.dir() / "daemon.log");
  ASSERT_TRUE(eventually([&] { return smtp.messages().size() == 3; })) << daemon.output();
  const std::string port = public_front_port(daemon.output());
  ASSERT_FALSE(port.empty()) << daemon.output();
  httplib::Client http("127.0.0.1", std::stoi(port));
  auto health = http.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->body, "ok");

  std::map<std::string, Mail> by_recipient;
  for (auto& m : mails(smtp)) by_recipient[m.headers.at("to")] = m;
  auto mail_to = [&](int i) -> const Mail& {
    for (const auto& [to, m] : by_recipient)
      if (to.find(Site::email("acme-it", i)) != std::string::npos) return m;
    throw std::runtime_error("no mail to contact " + std::to_string(i));
  };
  auto unsubscribe_path = [&](int i) {
    return path_of(first_match(mail_to(i).headers.at("list-unsubscribe"),
                               "https://mkt\\.vendor\\.example/u/[A-Za-z0-9_.-]+"));
  };

  // Contact 0 opens the page, then confirms with its button.
  const auto page_path = unsubscribe_path(0);
  auto page = http.Get(page_path);
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_THAT(page->body, HasSubstr("Sender acme-it"));
  auto query = [&](const std::string& sql) {
    soci::session session("postgresql", db);
    std::string value;
    session << sql, soci::into(value);
    return value;
  };
  EXPECT_EQ(query("SELECT CAST(count(*) AS text) FROM suppression"), "0")
      << "showing the page suppresses nothing";
  auto confirmed =
      http.Post(page_path, "List-Unsubscribe=One-Click", "application/x-www-form-urlencoded");
  ASSERT_TRUE(confirmed);
  EXPECT_EQ(confirmed->status, 200);
  // Contact 1's mail client uses RFC 8058 one-click, as Gmail's unsubscribe button does.
  httplib::MultipartFormDataItems one_click = {{"List-Unsubscribe", "One-Click", "", ""}};
  auto posted = http.Post(unsubscribe_path(1), one_click);
  ASSERT_TRUE(posted);
  EXPECT_EQ(posted->status, 200);

  // Contact 2 opens the message and clicks its link: the click goes to the kit's own link.
  const std::string click =
      first_match(mail_to(2).decoded, "https://mkt\\.vendor\\.example/c/[A-Za-z0-9_.-]+");
  ASSERT_FALSE(click.empty()) << mail_to(2).decoded;
  EXPECT_THAT(mail_to(2).decoded, Not(HasSubstr("https://acme-it.example/offer")));
  auto clicked = http.Get(path_of(click), {{"User-Agent",
                                            "Mozilla/5.0 (X11; Linux x86_64) "
                                            "AppleWebKit/537.36 Chrome/120.0 Safari/537.36"}});
  ASSERT_TRUE(clicked);
  EXPECT_EQ(clicked->status, 302);
  EXPECT_EQ(clicked->get_header_value("Location"), "https://acme-it.example/offer?c=First2&k=1");
  const std::string pixel =
      first_match(mail_to(2).decoded, "https://mkt\\.vendor\\.example/o/[A-Za-z0-9_.-]+");
  auto opened = http.Get(path_of(pixel));
  ASSERT_TRUE(opened);
  EXPECT_EQ(opened->status, 200);
  std::string tampered = path_of(click);
  tampered[tampered.size() - 2] = tampered[tampered.size() - 2] == 'A' ? 'B' : 'A';
  auto forged = http.Get(tampered);
  ASSERT_TRUE(forged);
  EXPECT_EQ(forged->status, 404);
  EXPECT_FALSE(forged->has_header("Location"));

  // The kit gains a second step, due at once.
  auto toml = read_file(site.dir() / "campaigns" / "k" / "kit.toml");
  toml.replace(toml.find("version = 1"), 11, "version = 2");
  toml += R"(
[[steps]]
id = "follow-up"
channel = "email"
delay = "0d"
subject = "Following up, {{contact.first_name}}"
html = "body.html.mustache"
text = "body.txt.mustache"
)";
  write_file(site.dir() / "campaigns" / "k" / "kit.toml", toml);
  ASSERT_TRUE(eventually([&] {
    return site.count("step_id = 'follow-up' AND state IN ('sent', 'suppressed')") == 3;
  })) << daemon.output();
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(), 0);

  EXPECT_EQ(site.count("step_id = 'follow-up' AND state = 'suppressed'"), 2);
  std::vector<std::string> follow_ups;
  for (const auto& m : mails(smtp))
    if (m.headers.at("subject").rfind("Following up", 0) == 0)
      follow_ups.push_back(m.headers.at("to"));
  ASSERT_EQ(follow_ups.size(), 1u);
  EXPECT_THAT(follow_ups[0], HasSubstr(Site::email("acme-it", 2)));
  EXPECT_EQ(query("SELECT opens || '|' || human_clicks FROM message_engagement e JOIN outbox o"
                  " ON o.id = e.outbox_id WHERE o.email = '" +
                  Site::email("acme-it", 2) + "' AND o.step_id = 'announce'"),
            "1|1");
}

// A click is answered once it is on disk (paths.state/hits), before the database has it: a
// kill -9 right after the answers loses none of them and the restart counts none twice.
TEST(Engagement, ClicksAnsweredBeforeAKillNineAreCountedOnceAfterTheRestart) {
  auto db = fresh_database("daemon_click_kill9");
  if (db.empty()) return;
  SmtpTestServer smtp;
  Site site(db, smtp.port());
  site.add_partner({"acme-it", "gold", "msp", "America/Chicago", 1});
  site.add_kit("k", "", 1, "<p>Hello, <a href=\"https://acme-it.example/offer\">see the offer</a></p>");
  serve_public_front(site);
  site.migrate();
  constexpr int kClicks = 200;
  {
    Process daemon(site.channeld({}), site.dir() / "first.log");
    ASSERT_TRUE(eventually([&] { return smtp.messages().size() == 1; })) << daemon.output();
    const std::string port = public_front_port(daemon.output());
    ASSERT_FALSE(port.empty()) << daemon.output();
    const std::string click =
        first_match(mails(smtp).at(0).decoded, "https://mkt\\.vendor\\.example/c/[A-Za-z0-9_.-]+");
    ASSERT_FALSE(click.empty());
    httplib::Client http("127.0.0.1", std::stoi(port));
    for (int i = 0; i < kClicks; ++i) {
      auto clicked = http.Get(path_of(click), {{"User-Agent", "Mozilla/5.0 Firefox/120.0"}});
      ASSERT_TRUE(clicked);
      ASSERT_EQ(clicked->status, 302);
    }
    daemon.signal(SIGKILL);
    daemon.wait();
  }
  auto scalar = [&](const std::string& sql) {
    soci::session session("postgresql", db);
    long long n = 0;
    session << sql, soci::into(n);
    return n;
  };
  const auto before = scalar("SELECT COALESCE(sum(clicks), 0) FROM message_engagement");
  EXPECT_LE(before, kClicks);
  const auto log = site.run_until_idle();
  EXPECT_EQ(scalar("SELECT COALESCE(sum(clicks), 0) FROM message_engagement"), kClicks) << log;
  EXPECT_EQ(scalar("SELECT sum(hits) FROM delivery_event WHERE kind = 'clicked'"), kClicks);
  if (before < kClicks) {
    EXPECT_THAT(log, HasSubstr("opens and clicks from the journal of a stopped daemon"));
  }
  std::printf("clicks in the database at the kill: %lld of %d\n", before, kClicks);
}

}  // namespace
}  // namespace channeld::testing
