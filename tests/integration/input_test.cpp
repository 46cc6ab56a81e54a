// End-to-end: bad input never costs a message, a suppression or a secret. Each test builds a
// site with one thing wrong and runs the real channeld binary against a real PostgreSQL
// cluster and a real SMTP server on 127.0.0.1, as a user would.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <soci/soci.h>

#include <chrono>
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
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

// The recipient of each accepted message (its envelope is not kept; the To header is enough,
// as every test address is plain ASCII), one entry per message.
std::vector<std::string> recipients(const SmtpTestServer& smtp) {
  std::vector<std::string> out;
  for (const auto& raw : smtp.messages()) {
    auto at = raw.find("\r\nTo: ");
    if (at == std::string::npos) continue;
    auto end = raw.find("\r\n", at + 2);
    std::string to = raw.substr(at + 6, end - at - 6);
    auto open = to.find('<');
    if (open != std::string::npos) to = to.substr(open + 1, to.find('>') - open - 1);
    out.push_back(to);
  }
  return out;
}

// Each accepted message as "subject -> recipient", one entry per message.
std::multiset<std::string> subjects_to(const SmtpTestServer& smtp) {
  std::multiset<std::string> out;
  const auto to = recipients(smtp);
  const auto raw = smtp.messages();
  for (std::size_t i = 0; i < raw.size() && i < to.size(); ++i) {
    auto at = raw[i].find("\r\nSubject: ");
    if (at == std::string::npos) continue;
    auto end = raw[i].find("\r\n", at + 2);
    out.insert(raw[i].substr(at + 11, end - at - 11) + " -> " + to[i]);
  }
  return out;
}

// How many lines of `log` contain `text`.
std::size_t lines_with(const std::string& log, const std::string& text) {
  std::istringstream lines(log);
  std::size_t n = 0;
  for (std::string line; std::getline(lines, line);)
    if (line.find(text) != std::string::npos) ++n;
  return n;
}

// The value of an unlabelled counter or gauge in the daemon's /metrics, or -1.
double metric(const std::string& log, const std::string& name) {
  std::smatch m;
  static const std::regex port_re("listening on port ([0-9]+)");
  if (!std::regex_search(log, m, port_re)) return -1;
  httplib::Client http("127.0.0.1", std::stoi(m[1].str()));
  auto scraped = http.Get("/metrics");
  if (!scraped || scraped->status != 200) return -1;
  const std::string& body = scraped->body;
  const std::string line = "\n" + name + " ";
  auto at = body.find(line);
  if (at == std::string::npos) return -1;
  return std::stod(body.substr(at + line.size()));
}

std::string email(const std::string& partner, int i) {
  return "contact" + std::to_string(i) + "@" + partner + ".example.com";
}

// A site: config, partners, contacts and kits in a temp folder.
class Site {
 public:
  Site(const std::string& database, int smtp_port) : database_(database) {
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
[http]
listen = "127.0.0.1:0"
public_url = "https://mkt.vendor.example"
link_secret_file = "link.secret"
[smtp]
url = "smtp://127.0.0.1:)" + std::to_string(smtp_port) +
                                           R"("
from_address = "partners@mkt.vendor.example"
timeout = "10s"
[vendor]
name = "Vendor Inc."
postal_address = "1 Vendor Way, Springfield, IL 62701, USA"
[limits]
messages_per_second = 0
per_partner_per_second = 0
[delivery]
lease = "30s"
backoff_base = "1s"
backoff_max = "1s"
max_attempts = 1000
scan_interval = "1s"
)");
  }

  const fs::path& dir() const { return dir_.path(); }
  fs::path config() const { return dir_ / "channeld.toml"; }
  fs::path partners() const { return dir_ / "partners"; }
  fs::path campaigns() const { return dir_ / "campaigns"; }

  std::string partner_toml(const std::string& id, const std::string& name = "") const {
    return "id = \"" + id + "\"\nname = \"" + (name.empty() ? "Partner " + id : name) +
           "\"\ntier = \"gold\"\ntype = \"msp\"\nregion = \"NA\"\n"
           "timezone = \"America/Chicago\"\nstatus = \"active\"\ncontacts = \"" +
           id + ".csv\"\n";
  }

  void add_partner(const std::string& id, int contacts = 2) {
    write_file(partners() / (id + ".toml"), partner_toml(id));
    std::string csv = "email,first_name,last_name,company\n";
    for (int i = 0; i < contacts; ++i)
      csv += email(id, i) + ",First" + std::to_string(i) + ",Last,Co\n";
    write_file(partners() / (id + ".csv"), csv);
  }

  // A one-step email kit, due since long ago, sending all day every day.
  void add_kit(const std::string& id, const std::string& html = "<p>Hi {{contact.first_name}}</p>",
               int version = 1) {
    write_file(campaigns() / id / "kit.toml", kit_toml(id, version));
    write_file(campaigns() / id / "body.html.mustache", html);
    write_file(campaigns() / id / "body.txt.mustache", "Hi {{contact.first_name}}.\n");
  }

  static std::string kit_toml(const std::string& id, int version) {
    return "id = \"" + id + "\"\nname = \"Kit " + id + "\"\nversion = " + std::to_string(version) +
           R"(
expires = 2099-12-31
[schedule]
start = 2020-01-01T00:00:00
window = { days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], from = "00:00", to = "24:00" }
[[steps]]
id = "announce"
channel = "email"
subject = "Kit )" +
           id + R"( for {{partner.name}}"
html = "body.html.mustache"
text = "body.txt.mustache"
)";
  }

  std::vector<std::string> channeld(std::vector<std::string> args) const {
    std::vector<std::string> argv{channeld_binary().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--config");
    argv.push_back(config().string());
    return argv;
  }

  std::string run_until_idle() const {
    Process daemon(channeld({"--until-idle"}), dir_ / "daemon.log");
    EXPECT_EQ(daemon.wait(), 0) << daemon.output();
    return daemon.output();
  }

  void migrate() const { ASSERT_EQ(run_program(channeld({"migrate"})).first, 0); }

  std::int64_t count(const std::string& where) const {
    soci::session db("postgresql", database_);
    std::int64_t n = 0;
    db << "SELECT count(*) FROM outbox WHERE " + where, soci::into(n);
    return n;
  }

  // Messages with at least one delivery event matching `where`.
  std::int64_t messages_with_event(const std::string& where) const {
    soci::session db("postgresql", database_);
    std::int64_t n = 0;
    db << "SELECT count(DISTINCT outbox_id) FROM delivery_event WHERE " + where, soci::into(n);
    return n;
  }

 private:
  std::string database_;
  TempDir dir_;
};

// ---- 1. fail at the smallest unit -------------------------------------------------------

TEST(BadInput, AnInvalidUtf8RowIsSkippedAndReportedWhileEveryoneElseGetsMail) {
  auto db = fresh_database("input_utf8");
  if (db.empty()) return;
  SmtpTestServer smtp;
  Site site(db, smtp.port());
  site.add_partner("acme-it");
  site.add_partner("northwind");  // sorted after the bad file: it used to get nothing
  write_file(site.partners() / "acme-it.csv", "email,first_name,last_name,company\n" +
                                                  email("acme-it", 0) + ",Ann,Lee,Co\n" +
                                                  email("acme-it", 1) + ",B\xff\xfe,Stone,Co\n" +
                                                  email("acme-it", 2) + ",Cy,Jones,Co\n");
  site.add_kit("cloud");

  auto [code, check] = run_program(site.channeld({"check-config"}));
  EXPECT_EQ(code, 0) << "a bad row costs only the row: " << check;

  const std::string log = site.run_until_idle();
  EXPECT_THAT(log, HasSubstr((site.partners() / "acme-it.csv").string() +
                             ":3: first_name is not valid UTF-8"));
  auto got = recipients(smtp);
  std::multiset<std::string> to(got.begin(), got.end());
  EXPECT_EQ(to, (std::multiset<std::string>{email("acme-it", 0), email("acme-it", 2),
                                            email("northwind", 0), email("northwind", 1)}));
}

TEST(BadInput, APartnerCsvWithoutAColumnHoldsThatPartnerOnlyFromTheKitThatShowsIt) {
  auto db = fresh_database("input_missing_column");
  if (db.empty()) return;
  SmtpTestServer smtp;
  Site site(db, smtp.port());
  site.add_partner("acme-it");
  site.add_partner("northwind");
  const fs::path csv = site.partners() / "acme-it.csv";
  const std::string full = read_file(csv);
  write_file(csv, "email,first_name,company\n" + email("acme-it", 0) + ",Ann,Co\n" +
                      email("acme-it", 1) + ",Bob,Co\n");
  site.add_kit("formal", "<p>Dear {{contact.first_name}} {{contact.last_name}}</p>");
  site.add_kit("plain");  // shows first_name only
  site.migrate();

  Process daemon(site.channeld({}), site.dir() / "daemon.log");
  ASSERT_TRUE(eventually([&] { return site.count("state = 'sent'") == 6; })) << daemon.output();
  const std::string log = daemon.output();
  EXPECT_EQ(lines_with(log, "kit formal: partner acme-it held back: " + csv.string() +
                                ": header row lacks last_name, which this kit shows"),
            1u)
      << log;
  EXPECT_THAT(log, Not(HasSubstr("kit plain: partner acme-it held back")));
  auto [code, kits] = run_program(site.channeld({"kits"}));
  ASSERT_EQ(code, 0) << kits;
  EXPECT_THAT(kits, HasSubstr("partner acme-it held back"));
  EXPECT_THAT(kits, HasSubstr("last_name"));
  EXPECT_EQ(site.count("kit_id = 'formal' AND partner_id = 'acme-it'"), 0);

  // Fixed: the held kit's mail goes, once; nothing already sent goes again.
  write_file(csv, full);
  ASSERT_TRUE(eventually([&] { return site.count("state = 'sent'") == 8; })) << daemon.output();
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(), 0);
  std::multiset<std::string> expected;
  for (const char* partner : {"acme-it", "northwind"}) {
    for (int i = 0; i < 2; ++i) {
      for (const char* kit : {"formal", "plain"})
        expected.insert(std::string("Kit ") + kit + " for Partner " + partner + " -> " +
                        email(partner, i));
    }
  }
  EXPECT_EQ(subjects_to(smtp), expected);
}

// ---- 2. the last good version survives --------------------------------------------------

TEST(BadInput, APartnerFileBrokenWhileItsMailIsQueuedThenFixedDeliversEveryMessageOnce) {
  auto db = fresh_database("input_partner_broken");
  if (db.empty()) return;
  TempDir flags;
  const fs::path tempfail = flags / "tempfail";
  write_file(tempfail, "");
  SmtpTestServer::Options options;
  options.tempfail_file = tempfail;
  SmtpTestServer smtp(options);
  Site site(db, smtp.port());
  site.add_partner("acme-it", 3);
  site.add_kit("cloud");
  site.migrate();

  Process daemon(site.channeld({}), site.dir() / "daemon.log");
  // Queued and retried: the relay answers 451 while the flag file exists.
  ASSERT_TRUE(eventually([&] { return site.count("attempts >= 1 AND state = 'queued'") == 3; }))
      << daemon.output();
  const std::string good = read_file(site.partners() / "acme-it.toml");
  write_file(site.partners() / "acme-it.toml", good + "tier = \"diamond\"\n");
  ASSERT_TRUE(eventually([&] {
    return daemon.output().find("acme-it.toml") != std::string::npos &&
           daemon.output().find("keeping the version loaded before") != std::string::npos;
  })) << daemon.output();
  EXPECT_EQ(site.count("state = 'expired'"), 0);
  write_file(site.partners() / "acme-it.toml", good);
  fs::remove(tempfail);

  ASSERT_TRUE(eventually([&] { return site.count("state = 'sent'") == 3; })) << daemon.output();
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(), 0);
  auto got = recipients(smtp);
  std::multiset<std::string> to(got.begin(), got.end());
  EXPECT_EQ(to, (std::multiset<std::string>{email("acme-it", 0), email("acme-it", 1),
                                            email("acme-it", 2)}));
  EXPECT_EQ(site.count("state <> 'sent'"), 0);
}

TEST(BadInput, APartnerFileBrokenAcrossARestartKeepsItsLastGoodVersion) {
  auto db = fresh_database("input_partner_restart");
  if (db.empty()) return;
  TempDir flags;
  const fs::path tempfail = flags / "tempfail";
  write_file(tempfail, "");
  SmtpTestServer::Options options;
  options.tempfail_file = tempfail;
  SmtpTestServer smtp(options);
  Site site(db, smtp.port());
  site.add_partner("acme-it", 2);
  site.add_kit("cloud");
  site.migrate();
  {
    Process daemon(site.channeld({}), site.dir() / "daemon1.log");
    ASSERT_TRUE(eventually([&] { return site.count("attempts >= 1 AND state = 'queued'") == 2; }))
        << daemon.output();
    daemon.signal(SIGTERM);
    ASSERT_EQ(daemon.wait(), 0) << daemon.output();
  }
  write_file(site.partners() / "acme-it.toml", "id = \"acme-it\"\nname = \n");
  fs::remove(tempfail);

  const std::string log = site.run_until_idle();
  EXPECT_THAT(log, HasSubstr("partner acme-it: keeping the last good version"));
  EXPECT_EQ(recipients(smtp).size(), 2u) << log;
  EXPECT_EQ(site.count("state = 'sent'"), 2);
}

TEST(BadInput, AKitBrokenAcrossARestartSendsItsQueuedMailFromTheLastGoodVersion) {
  auto db = fresh_database("input_kit_restart");
  if (db.empty()) return;
  TempDir flags;
  const fs::path tempfail = flags / "tempfail";
  write_file(tempfail, "");
  SmtpTestServer::Options options;
  options.tempfail_file = tempfail;
  SmtpTestServer smtp(options);
  Site site(db, smtp.port());
  site.add_partner("acme-it", 2);
  site.add_kit("cloud", "<p>version one for {{contact.first_name}}</p>");
  site.migrate();
  {
    Process daemon(site.channeld({}), site.dir() / "daemon1.log");
    ASSERT_TRUE(eventually([&] { return site.count("attempts >= 1 AND state = 'queued'") == 2; }))
        << daemon.output();
    daemon.signal(SIGTERM);
    ASSERT_EQ(daemon.wait(), 0) << daemon.output();
  }
  // Broken while no daemon runs: a new version with a syntax error.
  write_file(site.campaigns() / "cloud" / "kit.toml", "id = \"cloud\"\nversion = \n");
  fs::remove(tempfail);

  const std::string log = site.run_until_idle();
  EXPECT_THAT(log, HasSubstr("kit refused"));
  const auto messages = smtp.messages();
  ASSERT_EQ(messages.size(), 2u) << log;
  for (const auto& m : messages) EXPECT_THAT(m, HasSubstr("version one for"));
  EXPECT_EQ(site.count("state = 'expired'"), 0);
}

TEST(BadInput, AKitWhoseFolderIsDeletedHasItsQueuedMailStoppedAndCounted) {
  auto db = fresh_database("input_kit_deleted");
  if (db.empty()) return;
  TempDir flags;
  const fs::path tempfail = flags / "tempfail";
  write_file(tempfail, "");
  SmtpTestServer::Options options;
  options.tempfail_file = tempfail;
  SmtpTestServer smtp(options);
  Site site(db, smtp.port());
  site.add_partner("acme-it", 2);
  site.add_kit("cloud");
  site.migrate();
  Process daemon(site.channeld({}), site.dir() / "daemon.log");
  ASSERT_TRUE(eventually([&] { return site.count("attempts >= 1 AND state = 'queued'") == 2; }))
      << daemon.output();
  fs::remove_all(site.campaigns() / "cloud");
  ASSERT_TRUE(eventually([&] { return site.count("state = 'expired'") == 2; })) << daemon.output();
  EXPECT_THAT(daemon.output(), HasSubstr("kit cloud removed: "));
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(), 0);
}

TEST(BadInput, APartnerWhoseFileIsDeletedHasItsQueuedMailExpiredInOneLoggedStep) {
  auto db = fresh_database("input_partner_deleted");
  if (db.empty()) return;
  TempDir flags;
  const fs::path tempfail = flags / "tempfail";
  write_file(tempfail, "");
  SmtpTestServer::Options options;
  options.tempfail_file = tempfail;
  SmtpTestServer smtp(options);
  Site site(db, smtp.port());
  // After its first 451 a message waits an hour: no claim can race the deletion below.
  std::string config = read_file(site.config());
  for (const std::string key : {"backoff_base", "backoff_max"}) {
    const std::string was = key + " = \"1s\"";
    config.replace(config.find(was), was.size(), key + " = \"1h\"");
  }
  write_file(site.config(), config);
  site.add_partner("acme-it", 5);
  site.add_partner("northwind", 2);
  site.add_kit("cloud");
  site.add_kit("webinar");
  site.migrate();
  Process daemon(site.channeld({}), site.dir() / "daemon.log");
  ASSERT_TRUE(eventually([&] { return site.count("attempts = 1 AND state = 'queued'") == 14; }))
      << daemon.output();

  fs::remove(site.partners() / "acme-it.toml");
  ASSERT_TRUE(eventually([&] {
    return daemon.output().find("partner acme-it removed") != std::string::npos;
  })) << daemon.output();
  EXPECT_EQ(site.count("partner_id = 'acme-it' AND state = 'expired'"), 10);
  EXPECT_EQ(site.messages_with_event("kind = 'expired' AND detail = 'partner removed'"), 10);
  EXPECT_EQ(site.count("partner_id = 'northwind' AND state = 'queued'"), 4);
  const std::string log = daemon.output();
  EXPECT_EQ(lines_with(log, "partner acme-it removed: 10 queued messages will not be sent"), 1u)
      << log;
  EXPECT_EQ(lines_with(log, "message expired"), 0u) << "one line for the partner, none per message";
  EXPECT_EQ(metric(log, "channeld_messages_total{state=\"expired\"}"), 10);
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(), 0);
}

// ---- 3. suppressions fail closed ---------------------------------------------------------

// Every queued row's attempts, due and update times and the count of its events, by id.
std::string outbox_state(const std::string& database) {
  soci::session db("postgresql", database);
  soci::rowset<soci::row> rows =
      (db.prepare << "SELECT o.id, o.attempts, CAST(o.due_at AS text), CAST(o.updated_at AS text),"
                     " (SELECT count(*) FROM delivery_event e WHERE e.outbox_id = o.id), o.state"
                     " FROM outbox o ORDER BY o.id");
  std::ostringstream out;
  for (const auto& row : rows) {
    out << row.get<long long>(0) << " " << row.get<int>(1) << " " << row.get<std::string>(2) << " "
        << row.get<std::string>(3) << " " << row.get<long long>(4) << " " << row.get<std::string>(5)
        << "\n";
  }
  return out.str();
}

TEST(BadInput, AMisspeltSuppressionFileStopsClaimingAndTheSuppressedAddressGetsNothing) {
  auto db = fresh_database("input_suppressions");
  if (db.empty()) return;
  SmtpTestServer smtp;
  Site site(db, smtp.port());
  site.add_partner("acme-it", 3);
  site.add_kit("cloud");
  write_file(site.partners() / "suppressions.csv",
             "email,partner,reason\n" + email("acme-it", 1) + ",acme-it,asked to stop\n");
  site.migrate();

  auto [check_code, check] = run_program(site.channeld({"check-config"}));
  EXPECT_EQ(check_code, 2);
  EXPECT_THAT(check, HasSubstr("unknown column 'partner'"));

  Process daemon(site.channeld({}), site.dir() / "daemon.log");
  ASSERT_TRUE(eventually([&] { return site.count("state = 'queued'") == 3; })) << daemon.output();
  const auto passes = [&] { return metric(daemon.output(), "channeld_claim_passes_held_total"); };
  // A pass that saw the rows, then the state, then several passes later the same state.
  const double seen = passes();
  ASSERT_GE(seen, 0) << daemon.output();
  ASSERT_TRUE(eventually([&] { return passes() >= seen + 1; })) << daemon.output();
  const std::string before = outbox_state(db);
  const double then = passes();
  ASSERT_TRUE(eventually([&] { return passes() >= then + 3; })) << daemon.output();
  EXPECT_EQ(outbox_state(db), before) << "a held queue is left untouched";
  EXPECT_EQ(site.count("state = 'queued' AND attempts = 0"), 3);
  EXPECT_EQ(site.messages_with_event("kind = 'deferred'"), 0);
  EXPECT_EQ(metric(daemon.output(), "channeld_sending_held"), 1);
  EXPECT_EQ(lines_with(daemon.output(), "sending held: "), 1u) << daemon.output();
  auto [kits_code, kits] = run_program(site.channeld({"kits"}));
  EXPECT_EQ(kits_code, 0);
  EXPECT_THAT(kits, HasSubstr("SENDING HELD"));
  EXPECT_TRUE(smtp.messages().empty());

  write_file(site.partners() / "suppressions.csv",
             "email,partner_id,reason\n" + email("acme-it", 1) + ",acme-it,asked to stop\n");
  ASSERT_TRUE(eventually([&] { return site.count("state = 'sent'") == 2; })) << daemon.output();
  ASSERT_TRUE(eventually([&] { return site.count("state = 'suppressed'") == 1; }));
  EXPECT_EQ(lines_with(daemon.output(), "sending resumes"), 1u) << daemon.output();
  EXPECT_EQ(metric(daemon.output(), "channeld_sending_held"), 0);
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(), 0);
  auto got = recipients(smtp);
  EXPECT_EQ(std::multiset<std::string>(got.begin(), got.end()),
            (std::multiset<std::string>{email("acme-it", 0), email("acme-it", 2)}));
}

// ---- 5. files stay in their folders ------------------------------------------------------

TEST(BadInput, ASymlinkToAFileOutsideTheKitIsRefusedAndNothingLeaks) {
  auto db = fresh_database("input_symlink");
  if (db.empty()) return;
  SmtpTestServer smtp;
  Site site(db, smtp.port());
  site.add_partner("acme-it", 1);
  site.add_kit("notes", "<p>{{> notes}}</p>");
  fs::create_symlink(site.dir() / "link.secret", site.campaigns() / "notes" / "notes.mustache");
  site.add_kit("good");
  const std::string secret = read_file(site.dir() / "link.secret");

  auto [check_code, check] = run_program(site.channeld({"check-config"}));
  EXPECT_EQ(check_code, 2);
  EXPECT_THAT(check, HasSubstr("leads outside"));
  EXPECT_THAT(check, Not(HasSubstr(secret)));

  TempDir out;
  auto [preview_code, preview] = run_program(site.channeld(
      {"preview", "--kit", "notes", "--partner", "acme-it", "--out", out.path().string()}));
  EXPECT_EQ(preview_code, 2);
  EXPECT_THAT(preview, HasSubstr("leads outside"));
  EXPECT_THAT(preview, Not(HasSubstr(secret)));
  EXPECT_TRUE(fs::is_empty(out.path()));

  const std::string log = site.run_until_idle();
  EXPECT_THAT(log, Not(HasSubstr(secret)));
  const auto messages = smtp.messages();
  ASSERT_EQ(messages.size(), 1u) << "the good kit sends";
  EXPECT_THAT(messages[0], Not(HasSubstr(secret)));
  EXPECT_THAT(messages[0], HasSubstr("Kit good"));
}

// ---- 6. limits ----------------------------------------------------------------------------

TEST(BadInput, AnExponentialPartialsKitIsRefusedQuicklyWhileOtherKitsSendAndSigtermIsHonoured) {
  auto db = fresh_database("input_partials_bomb");
  if (db.empty()) return;
  SmtpTestServer smtp;
  Site site(db, smtp.port());
  site.add_partner("acme-it", 2);
  site.add_kit("bomb", "{{> p0}}");
  for (int i = 0; i < 10; ++i) {
    std::string body = "x";
    for (int k = 0; k < 10; ++k) body += "{{> p" + std::to_string(i + 1) + "}}";
    write_file(site.campaigns() / "bomb" / ("p" + std::to_string(i) + ".mustache"), body);
  }
  write_file(site.campaigns() / "bomb" / "p10.mustache", std::string(1000, 'y'));
  site.add_kit("good");
  site.migrate();

  const auto started = std::chrono::steady_clock::now();
  Process daemon(site.channeld({}), site.dir() / "daemon.log");
  ASSERT_TRUE(eventually([&] { return site.count("state = 'sent'") == 2; }, 60s))
      << daemon.output();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 30s);
  EXPECT_THAT(daemon.output(), HasSubstr("limits.template_expansion_bytes"));
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(30s), 0) << daemon.output();
  for (const auto& m : smtp.messages()) EXPECT_THAT(m, HasSubstr("Kit good"));
}

// ---- 4. what a send would fail on ---------------------------------------------------------

TEST(BadInput, ControlCharactersAreRefusedAndAThreeThousandCharacterNameSends) {
  auto db = fresh_database("input_headers");
  if (db.empty()) return;
  SmtpTestServer smtp;
  Site site(db, smtp.port());
  site.add_partner("acme-it", 1);
  site.add_partner("longname", 1);
  site.add_partner("zcontrol", 1);
  write_file(site.partners() / "longname.toml",
             site.partner_toml("longname", std::string(3000, 'L') + " Partner"));
  write_file(site.partners() / "zcontrol.toml",
             site.partner_toml("zcontrol", "Evil\\r\\nBcc: x@y"));
  write_file(site.partners() / "acme-it.csv", "email,first_name,last_name,company\n" +
                                                  email("acme-it", 0) +
                                                  ",\"Ann\rBcc: someone@else.example\",Lee,Co\n" +
                                                  email("acme-it", 1) + ",Bob,Stone,Co\n");
  site.add_kit("cloud");

  auto [code, check] = run_program(site.channeld({"check-config"}));
  EXPECT_EQ(code, 2);
  EXPECT_THAT(check, HasSubstr((site.partners() / "zcontrol.toml").string() + ":2: name"));
  EXPECT_THAT(check, HasSubstr("control characters"));

  const std::string log = site.run_until_idle();
  EXPECT_THAT(log, HasSubstr((site.partners() / "acme-it.csv").string() +
                             ":2: first_name contains a line break"));
  auto got = recipients(smtp);
  std::multiset<std::string> to(got.begin(), got.end());
  EXPECT_EQ(to, (std::multiset<std::string>{email("acme-it", 1), email("longname", 0)}));
  for (const auto& m : smtp.messages()) {
    EXPECT_THAT(m, Not(HasSubstr("Bcc:")));
    const std::string head = m.substr(0, m.find("\r\n\r\n"));
    // RFC 5322: 998 at most, 78 recommended (and kept for the names that could be long).
    std::istringstream lines(head);
    bool in_mailbox = false;
    for (std::string line; std::getline(lines, line);) {
      if (line[0] != ' ') in_mailbox = line.starts_with("From: ") || line.starts_with("To: ");
      EXPECT_LE(line.size(), in_mailbox ? 79u : 999u) << line;
    }
  }
  EXPECT_EQ(site.count("state = 'failed'"), 0);
}

TEST(BadInput, ASubjectThatWouldBreakIntoTwoLinesIsRefusedAtLoadAndThePreviousVersionSends) {
  auto db = fresh_database("input_subject_line_break");
  if (db.empty()) return;
  TempDir flags;
  const fs::path tempfail = flags / "tempfail";
  write_file(tempfail, "");
  SmtpTestServer::Options options;
  options.tempfail_file = tempfail;
  SmtpTestServer smtp(options);
  Site site(db, smtp.port());
  site.add_partner("acme-it", 2);
  site.add_kit("cloud");
  site.migrate();
  Process daemon(site.channeld({}), site.dir() / "daemon.log");
  ASSERT_TRUE(eventually([&] { return site.count("attempts >= 1 AND state = 'queued'") == 2; }))
      << daemon.output();

  // Version 2: its subject pulls in a partial whose text has a line break.
  const fs::path kit_toml = site.campaigns() / "cloud" / "kit.toml";
  write_file(site.campaigns() / "cloud" / "headline.mustache", "Your cloud move\nstarts now");
  std::string v2 = Site::kit_toml("cloud", 2);
  const std::string subject = "subject = \"Kit cloud";
  v2.replace(v2.find(subject), subject.size(), "subject = \"{{> headline}}");
  write_file(kit_toml, v2);
  const std::string refusal = kit_toml.string() +
                              ": partner 'acme-it': step 'announce' subject would carry a line "
                              "break or control character into the Subject header";
  ASSERT_TRUE(eventually([&] { return daemon.output().find(refusal) != std::string::npos; }))
      << daemon.output();
  auto [code, check] = run_program(site.channeld({"check-config"}));
  EXPECT_EQ(code, 2);
  EXPECT_THAT(check, HasSubstr(refusal));

  fs::remove(tempfail);
  ASSERT_TRUE(eventually([&] { return site.count("state = 'sent'") == 2; })) << daemon.output();
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(), 0);
  EXPECT_EQ(subjects_to(smtp), (std::multiset<std::string>{
                                   "Kit cloud for Partner acme-it -> " + email("acme-it", 0),
                                   "Kit cloud for Partner acme-it -> " + email("acme-it", 1)}));
  EXPECT_EQ(site.count("state = 'failed'"), 0);
}

// ---- 8. [database] url --------------------------------------------------------------------

// A private cluster that checks passwords (the shared test cluster trusts everyone, so it
// would accept any password and prove nothing).
// Starts a cluster in $1 with superuser channeld whose password is in file $2, on a free port
// from $3 (the free-port script); prints the port. As root, PostgreSQL runs as `postgres`.
constexpr const char* kStartPasswordCluster = R"sh(set -e
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg=""
if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$1"; as_pg="runuser -u postgres --"; fi
$as_pg "$bin/initdb" -D "$1/data" -A scram-sha-256 -U channeld --pwfile="$2" -E UTF8 --locale=C.UTF-8 >/dev/null
# A port free when looked at may be taken before the server binds it (tests run two at a time):
# another free port then, a few times, and the server's own log if it still will not start.
for attempt in 1 2 3 4 5; do
  port=$("$3" $((56150 + 40 * attempt)))
  if $as_pg "$bin/pg_ctl" -D "$1/data" -l "$1/server.log" -w -t 60 \
       -o "-p $port -k $1 -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null; then
    echo "$port"
    exit 0
  fi
done
cat "$1/server.log"
exit 1
)sh";

constexpr const char* kStopPasswordCluster =
    R"sh(bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg=""
if [ "$(id -u)" -eq 0 ]; then as_pg="runuser -u postgres --"; fi
$as_pg "$bin/pg_ctl" -D "$1/data" -m immediate -w stop
)sh";

// A private cluster that checks passwords (the shared test cluster trusts everyone, so it
// would accept any password and prove nothing).
class PasswordCluster {
 public:
  explicit PasswordCluster(const std::string& password) {
    const std::string pwfile = (dir_ / "pw").string();
    write_file(pwfile, password + "\n");
    auto [code, out] =
        run_program({"/bin/bash", "-c", kStartPasswordCluster, "start", dir_.path().string(),
                     pwfile, (source_dir() / "scripts" / "free-port.sh").string()});
    if (code != 0) {
      ADD_FAILURE() << "could not start a password cluster: " << out;
      return;
    }
    port_ = std::stoi(out.substr(out.find_last_of('\n', out.size() - 2) + 1));
  }
  ~PasswordCluster() {
    if (port_ != 0)
      run_program({"/bin/bash", "-c", kStopPasswordCluster, "stop", dir_.path().string()});
  }
  int port() const { return port_; }

 private:
  TempDir dir_;
  int port_ = 0;
};

TEST(BadInput, TheDatabaseUrlWorksInBothLibpqFormsWithAPasswordFullOfSpecialCharacters) {
  if (std::getenv("CHANNELD_TEST_PG") == nullptr) return missing_server("PostgreSQL");
  const std::string password = "@:/ '\"\\x";
  PasswordCluster cluster(password);
  if (cluster.port() == 0) return;
  SmtpTestServer smtp;
  const std::string port = std::to_string(cluster.port());
  auto migrate_with = [&](const std::string& toml_url) {
    Site site("unused", smtp.port());
    std::string config = read_file(site.config());
    config.replace(config.find("url = \"unused\""), 14, "url = " + toml_url);
    write_file(site.config(), config);
    return run_program(site.channeld({"migrate"}));
  };
  // The URI form the contract shows, password percent-encoded.
  auto [uri_code, uri_out] = migrate_with(
      "\"postgresql://channeld:%40%3A%2F%20%27%22%5Cx@127.0.0.1:" + port + "/postgres\"");
  EXPECT_EQ(uri_code, 0) << uri_out;
  // key=value, the password single-quoted with ' and \ backslash-escaped, as libpq wants it;
  // then written as a TOML basic string.
  const std::string conninfo =
      "host=127.0.0.1 port=" + port + " user=channeld dbname=postgres password='@:/ \\'\"\\\\x'";
  std::string toml = "\"";
  for (char c : conninfo) {
    if (c == '"' || c == '\\') toml += '\\';
    toml += c;
  }
  auto [kv_code, kv_out] = migrate_with(toml + "\"");
  EXPECT_EQ(kv_code, 0) << kv_out;
  // A wrong password: refused, and the error does not show it.
  auto [bad_code, bad_out] =
      migrate_with("\"postgresql://channeld:wrong%20secret@127.0.0.1:" + port + "/postgres\"");
  EXPECT_NE(bad_code, 0);
  EXPECT_THAT(bad_out, HasSubstr("password authentication failed"));
  EXPECT_THAT(bad_out, Not(HasSubstr("wrong secret")));
  EXPECT_THAT(bad_out, Not(HasSubstr("wrong%20secret")));
}

// ---- 4. the unit starts with a broken kit in the folder ------------------------------------

TEST(BadInput, TheUnitStartsWithABrokenKitInTheFolder) {
  auto db = fresh_database("input_unit_start");
  if (db.empty()) return;
  SmtpTestServer smtp;
  Site site(db, smtp.port());
  site.add_partner("acme-it", 1);
  site.add_kit("good");
  site.add_kit("broken");
  write_file(site.campaigns() / "broken" / "kit.toml", "id = \"broken\"\nname = \n");

  // ExecStartPre exactly as the shipped unit runs it.
  const std::string unit = read_file(source_dir() / "systemd" / "channeld.service");
  const auto pre = unit.find("ExecStartPre=");
  ASSERT_NE(pre, std::string::npos);
  std::istringstream words(unit.substr(pre + 13, unit.find('\n', pre) - pre - 13));
  std::vector<std::string> args;
  for (std::string word; words >> word;) args.push_back(word);
  ASSERT_GE(args.size(), 2u);
  std::vector<std::string> argv{channeld_binary().string()};
  for (std::size_t i = 1; i < args.size(); ++i)
    argv.push_back(args[i] == "/etc/channeld/channeld.toml" ? site.config().string() : args[i]);
  auto [code, out] = run_program(argv);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("kit refused"));

  // The check the unit does not use still says the folder has a problem.
  EXPECT_EQ(run_program(site.channeld({"check-config"})).first, 2);

  site.run_until_idle();
  EXPECT_EQ(smtp.messages().size(), 1u);

  // What the daemon cannot run without still stops the unit.
  write_file(site.config(), read_file(site.config()) + "[smpt]\n");
  EXPECT_EQ(run_program(argv).first, 2);
}

}  // namespace
}  // namespace channeld::testing
