// Partner proofs end to end: the real channeld binary, PostgreSQL and the SMTP test server. Two
// partners with a reply_to get a proof of a kit's first email before it goes out; one opts out
// through the proof's link, and the step then reaches only the other's contacts. The API's
// opt-out call is checked for 401/403/400, and the store's opt-out for what it cancels.
#include "store/proofs.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <soci/soci.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "store/store.hpp"
#include "support/process.hpp"
#include "support/smtp_server.hpp"
#include "support/support.hpp"

namespace channeld::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

std::string decode_qp(const std::string& in) {
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '=' && i + 1 < in.size() && (in[i + 1] == '\r' || in[i + 1] == '\n')) {
      i += in[i + 1] == '\r' ? 2 : 1;
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

struct Mail {
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string decoded;
};

Mail parse_mail(const std::string& raw) {
  Mail m;
  std::size_t end = raw.find("\r\n\r\n");
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
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    m.headers[name] = line.substr(colon + 2);
  }
  m.decoded = decode_qp(raw.substr(end == std::string::npos ? raw.size() : end));
  return m;
}

std::string first_match(const std::string& text, const std::string& pattern) {
  std::smatch m;
  return std::regex_search(text, m, std::regex(pattern)) ? m[0].str() : std::string();
}

// A kit start as TOML local date-time, `ahead` from now (partners here live in UTC).
std::string local_start(std::chrono::hours ahead) {
  const auto t = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now() + ahead);
  const auto day = std::chrono::floor<std::chrono::days>(t);
  const std::chrono::year_month_day date{day};
  const std::chrono::hh_mm_ss time{t - day};
  char text[32];
  std::snprintf(text, sizeof text, "%04d-%02u-%02uT%02d:%02d:%02d", static_cast<int>(date.year()),
                static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()),
                static_cast<int>(time.hours().count()), static_cast<int>(time.minutes().count()),
                static_cast<int>(time.seconds().count()));
  return text;
}

// acme-it and northwind have a reply_to; plain has none. Two contacts each; one kit.
class ProofSite {
 public:
  ProofSite(const std::string& database, int smtp_port) : database_(database) {
    fs::copy(source_dir() / "templates", dir_ / "templates", fs::copy_options::recursive);
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
timeout = "3s"
[proofs]
lead_time = "72h"
[vendor]
name = "Vendor Inc."
postal_address = "1 Vendor Way, Springfield, IL 62701, USA"
[limits]
messages_per_second = 0
per_partner_per_second = 0
[delivery]
scan_interval = "1s"
)");
    for (const std::string id : {"acme-it", "northwind", "plain"}) {
      write_file(dir_ / "partners" / (id + ".toml"),
                 "id = \"" + id + R"("
name = "Partner )" + id +
                     R"("
tier = "gold"
type = "msp"
timezone = "UTC"
contacts = ")" + id + R"(.csv"
[branding]
website = "https://)" +
                     id + R"(.example"
sender_name = "Sender )" +
                     id + "\"\n" +
                     (id == "plain" ? "" : "reply_to = \"marketing@" + id + ".example\"\n"));
      write_file(dir_ / "partners" / (id + ".csv"),
                 "email,first_name,last_name,company,industry\n"
                 "ann@" +
                     id + ".example,Ann,Real,Co " + id +
                     ",retail\n"
                     "bob@" +
                     id + ".example,Bob,Real,Co " + id + ",retail\n");
    }
    write_kit(local_start(std::chrono::hours(48)));
  }

  // Start in UTC wall time; each kit.toml write keeps version 1.
  void write_kit(const std::string& start) const {
    write_file(dir_ / "campaigns" / "launch" / "kit.toml", R"(id = "launch"
name = "Product Launch"
version = 1
owner = "field-marketing@vendor.example"
expires = 2099-12-31
[audience]
[schedule]
start = )" + start + R"(
window = { days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], from = "00:00", to = "24:00" }
[[steps]]
id = "announce"
channel = "email"
subject = "{{partner.name}}: the launch"
html = "body.html.mustache"
text = "body.txt.mustache"
)");
    write_file(dir_ / "campaigns" / "launch" / "body.html.mustache",
               "<p>Hello {{contact.first_name}} of {{contact.company}} ({{contact.industry}}), "
               "<a href=\"https://vendor.example/launch\">see the launch</a> with "
               "{{partner.name}}.</p>");
    write_file(dir_ / "campaigns" / "launch" / "body.txt.mustache",
               "Hello {{contact.first_name}}, the launch with {{partner.name}}.\n");
  }

  std::vector<std::string> channeld(std::vector<std::string> args) const {
    std::vector<std::string> argv{channeld_binary().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--config", (dir_ / "channeld.toml").string()});
    return argv;
  }
  const fs::path& dir() const { return dir_.path(); }

  std::string query(const std::string& sql) const {
    soci::session db("postgresql", database_);
    std::string value;
    db << sql, soci::into(value);
    return value;
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

std::string path_of(const std::string& url) {
  const std::string base = "https://mkt.vendor.example";
  return url.rfind(base, 0) == 0 ? url.substr(base.size()) : url;
}

TEST(Proofs, EachPartnerGetsAProofAndOneThatOptsOutByTheLinkGetsNothingFromTheKit) {
  auto db = fresh_database("proofs_opt_out");
  if (db.empty()) return;
  SmtpTestServer smtp;
  if (!smtp.available()) return;
  ProofSite site(db, smtp.port());
  ASSERT_EQ(run_program(site.channeld({"migrate"})).first, 0);

  auto [checked, check_out] = run_program(site.channeld({"check-config"}));
  EXPECT_EQ(checked, 0) << "a missing reply_to is a warning, not an error";
  EXPECT_THAT(check_out, HasSubstr("partner plain has no branding.reply_to, so it gets no proof"));

  Process daemon(site.channeld({}), site.dir() / "first.log");
  // The kit starts in two days, inside the 72 h lead time: both proofs go at once.
  ASSERT_TRUE(eventually([&] { return smtp.messages().size() == 2; })) << daemon.output();
  std::map<std::string, Mail> proofs;
  for (const auto& raw : smtp.messages()) {
    Mail m = parse_mail(raw);
    proofs[m.headers["to"]] = m;
  }
  ASSERT_EQ(proofs.size(), 2u);
  for (const auto& [to, m] : proofs) {
    SCOPED_TRACE(to);
    const std::string partner = to.find("acme-it") != std::string::npos ? "acme-it" : "northwind";
    EXPECT_THAT(to, HasSubstr("<marketing@" + partner + ".example>"));
    EXPECT_EQ(m.headers.at("subject"), "[Proof] Partner " + partner + ": the launch");
    EXPECT_THAT(m.headers.at("from"), HasSubstr("Sender " + partner));
    EXPECT_EQ(m.headers.at("reply-to"), "field-marketing@vendor.example");
    EXPECT_THAT(m.headers.at("content-type"), HasSubstr("multipart/alternative"));
    EXPECT_EQ(m.headers.count("date"), 1u);
    EXPECT_THAT(m.headers.at("message-id"), HasSubstr("@mkt.vendor.example>"));
    EXPECT_EQ(m.headers.count("list-unsubscribe"), 0u) << "a proof is no customer mail";
    EXPECT_THAT(m.decoded, HasSubstr("Proof for Sender " + partner));
    EXPECT_THAT(m.decoded, HasSubstr("It goes out on "));
    EXPECT_THAT(m.decoded, HasSubstr("(UTC) to 2 of your contacts"));
    EXPECT_THAT(m.decoded, HasSubstr("POST /v1/proofs/opt-out"));
    EXPECT_THAT(m.decoded, HasSubstr("Hello [first_name] of [company] ([industry])"));
    EXPECT_THAT(m.decoded, HasSubstr("with Partner " + partner));
    EXPECT_THAT(m.decoded, HasSubstr("href=\"https://vendor.example/launch\""))
        << "links are the kit's own, untracked";
    EXPECT_THAT(m.decoded, Not(HasSubstr("/o/"))) << "no open pixel";
    EXPECT_THAT(m.decoded, Not(HasSubstr("@" + partner + ".example,")));
    EXPECT_THAT(m.decoded, Not(HasSubstr("Ann")));
  }
  EXPECT_EQ(site.query("SELECT CAST(count(*) AS text) FROM outbox WHERE channel <> 'proof'"), "0")
      << "the step itself waits for its start";

  const int port = http_port_from_log(daemon.output());
  ASSERT_GT(port, 0) << daemon.output();
  httplib::Client http("127.0.0.1", port);
  const Mail& acme = proofs.begin()->first.find("acme-it") != std::string::npos
                         ? proofs.begin()->second
                         : std::next(proofs.begin())->second;
  const std::string link =
      first_match(acme.decoded, "https://mkt\\.vendor\\.example/p/[A-Za-z0-9_.-]+");
  ASSERT_FALSE(link.empty()) << acme.decoded;
  auto page = http.Get(path_of(link));
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_THAT(page->body, HasSubstr("Product Launch"));
  EXPECT_THAT(page->body, HasSubstr("Sender acme-it"));
  EXPECT_EQ(site.query("SELECT CAST(count(*) AS text) FROM proof_opt_out"), "0")
      << "showing the page opts out of nothing";
  std::string forged = path_of(link);
  forged[forged.size() - 2] = forged[forged.size() - 2] == 'A' ? 'B' : 'A';
  auto refused = http.Post(forged, "", "application/x-www-form-urlencoded");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 404);
  auto opted = http.Post(path_of(link), "", "application/x-www-form-urlencoded");
  ASSERT_TRUE(opted);
  EXPECT_EQ(opted->status, 200);
  EXPECT_EQ(
      site.query("SELECT partner_id || ' ' || via FROM proof_opt_out WHERE kit_id = 'launch'"),
      "acme-it link");

  // The API call: partner tokens opt out only their own partner.
  auto token = [&](const std::string& role, const std::string& name) {
    auto [code, out] =
        run_program(site.channeld({"token", "create", "--role", role, "--name", name}));
    EXPECT_EQ(code, 0) << out;
    return first_match(out, "chd_[A-Za-z0-9_-]{43}");
  };
  const std::string northwind = token("partner:northwind", "northwind-crm");
  const std::string admin = token("admin", "ops");
  auto post = [&](const std::string& bearer, const std::string& body) {
    httplib::Headers headers;
    if (!bearer.empty()) headers.emplace("Authorization", "Bearer " + bearer);
    return http.Post("/v1/proofs/opt-out", headers, body, "application/json");
  };
  auto r = post("", R"({"kit": "launch"})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  r = post(northwind, R"({"kit": "launch", "partner_id": "acme-it"})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  r = post(northwind, "{not json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  r = post(northwind, R"({"partner_id": "northwind"})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << "no kit";
  r = post(admin, R"({"kit": "launch"})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << "admin names the partner";
  r = post(admin, R"({"kit": "no-such-kit", "partner_id": "northwind"})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  r = post(admin, R"({"kit": "launch", "partner_id": "acme-it"})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_THAT(r->body, HasSubstr("\"already\":true"));
  EXPECT_EQ(site.query("SELECT CAST(count(*) AS text) FROM proof_opt_out"), "1")
      << "northwind is still in";

  daemon.signal(SIGTERM);
  ASSERT_EQ(daemon.wait(), 0) << daemon.output();

  // A restart finds both proofs sent and sends neither again.
  {
    Process again(site.channeld({"--until-idle"}), site.dir() / "second.log");
    ASSERT_EQ(again.wait(), 0) << again.output();
  }
  EXPECT_EQ(smtp.messages().size(), 2u);
  EXPECT_EQ(site.query("SELECT CAST(count(*) AS text) FROM outbox WHERE channel = 'proof'"), "2");

  auto [listed, kits] = run_program(site.channeld({"kits"}));
  EXPECT_EQ(listed, 0) << kits;
  EXPECT_THAT(kits, HasSubstr("kit launch: opted out: acme-it (link"));

  // The start arrives (the kit is moved to a start in the past; same version, so no new
  // proof): the step goes to northwind's and plain's contacts, none to acme-it's.
  site.write_kit("2020-01-01T00:00:00");
  {
    Process last(site.channeld({"--until-idle"}), site.dir() / "third.log");
    ASSERT_EQ(last.wait(), 0) << last.output();
  }
  std::set<std::string> recipients;
  for (const auto& raw : smtp.messages()) {
    Mail m = parse_mail(raw);
    if (m.headers["subject"].rfind("[Proof]", 0) == 0) continue;
    recipients.insert(first_match(m.headers["to"], "[a-z]+@[a-z-]+\\.example"));
  }
  EXPECT_EQ(recipients, (std::set<std::string>{"ann@northwind.example", "bob@northwind.example",
                                               "ann@plain.example", "bob@plain.example"}));
  EXPECT_EQ(smtp.messages().size(), 6u) << "two proofs, four contact messages";
  EXPECT_EQ(site.query("SELECT CAST(count(*) AS text) FROM outbox WHERE partner_id = 'acme-it'"
                       " AND channel = 'email'"),
            "0");
}

TEST(ProofStore, OptingOutSettlesOnlyThePairsQueuedMessagesAndIsIdempotent) {
  auto db = fresh_database("proofs_store");
  if (db.empty()) return;
  store::Store store(db, 1);
  store.migrate();
  using namespace std::chrono_literals;
  const SysTime now = SysTime{std::chrono::sys_days{std::chrono::year{2026} / 12 / 1}};
  auto message = [&](const std::string& kit, const std::string& partner, const std::string& email,
                     Channel channel = Channel::email) {
    store::NewMessage m;
    m.kit_id = kit;
    m.kit_version = 1;
    m.step_id = "announce";
    m.partner_id = partner;
    m.channel = channel;
    m.email = email;
    m.contact_json = R"({"email": ")" + email + R"("})";
    m.due_at = now + 1h;
    return m;
  };
  ASSERT_EQ(
      store.enqueue({message("launch", "acme-it", "a@x.example"),
                     message("launch", "acme-it", "b@x.example"),
                     message("launch", "acme-it", "marketing@acme-it.example", Channel::proof),
                     message("launch", "northwind", "c@y.example"),
                     message("other", "acme-it", "a@x.example")}),
      5u);
  store::Proofs proofs(store);
  auto first = proofs.opt_out("launch", "acme-it", "link", now);
  EXPECT_TRUE(first.recorded);
  EXPECT_EQ(first.cancelled, 3u) << "both contacts and the proof";
  auto again = proofs.opt_out("launch", "acme-it", "api:acme-crm", now + 1min);
  EXPECT_FALSE(again.recorded);
  EXPECT_EQ(again.cancelled, 0u);

  soci::session sql("postgresql", db);
  auto text = [&](const std::string& q) {
    std::string v;
    sql << q, soci::into(v);
    return v;
  };
  EXPECT_EQ(text("SELECT string_agg(kit_id || '/' || partner_id || ':' || state, ',' ORDER BY id)"
                 " FROM outbox"),
            "launch/acme-it:expired,launch/acme-it:expired,launch/acme-it:expired,"
            "launch/northwind:queued,other/acme-it:queued");
  EXPECT_EQ(text("SELECT string_agg(DISTINCT last_error, ',') FROM outbox WHERE state = 'expired'"),
            store::kOptedOutDetail);
  EXPECT_EQ(text("SELECT CAST(count(*) AS text) FROM delivery_event WHERE detail = '" +
                 std::string(store::kOptedOutDetail) + "'"),
            "3");
  const auto pairs = proofs.opted_out_pairs();
  EXPECT_EQ(pairs, (std::set<std::pair<std::string, std::string>>{{"launch", "acme-it"}}));
  ASSERT_EQ(proofs.opt_outs().size(), 1u);
  EXPECT_EQ(proofs.opt_outs()[0].via, "link") << "the first opt-out is the one kept";

  const std::string key = store::proof_key("launch", 1, "announce", "northwind");
  EXPECT_TRUE(proofs.existing({key}).empty());
  store::NewMessage proof =
      message("launch", "northwind", "marketing@northwind.example", Channel::proof);
  EXPECT_EQ(store::idempotency_key(proof.kit_id, proof.step_id, proof.partner_id, proof.email),
            "launch/announce/northwind/marketing@northwind.example")
      << "a contact's key, never a proof's";
  EXPECT_NE(key, store::idempotency_key("launch", "announce", "northwind", "x@y.example"));

  store.suppress("a@x.example", "", "hard bounce");
  store.suppress("b@x.example", "acme-it", "unsubscribed");
  store.suppress("c@y.example", "northwind", "unsubscribed");
  EXPECT_EQ(proofs.suppressed_among("acme-it",
                                    {"a@x.example", "b@x.example", "c@y.example", "d@x.example"}),
            2u);
}

}  // namespace
}  // namespace channeld::testing
