#include <gmock/gmock.h>
#include <gtest/gtest.h>

// See daemon/catalog/watcher.cpp: GCC 12 warns inside Asio 1.74 once it is inlined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <boost/asio/io_context.hpp>
#pragma GCC diagnostic pop

#include <chrono>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "catalog/catalog.hpp"
#include "catalog/checks.hpp"
#include "catalog/watcher.hpp"
#include "support/support.hpp"

namespace channeld::catalog {
namespace {

namespace fs = std::filesystem;
using channeld::testing::read_file;
using channeld::testing::TempDir;
using channeld::testing::write_file;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

// The message of the InputError `f` throws, or a failure if it throws none.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an InputError";
  return "";
}

// ---- config -------------------------------------------------------------------------------

// The contract's example, verbatim apart from the paths.
const std::string kContractConfig = R"([database]
url = "postgresql://channeld@localhost/channeld"

[paths]
campaigns = "campaigns"
templates = "/etc/channeld/templates"
partners  = "partners"
claims    = "claims"
outbox    = ""

[http]
listen = "127.0.0.1:8025"
public_url = "https://mkt.vendor.example"

[smtp]
url = "smtp://127.0.0.1:25"
username = ""
password_file = ""
from_address = "partners@mkt.vendor.example"

[webhooks]
allow = []

[proofs]
lead_time = "48h"

[vendor]
name = "Vendor Inc."
postal_address = "1 Vendor Way, Springfield, USA"

[limits]
messages_per_second = 200
per_partner_per_second = 50

[mdf]
currency = "USD"
allocation = { platinum = "20000.00", gold = "10000.00", silver = "2500.00", registered = "0" }
gross_margin_rate = 0.30
program_costs = { "2026-Q4" = "45000.00" }
)";

const std::string kMinimalConfig = R"([database]
url = "host=127.0.0.1 port=55432 user=channeld dbname=channeld"
[http]
public_url = "https://mkt.vendor.example/"
[smtp]
from_address = "partners@mkt.vendor.example"
[vendor]
name = "Vendor Inc."
postal_address = "1 Vendor Way"
)";

TEST(Config, LoadsTheContractExample) {
  TempDir dir;
  write_file(dir / "channeld.toml", kContractConfig);
  Config config = load_config((dir / "channeld.toml").string());

  EXPECT_EQ(config.database_url, "postgresql://channeld@localhost/channeld");
  EXPECT_EQ(config.paths.campaigns, (dir / "campaigns").string());
  EXPECT_EQ(config.paths.templates, "/etc/channeld/templates");
  EXPECT_EQ(config.paths.outbox, "");
  EXPECT_EQ(config.http.public_url, "https://mkt.vendor.example");
  EXPECT_EQ(config.smtp.from_address, "partners@mkt.vendor.example");
  EXPECT_EQ(config.proofs.lead_time, 48h);
  EXPECT_EQ(config.limits.messages_per_second, 200);
  EXPECT_EQ(config.mdf.allocation_minor.at(Tier::platinum), 2000000);
  EXPECT_EQ(config.mdf.allocation_minor.at(Tier::registered), 0);
  EXPECT_EQ(config.mdf.gross_margin_rate_bp, 3000);
  EXPECT_EQ(config.mdf.program_costs_minor.at("2026-Q4"), 4500000);
}

TEST(Config, PublicListenIsOffByDefaultAndMustBeHostAndPort) {
  TempDir dir;
  std::string path = (dir / "channeld.toml").string();
  write_file(path, kMinimalConfig);
  EXPECT_EQ(load_config(path).http.public_listen, "");
  std::string config = kMinimalConfig;
  config.replace(config.find("[http]\n"), 7, "[http]\npublic_listen = \"[::]:8080\"\n");
  write_file(path, config);
  EXPECT_EQ(load_config(path).http.public_listen, "[::]:8080");
  config.replace(config.find("[::]:8080"), 9, "8080");
  write_file(path, config);
  EXPECT_EQ(error_of([&] { load_config(path); }),
            path +
                ":4: http.public_listen: '8080' is not host:port, e.g. \"0.0.0.0:8080\" (or "
                "\"\" for none)");
}

TEST(Config, ReadsTheMarginRateExactlyAndRefusesBadProgramCosts) {
  TempDir dir;
  std::string path = (dir / "channeld.toml").string();
  auto with_mdf = [&](const std::string& mdf) {
    write_file(path, kMinimalConfig + "[mdf]\n" + mdf);
  };
  with_mdf("gross_margin_rate = \"0.2875\"\n");
  EXPECT_EQ(load_config(path).mdf.gross_margin_rate_bp, 2875);
  with_mdf("gross_margin_rate = 0.07\n");
  EXPECT_EQ(load_config(path).mdf.gross_margin_rate_bp, 700);
  with_mdf("gross_margin_rate = 0.12345\n");
  EXPECT_EQ(error_of([&] { load_config(path); }),
            path +
                ":11: mdf.gross_margin_rate: must be a rate from 0 to 1 with at most four "
                "decimals, e.g. 0.30");
  with_mdf("program_costs = { \"2026-Q5\" = \"1.00\" }\n");
  EXPECT_EQ(
      error_of([&] { load_config(path); }),
      path + ":11: mdf.program_costs.2026-Q5: '2026-Q5' is not a quarter such as \"2026-Q4\"");
  with_mdf("program_costs = { \"2026-Q4\" = 45000.5 }\n");
  EXPECT_THAT(error_of([&] { load_config(path); }),
              HasSubstr("mdf.program_costs.2026-Q4: write the amount as a decimal string"));
}

TEST(Config, LoadsTheShippedExampleWithEveryKey) {
  Config config =
      load_config((channeld::testing::source_dir() / "config/channeld.example.toml").string());
  EXPECT_FALSE(config.database_url.empty());
  EXPECT_EQ(config.mdf.allocation_minor.size(), 4u);
}

// Under systemd, LoadCredential= puts a root-owned 0600 secret where the DynamicUser service
// alone can read it; a bare file name in the config finds it there, and anything else (or a
// daemon outside systemd) resolves against the config's folder as before.
TEST(Config, ASecretNamedByABareFileNameIsReadFromTheServicesCredentials) {
  TempDir dir;
  const auto credentials = dir / "credentials";
  write_file(credentials / "smtp-password", "from-credential\n");
  write_file(credentials / "link-secret", "0123456789abcdef0123456789abcdef\n");
  const std::string base = (dir / "etc").string();
  const char* cred = credentials.c_str();
  using channeld::catalog::detail::resolve_secret_path;

  EXPECT_EQ(resolve_secret_path(base, "smtp-password", cred),
            (credentials / "smtp-password").string());
  EXPECT_EQ(resolve_secret_path(base, "missing", cred), (dir / "etc/missing").string());
  // A path with a folder in it is never a credential name.
  EXPECT_EQ(resolve_secret_path(base, "./smtp-password", cred),
            (dir / "etc/smtp-password").string());
  EXPECT_EQ(resolve_secret_path(base, "/srv/smtp-password", cred), "/srv/smtp-password");
  EXPECT_EQ(resolve_secret_path(base, "smtp-password", nullptr),
            (dir / "etc/smtp-password").string());
  EXPECT_EQ(resolve_secret_path(base, "smtp-password", ""), (dir / "etc/smtp-password").string());
  EXPECT_EQ(resolve_secret_path(base, "", cred), "");

  // load_config reads $CREDENTIALS_DIRECTORY for both of the config's secret files.
  std::string config_text = kMinimalConfig;
  config_text.replace(config_text.find("[smtp]\n"), 7,
                      "[smtp]\npassword_file = \"smtp-password\"\n");
  config_text.replace(config_text.find("[http]\n"), 7,
                      "[http]\nlink_secret_file = \"link-secret\"\n");
  write_file(dir / "channeld.toml", config_text);
  ASSERT_EQ(::setenv("CREDENTIALS_DIRECTORY", cred, 1), 0);
  const Config config = load_config((dir / "channeld.toml").string());
  ::unsetenv("CREDENTIALS_DIRECTORY");
  EXPECT_EQ(config.smtp.password_file, (credentials / "smtp-password").string());
  EXPECT_EQ(config.http.link_secret_file, (credentials / "link-secret").string());
  const Config by_hand = load_config((dir / "channeld.toml").string());
  EXPECT_EQ(by_hand.smtp.password_file, (dir / "smtp-password").string());
  EXPECT_EQ(by_hand.http.link_secret_file, (dir / "link-secret").string());
}

TEST(Config, AppliesDefaultsAndKeepsAConninfoAsWritten) {
  TempDir dir;
  write_file(dir / "channeld.toml", kMinimalConfig);
  Config config = load_config((dir / "channeld.toml").string());
  EXPECT_EQ(config.database_url, "host=127.0.0.1 port=55432 user=channeld dbname=channeld");
  EXPECT_EQ(config.http.public_url, "https://mkt.vendor.example");  // trailing '/' dropped
  EXPECT_EQ(config.http.listen, "127.0.0.1:8025");
  EXPECT_EQ(config.paths.campaigns, "/var/lib/channeld/campaigns");
  EXPECT_EQ(config.delivery.lease, 300s);
  EXPECT_EQ(config.proofs.lead_time, 48h);
}

TEST(Config, ReadsTheAddedKeys) {
  TempDir dir;
  write_file(dir / "channeld.toml", kMinimalConfig + R"(
[delivery]
batch_size = 100
lease = "2m"
backoff_base = "30s"
backoff_max = "1h"
shutdown_grace = "0s"
[limits]
per_domain_per_second = 2.5
)");
  // Tables may come in any order; [http] is extended here after the others.
  write_file(dir / "c2.toml", R"([database]
url = "postgresql://x"
[http]
public_url = "http://localhost:8025"
link_secret_file = "secrets/link.key"
[smtp]
from_address = "a@b.example"
max_connections = 4
timeout = "15s"
[vendor]
name = "V"
postal_address = "P"
primary_color = "#abc"
)");
  Config config = load_config((dir / "channeld.toml").string());
  EXPECT_EQ(config.delivery.batch_size, 100);
  EXPECT_EQ(config.delivery.lease, 120s);
  EXPECT_EQ(config.delivery.shutdown_grace, 0s);
  EXPECT_EQ(config.limits.per_domain_per_second, 2.5);
  Config other = load_config((dir / "c2.toml").string());
  EXPECT_EQ(other.http.link_secret_file, (dir / "secrets/link.key").string());
  EXPECT_EQ(other.smtp.max_connections, 4);
  EXPECT_EQ(other.smtp.timeout, 15s);
  EXPECT_EQ(other.vendor.primary_color, "#abc");
}

TEST(Config, UnknownKeyIsRefusedWithFileAndLine) {
  TempDir dir;
  std::string path = (dir / "channeld.toml").string();
  write_file(path, kMinimalConfig + "[limits]\nmessages_per_second = 10\nper_partner = 5\n");
  // kMinimalConfig has 9 lines; [limits] is line 10, the typo line 12.
  EXPECT_EQ(error_of([&] { load_config(path); }),
            path + ":12: unknown key 'per_partner' in [limits]");
}

TEST(Config, MisspeltTableIsReportedAsUnknownRatherThanMissing) {
  TempDir dir;
  std::string path = (dir / "channeld.toml").string();
  std::string text = kMinimalConfig;
  text.replace(text.find("[smtp]"), 6, "[smpt]");
  write_file(path, text);
  EXPECT_EQ(error_of([&] { load_config(path); }), path + ":5: unknown key 'smpt' at the top level");
}

TEST(Config, BadDurationNamesTheKeyAndLine) {
  TempDir dir;
  std::string path = (dir / "channeld.toml").string();
  write_file(path, kMinimalConfig + "[proofs]\nlead_time = \"2 days\"\n");
  std::string error = error_of([&] { load_config(path); });
  EXPECT_THAT(error, HasSubstr(path + ":11: proofs.lead_time: '2 days' is not a duration"));
}

TEST(Config, RefusesALeaseTooShortForASendToEndInsideIt) {
  TempDir dir;
  std::string path = (dir / "channeld.toml").string();
  write_file(path, kMinimalConfig + "[delivery]\nlease = \"60s\"\n");  // smtp.timeout is 60s
  std::string error = error_of([&] { load_config(path); });
  EXPECT_THAT(error, HasSubstr("delivery.lease: must be longer than smtp.timeout plus 1s (60s)"));
}

TEST(Config, MissingRequiredKeyIsRefused) {
  TempDir dir;
  std::string path = (dir / "channeld.toml").string();
  std::string text = kMinimalConfig;
  text.erase(text.find("postal_address"));
  write_file(path, text);
  EXPECT_THAT(error_of([&] { load_config(path); }),
              HasSubstr("missing required key 'vendor.postal_address'"));
}

TEST(Config, WrongTypeNamesTheKeyAndLine) {
  TempDir dir;
  std::string path = (dir / "channeld.toml").string();
  write_file(path, kMinimalConfig + "[delivery]\nbatch_size = \"500\"\n");
  EXPECT_EQ(error_of([&] { load_config(path); }),
            path + ":11: delivery.batch_size: must be an integer, not a string");
}

TEST(Config, RefusesAPublicUrlThatIsNotHttp) {
  TempDir dir;
  std::string path = (dir / "channeld.toml").string();
  std::string text = kMinimalConfig;
  text.replace(text.find("https://"), 8, "ftp://");
  write_file(path, text);
  EXPECT_THAT(error_of([&] { load_config(path); }),
              HasSubstr(path + ":4: http.public_url: 'ftp://mkt.vendor.example/' must be"));
}

TEST(Config, RefusesAnInvalidFromAddressAndAWebhookRangeThatIsNotACidr) {
  TempDir dir;
  std::string path = (dir / "channeld.toml").string();
  std::string text = kMinimalConfig;
  text.replace(text.find("partners@"), 9, "partners at ");
  write_file(path, text);
  EXPECT_THAT(error_of([&] { load_config(path); }), HasSubstr("smtp.from_address"));
  write_file(path, kMinimalConfig + "[webhooks]\nallow = [\"10.0.0.0/8\", \"10.1.0.0/33\"]\n");
  EXPECT_THAT(error_of([&] { load_config(path); }), HasSubstr("'10.1.0.0/33'"));
}

TEST(Config, RefusesAnSmtpUrlABadPortOrHostOrInlineCredentialsWithoutEchoingThem) {
  TempDir dir;
  std::string path = (dir / "channeld.toml").string();
  auto write_url = [&](const std::string& url) {
    std::string text = kMinimalConfig;
    text.replace(text.find("[smtp]") + 6, 0, "\nurl = \"" + url + "\"");
    write_file(path, text);
  };
  auto with_url = [&](const std::string& url) {
    write_url(url);
    return error_of([&] { load_config(path); });
  };
  EXPECT_THAT(with_url("smtp://127.0.0.1:99999"), HasSubstr("port '99999' is not 1 to 65535"));
  EXPECT_THAT(with_url("smtp://relay example:25"), HasSubstr("smtp.url"));
  EXPECT_THAT(with_url("smtp://:25"), HasSubstr("names no host"));
  const std::string credentials = with_url("smtps://mailer:hunter2@relay.example:465");
  EXPECT_THAT(credentials, HasSubstr("smtp.password_file"));
  EXPECT_THAT(credentials, Not(HasSubstr("hunter2")));
  write_url("smtp://[::1]:2525");
  EXPECT_NO_THROW(load_config(path));
}

TEST(Config, SyntaxErrorNamesFileAndLine) {
  TempDir dir;
  std::string path = (dir / "channeld.toml").string();
  write_file(path, "[database]\nurl = \n");
  EXPECT_EQ(error_of([&] { load_config(path); }),
            path +
                ":2: missing value after key-value separator '=' (expected value, but got "
                "nothing)");
  // toml11 quotes both definitions; the error is at the second.
  write_file(path, kMinimalConfig + "[smtp]\n");
  EXPECT_EQ(error_of([&] { load_config(path); }),
            path + ":10: table (\"smtp\") already exists. (table defined twice)");
}

TEST(Config, MissingFileIsAnInputError) {
  TempDir dir;
  EXPECT_THAT(error_of([&] { load_config((dir / "nope.toml").string()); }),
              HasSubstr("cannot read"));
}

TEST(Durations, ParseEveryUnit) {
  EXPECT_EQ(parse_duration("48h", "x"), 48h);
  EXPECT_EQ(parse_duration("0d", "x"), 0s);
  EXPECT_EQ(parse_duration("90m", "x"), 90min);
  EXPECT_EQ(parse_duration("30s", "x"), 30s);
  EXPECT_EQ(parse_duration("2d", "x"), 48h);
}

TEST(Durations, RefuseAnythingElse) {
  for (const char* bad : {"", "h", "48", "-1h", "1.5h", "1w", "1 h", "+1h", "99999999999999d"}) {
    EXPECT_THROW(parse_duration(bad, "x"), InputError) << bad;
  }
}

// ---- partners -----------------------------------------------------------------------------

const std::string kAcme = R"(id = "acme-it"
name = "Acme IT Solutions"
tier = "gold"
type = "msp"
region = "NA"
timezone = "America/Chicago"
status = "active"
contacts = "acme-it.csv"

[branding]
logo_url = "https://acme-it.example/logo.png"
primary_color = "#0a5fff"
website = "https://acme-it.example"
postal_address = "200 Main St, Austin, TX 78701, USA"
sender_name = "Acme IT Solutions"
reply_to = "marketing@acme-it.example"

[webhook]
url = "https://crm.acme-it.example/hooks/channeld"
secret_file = "acme-it.secret"

[mdf]
allocation = "15000.00"
)";

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  auto at = text.find(from);
  if (at == std::string::npos) throw std::logic_error("sample lacks " + from);
  return text.replace(at, from.size(), to);
}

// A Standard Webhooks secret: "whsec_" and the base64 of 24 bytes.
const std::string kWebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n";

// kAcme and the webhook secret file it names.
void write_acme(const TempDir& dir, const std::string& toml = kAcme) {
  write_file(dir / "acme-it.toml", toml);
  write_file(dir / "acme-it.secret", kWebhookSecret);
}

TEST(Partners, LoadsTheContractExample) {
  TempDir dir;
  write_acme(dir);
  PartnerSet set = load_partners(dir.path().string());
  ASSERT_TRUE(set.problems.empty()) << set.problems.front().text();
  const Partner& p = set.partners.at("acme-it");
  EXPECT_EQ(p.name, "Acme IT Solutions");
  EXPECT_EQ(p.tier, Tier::gold);
  EXPECT_EQ(p.type, PartnerType::msp);
  EXPECT_TRUE(p.active);
  EXPECT_EQ(p.contacts_file, (dir / "acme-it.csv").string());
  EXPECT_EQ(p.branding.reply_to, "marketing@acme-it.example");
  ASSERT_TRUE(p.webhook.has_value());
  EXPECT_EQ(p.webhook->secret_file, (dir / "acme-it.secret").string());
  EXPECT_EQ(p.webhook->key.size(), 24u);
  EXPECT_EQ(p.mdf_allocation_minor, 1500000);
  EXPECT_EQ(p.source_file, (dir / "acme-it.toml").string());
}

TEST(Partners, ExposeEveryKeyOfTheFileToTemplatesButTheWebhookSecret) {
  TempDir dir;
  write_acme(dir);
  PartnerSet set = load_partners(dir.path().string());
  const Partner& p = set.partners.at("acme-it");
  EXPECT_EQ(p.template_fields.at("name"), "Acme IT Solutions");
  EXPECT_EQ(p.template_fields.at("tier"), "gold");
  EXPECT_EQ(p.template_fields.at("timezone"), "America/Chicago");
  EXPECT_EQ(p.template_fields.at("branding.logo_url"), "https://acme-it.example/logo.png");
  EXPECT_EQ(p.template_fields.at("webhook.url"), "https://crm.acme-it.example/hooks/channeld");
  EXPECT_EQ(p.template_fields.count("webhook.secret_file"), 0u);
}

TEST(Partners, KeysAbsentFromTheFileAreAbsentFromTemplateFields) {
  TempDir dir;
  write_file(dir / "lean.toml", R"(id = "lean"
name = "Lean"
tier = "silver"
type = "var"
timezone = "Europe/Berlin"
contacts = "lean.csv"
opt_in_kits = ["q4-cloud-migration"]
)");
  PartnerSet set = load_partners(dir.path().string());
  const Partner& p = set.partners.at("lean");
  EXPECT_EQ(p.template_fields.count("branding.logo_url"), 0u);
  EXPECT_EQ(p.template_fields.count("region"), 0u);
  EXPECT_FALSE(p.webhook.has_value());
  EXPECT_EQ(p.opt_in_kits, std::vector<std::string>{"q4-cloud-migration"});
}

TEST(Partners, RefuseAContactsFileOrSecretThatLeadsOutOfThePartnersFolder) {
  TempDir dir;
  TempDir elsewhere;
  write_file(elsewhere / "people.csv", "email,first_name,last_name,company\n");
  std::filesystem::create_symlink(elsewhere / "people.csv", dir / "acme-it.csv");
  write_file(dir / "acme-it.toml", kAcme);
  PartnerSet set = load_partners(dir.path().string());
  EXPECT_TRUE(set.partners.empty());
  ASSERT_EQ(set.problems.size(), 1u);
  EXPECT_THAT(set.problems[0].message, HasSubstr("leads outside"));
  EXPECT_EQ(set.broken.count("acme-it"), 1u);
}

TEST(Partners, BadTierIsReportedWithFileLineAndField) {
  TempDir dir;
  write_file(dir / "acme-it.toml", replaced(kAcme, "\"gold\"", "\"diamond\""));
  PartnerSet set = load_partners(dir.path().string());
  EXPECT_TRUE(set.partners.empty());
  ASSERT_EQ(set.problems.size(), 1u);
  EXPECT_EQ(set.problems[0].where, (dir / "acme-it.toml").string() + ":3");
  EXPECT_EQ(set.problems[0].message,
            "tier: 'diamond' is not one of registered, silver, gold, platinum");
}

TEST(Partners, BadTimezoneIsReported) {
  TempDir dir;
  write_file(dir / "acme-it.toml", replaced(kAcme, "America/Chicago", "America/Springfield"));
  PartnerSet set = load_partners(dir.path().string());
  ASSERT_EQ(set.problems.size(), 1u);
  EXPECT_THAT(set.problems[0].text(), HasSubstr("acme-it.toml:6: timezone: 'America/Springfield'"));
}

TEST(Partners, OneBadFileDoesNotStopTheOthers) {
  TempDir dir;
  write_acme(dir);
  write_file(dir / "broken.toml", "id = \"broken\"\nname = \n");
  write_file(dir / "other.toml",
             replaced(replaced(kAcme, "acme-it\"", "other\""), "[mdf]", "[mdf]\nbudget = 1"));
  PartnerSet set = load_partners(dir.path().string());
  EXPECT_EQ(set.partners.size(), 1u);
  EXPECT_EQ(set.partners.count("acme-it"), 1u);
  ASSERT_EQ(set.problems.size(), 2u);
  EXPECT_EQ(set.problems[0].where, (dir / "broken.toml").string() + ":2");
  EXPECT_EQ(set.problems[1].text(),
            (dir / "other.toml").string() + ":23: unknown key 'budget' in [mdf]");
}

TEST(Partners, IdMustMatchTheFileName) {
  TempDir dir;
  write_file(dir / "acme.toml", kAcme);
  PartnerSet set = load_partners(dir.path().string());
  ASSERT_EQ(set.problems.size(), 1u);
  EXPECT_THAT(set.problems[0].message, HasSubstr("does not match the file name acme.toml"));
}

TEST(Partners, IgnoresFilesThatAreNotPartnerFiles) {
  TempDir dir;
  write_acme(dir);
  write_file(dir / "acme-it.csv", "email,first_name,last_name,company\n");
  write_file(dir / ".acme-it.toml", "not toml at all [");
  PartnerSet set = load_partners(dir.path().string());
  EXPECT_TRUE(set.problems.empty());
  EXPECT_EQ(set.partners.size(), 1u);
}

TEST(Partners, RefusesAWebhookSecretThatIsNotAStandardWebhooksSecretNamingTheFile) {
  const std::pair<std::string, std::string> cases[] = {
      {"s3cret", "must start with \"whsec_\""},
      {"whsec_%%%not-base64%%%", "not valid base64"},
      {"whsec_MfKQ9r8GKYqrTwjUPD8I", "Standard Webhooks asks for at least 24"},
  };
  for (const auto& [secret, message] : cases) {
    TempDir dir;
    write_acme(dir);
    write_file(dir / "acme-it.secret", secret);
    PartnerSet set = load_partners(dir.path().string());
    EXPECT_TRUE(set.partners.empty()) << secret;
    ASSERT_EQ(set.problems.size(), 1u) << secret;
    EXPECT_EQ(set.problems[0].where, (dir / "acme-it.secret").string());
    EXPECT_THAT(set.problems[0].message, HasSubstr(message));
    EXPECT_THAT(set.problems[0].text(), Not(HasSubstr(secret))) << "the secret leaked";
  }
}

TEST(Partners, WebhookEventsTurnTheFeedOnAndAnUnknownEventIsReportedAtItsLine) {
  TempDir dir;
  write_acme(dir, replaced(kAcme, "secret_file = \"acme-it.secret\"\n",
                           "secret_file = \"acme-it.secret\"\nevents = [\"sent\", \"clicked\"]\n"));
  PartnerSet set = load_partners(dir.path().string());
  ASSERT_TRUE(set.problems.empty()) << set.problems.front().text();
  EXPECT_EQ(set.partners.at("acme-it").webhook->events, (std::set<std::string>{"sent", "clicked"}));

  write_acme(dir);
  set = load_partners(dir.path().string());
  EXPECT_TRUE(set.partners.at("acme-it").webhook->events.empty()) << "off unless asked for";

  write_acme(dir,
             replaced(kAcme, "secret_file = \"acme-it.secret\"\n",
                      "secret_file = \"acme-it.secret\"\nevents = [\"sent\", \"delivered\"]\n"));
  set = load_partners(dir.path().string());
  EXPECT_TRUE(set.partners.empty());
  ASSERT_EQ(set.problems.size(), 1u);
  EXPECT_EQ(set.problems[0].where, (dir / "acme-it.toml").string() + ":21");
  EXPECT_THAT(set.problems[0].message,
              HasSubstr("webhook.events: 'delivered' is not one of sent, bounced, opened, clicked, "
                        "unsubscribed"));
}

TEST(Partners, MissingWebhookSecretFileIsReportedForThatPartnerOnly) {
  TempDir dir;
  write_file(dir / "acme-it.toml", kAcme);
  PartnerSet set = load_partners(dir.path().string());
  EXPECT_TRUE(set.partners.empty());
  ASSERT_EQ(set.problems.size(), 1u);
  EXPECT_EQ(set.problems[0].where, (dir / "acme-it.secret").string());
  EXPECT_THAT(set.problems[0].message, HasSubstr("cannot read the webhook secret"));
}

TEST(Partners, MissingFolderIsAnInputError) {
  TempDir dir;
  EXPECT_THROW(load_partners((dir / "nope").string()), InputError);
}

// ---- contacts CSV -------------------------------------------------------------------------

std::vector<Contact> read_all(ContactReader& reader) {
  std::vector<Contact> out;
  while (auto contact = reader.next()) out.push_back(std::move(*contact));
  return out;
}

TEST(Contacts, ReadQuotedCommasLineBreaksAndDoubledQuotes) {
  TempDir dir;
  write_file(dir / "c.csv",
             "email,first_name,last_name,company\n"
             "ann@a.example,Ann,\"O\"\"Neil\",\"Acme, Inc.\"\n"
             "bob@b.example,Bob,Stone,\"Two\nLines\"\n");
  ContactReader reader((dir / "c.csv").string());
  auto contacts = read_all(reader);
  EXPECT_TRUE(reader.problems().empty());
  ASSERT_EQ(contacts.size(), 2u);
  EXPECT_EQ(contacts[0].last_name, "O\"Neil");
  EXPECT_EQ(contacts[0].company, "Acme, Inc.");
  EXPECT_EQ(contacts[1].company, "Two\nLines");
}

TEST(Contacts, SkipAByteOrderMarkAndAcceptCrlf) {
  TempDir dir;
  write_file(dir / "c.csv",
             "\xEF\xBB\xBF"
             "email,first_name,last_name,company\r\n"
             "ann@a.example,Ann,Lee,Acme\r\n"
             "bob@b.example,Bob,Stone,\"Multi\r\nline\"\r\n");
  ContactReader reader((dir / "c.csv").string());
  auto contacts = read_all(reader);
  EXPECT_TRUE(reader.problems().empty());
  ASSERT_EQ(contacts.size(), 2u);
  EXPECT_EQ(contacts[0].email, "ann@a.example");
  EXPECT_EQ(contacts[0].company, "Acme");
  EXPECT_EQ(contacts[1].company, "Multi\r\nline");
}

TEST(Contacts, BadRowIsReportedWithItsLineAndTheGoodRowsLoad) {
  TempDir dir;
  std::string path = (dir / "c.csv").string();
  write_file(path,
             "email,first_name,last_name,company\n"  // 1
             "ann@a.example,Ann,Lee,\"Acme\n"        // 2
             "Holdings\"\n"                          // 3
             "bob@b.example,Bob,Stone\n"             // 4: a field short
             "not-an-email,Cy,Jones,Co\n"            // 5
             ",Di,Kay,Co\n"                          // 6
             "eve@e.example,Eve,Ng,Co\n");           // 7
  ContactReader reader(path);
  auto contacts = read_all(reader);
  ASSERT_EQ(contacts.size(), 2u);
  EXPECT_EQ(contacts[1].email, "eve@e.example");
  ASSERT_EQ(reader.problems().size(), 3u);
  EXPECT_EQ(reader.problems()[0].text(), path + ":4: 3 fields, but the header has 4");
  EXPECT_EQ(reader.problems()[1].text(), path + ":5: 'not-an-email' is not a valid email address");
  EXPECT_EQ(reader.problems()[2].text(), path + ":6: email is empty");
}

TEST(Contacts, InvalidUtf8OrAnOversizedFieldSkipsOnlyThatRowNamingLineAndColumn) {
  TempDir dir;
  std::string path = (dir / "c.csv").string();
  write_file(path,
             "email,first_name,last_name,company\n"  // 1
             "ann@a.example,Ann,Lee,Acme\n"          // 2
             "bob@b.example,B\xff\xfe,Stone,Co\n"    // 3
             "cy@c.example,Cy,Jones," +
                 std::string(5000, 'x') +
                 "\n"                                   // 4
                 "\"di@d.example\",\"Di\rX\",Kay,Co\n"  // 5
                 "eve@e.example,\xC3\xA9ve,Ng,Co\n");   // 6
  ContactReader reader(path);
  auto contacts = read_all(reader);
  ASSERT_EQ(contacts.size(), 2u);
  EXPECT_EQ(contacts[1].first_name, "\xC3\xA9ve");
  ASSERT_EQ(reader.problems().size(), 3u);
  EXPECT_THAT(reader.problems()[0].text(), HasSubstr(path + ":3: first_name is not valid UTF-8"));
  EXPECT_THAT(reader.problems()[1].text(), HasSubstr(path + ":4: company is 5000 bytes"));
  EXPECT_THAT(reader.problems()[1].text(), HasSubstr("limits.contact_field_bytes"));
  EXPECT_THAT(reader.problems()[2].text(), HasSubstr(path + ":5: first_name contains"));
}

TEST(Contacts, MultiLineRecordIsReportedAtItsFirstLine) {
  TempDir dir;
  std::string path = (dir / "c.csv").string();
  write_file(path,
             "email,first_name,last_name,company\n"
             "ann@a.example,Ann,\"Lee\nSmith\"\n");  // record on lines 2-3, a field short
  ContactReader reader(path);
  EXPECT_FALSE(reader.next().has_value());
  ASSERT_EQ(reader.problems().size(), 1u);
  EXPECT_EQ(reader.problems()[0].where, path + ":2");
}

TEST(Contacts, UnclosedQuoteIsReported) {
  TempDir dir;
  std::string path = (dir / "c.csv").string();
  write_file(path,
             "email,first_name,last_name,company\n"
             "ann@a.example,Ann,Lee,Acme\n"
             "bob@b.example,Bob,Stone,\"Acme\n");
  ContactReader reader(path);
  EXPECT_EQ(read_all(reader).size(), 1u);
  ASSERT_EQ(reader.problems().size(), 1u);
  EXPECT_EQ(reader.problems()[0].text(),
            path + ":3: a quoted field opened on line 3 is never closed");
}

TEST(Contacts, StrayQuotesAreReportedAndTheNextRowStillLoads) {
  TempDir dir;
  std::string path = (dir / "c.csv").string();
  write_file(path,
             "email,first_name,last_name,company\n"
             "ann@a.example,Ann,Lee,Acme \"Big\" Co\n"
             "bob@b.example,Bob,Stone,\"Acme\"x\n"
             "cy@c.example,Cy,Jones,Co\n");
  ContactReader reader(path);
  auto contacts = read_all(reader);
  ASSERT_EQ(contacts.size(), 1u);
  EXPECT_EQ(contacts[0].email, "cy@c.example");
  ASSERT_EQ(reader.problems().size(), 2u);
  EXPECT_EQ(reader.problems()[0].where, path + ":2");
  EXPECT_EQ(reader.problems()[1].where, path + ":3");
}

TEST(Contacts, DuplicateEmailIsReportedAndSkippedWhateverItsCase) {
  TempDir dir;
  std::string path = (dir / "c.csv").string();
  write_file(path,
             "email,first_name,last_name,company\n"
             "ann@a.example,Ann,Lee,Acme\n"
             " ANN@A.example ,Ann,Again,Acme\n");
  ContactReader reader(path);
  auto contacts = read_all(reader);
  ASSERT_EQ(contacts.size(), 1u);
  EXPECT_EQ(contacts[0].last_name, "Lee");
  ASSERT_EQ(reader.problems().size(), 1u);
  EXPECT_EQ(reader.problems()[0].text(),
            path + ":3: duplicate email 'ann@a.example': an earlier row has it");
}

TEST(Contacts, ExtraColumnsBecomeExtrasAndHeaderOrderIsFree) {
  TempDir dir;
  write_file(dir / "c.csv",
             "Company,region,EMAIL,first_name,last_name,account_manager\n"
             "Acme,EMEA,Ann@A.Example,Ann,Lee,Zoe\n");
  ContactReader reader((dir / "c.csv").string());
  EXPECT_EQ(reader.extra_columns(), (std::vector<std::string>{"region", "account_manager"}));
  auto contacts = read_all(reader);
  ASSERT_EQ(contacts.size(), 1u);
  EXPECT_EQ(contacts[0].email, "ann@a.example");
  EXPECT_EQ(contacts[0].company, "Acme");
  EXPECT_EQ(contacts[0].extra.at("region"), "EMEA");
  EXPECT_EQ(contacts[0].extra.at("account_manager"), "Zoe");
}

TEST(Contacts, HeaderWithoutTheEmailColumnIsRefused) {
  TempDir dir;
  std::string path = (dir / "c.csv").string();
  write_file(path, "first_name,last_name,company\nAnn,Lee,Acme\n");
  EXPECT_EQ(error_of([&] { ContactReader reader(path); }),
            path +
                ":1: header row lacks email "
                "(required: email,first_name,last_name,company, any order)");
  write_file(path, "email,first_name,EMAIL\n");
  EXPECT_THAT(error_of([&] { ContactReader reader(path); }), HasSubstr("appears twice"));
  write_file(path, "");
  EXPECT_THAT(error_of([&] { ContactReader reader(path); }), HasSubstr("empty"));
  EXPECT_THAT(error_of([&] { ContactReader reader((dir / "none.csv").string()); }),
              HasSubstr("cannot read"));
}

TEST(Contacts, AHeaderWithoutANameOrCompanyColumnIsReadAndSaysWhatItLacks) {
  TempDir dir;
  write_file(dir / "c.csv", "email,first_name,region\nann@a.example,Ann,EMEA\n");
  ContactReader reader((dir / "c.csv").string());
  EXPECT_EQ(reader.missing_columns(), (std::vector<std::string>{"last_name", "company"}));
  auto contacts = read_all(reader);
  ASSERT_EQ(contacts.size(), 1u);
  EXPECT_EQ(contacts[0].first_name, "Ann");
  EXPECT_EQ(contacts[0].last_name, "");
  EXPECT_EQ(contacts[0].company, "");
  EXPECT_EQ(contacts[0].extra.at("region"), "EMEA");
  EXPECT_TRUE(reader.problems().empty());
}

TEST(Contacts, SkipBlankLinesAndAMissingFinalLineBreak) {
  TempDir dir;
  write_file(dir / "c.csv",
             "email,first_name,last_name,company\n\n"
             "ann@a.example,Ann,Lee,Acme\n\r\n"
             "bob@b.example,Bob,Stone,Acme");
  ContactReader reader((dir / "c.csv").string());
  EXPECT_EQ(read_all(reader).size(), 2u);
  EXPECT_TRUE(reader.problems().empty());
}

TEST(Contacts, ListTheFirstThousandBadRowsAndCountTheRest) {
  TempDir dir;
  std::string text = "email,first_name,last_name,company\n";
  for (int i = 0; i < 1500; ++i) text += "bad,A,B,C\n";
  write_file(dir / "c.csv", text);
  ContactReader reader((dir / "c.csv").string());
  EXPECT_FALSE(reader.next().has_value());
  ASSERT_EQ(reader.problems().size(), 1001u);
  EXPECT_EQ(reader.problems().back().message, "and 500 more bad rows not listed");
}

TEST(Contacts, DigestIsTheSha256OfTheContent) {
  TempDir dir;
  write_file(dir / "a.csv", "abc");
  write_file(dir / "b.csv", "abc");
  EXPECT_EQ(contacts_digest((dir / "a.csv").string()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(contacts_digest((dir / "a.csv").string()), contacts_digest((dir / "b.csv").string()));
  write_file(dir / "b.csv", "abd");
  EXPECT_NE(contacts_digest((dir / "a.csv").string()), contacts_digest((dir / "b.csv").string()));
}

TEST(Suppressions, LoadRowsAndReportBadOnes) {
  TempDir dir;
  std::string path = (dir / "suppressions.csv").string();
  write_file(path,
             "email,partner_id,reason\n"
             "Ann@A.example,,complained by phone\n"
             "bob@b.example,acme-it,\"asked, politely\"\n"
             "nobody,acme-it,x\n"
             "cy@c.example,Acme IT,x\n");
  std::vector<Problem> problems;
  auto rows = load_suppressions(path, problems);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].email, "ann@a.example");
  EXPECT_EQ(rows[0].partner_id, "");
  EXPECT_EQ(rows[1].partner_id, "acme-it");
  EXPECT_EQ(rows[1].reason, "asked, politely");
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0].where, path + ":4");
  EXPECT_EQ(problems[1].where, path + ":5");
}

TEST(Suppressions, MissingFileIsAnEmptyListAndAMisspeltColumnIsRefused) {
  TempDir dir;
  std::vector<Problem> problems;
  EXPECT_TRUE(load_suppressions((dir / "suppressions.csv").string(), problems).empty());
  write_file(dir / "suppressions.csv", "email,partner,reason\n");
  EXPECT_THAT(error_of([&] { load_suppressions((dir / "suppressions.csv").string(), problems); }),
              HasSubstr("unknown column 'partner'"));
}

// ---- kits ---------------------------------------------------------------------------------

const std::string kKitToml = R"(id = "q4-cloud-migration"
name = "Q4 Cloud Migration"
version = 1
owner = "field-marketing@vendor.example"
expires = 2027-01-31

[audience]
tiers = ["gold", "platinum"]
types = ["msp", "var"]
regions = []
enrollment = "auto"

[schedule]
start = 2026-12-01T09:00:00
window = { days = ["mon", "tue", "wed", "thu", "fri"], from = "08:00", to = "18:00" }

[[steps]]
id = "announce"
channel = "email"
delay = "0d"
subject = "{{partner.name}} and {{vendor.name}}: your cloud move in 30 days"
html = "announce.html.mustache"
text = "announce.txt.mustache"

[[steps]]
id = "crm-sync"
channel = "webhook"
delay = "1h"
payload = "lead.json.mustache"

[mdf]
eligible = true
coop_ratio = 0.5
max_per_partner = "5000.00"
currency = "USD"
claim_window_days = 60
min_delivered = 100
min_unique_clicks = 0
)";

// A kit folder under `campaigns` named `id`, with kit.toml and its templates.
fs::path write_kit(const fs::path& campaigns, const std::string& id, const std::string& toml) {
  fs::path folder = campaigns / id;
  write_file(folder / "kit.toml", toml);
  write_file(folder / "announce.html.mustache",
             "<p>Hello {{contact.first_name}}</p><img src=\"{{partner.branding.logo_url}}\">");
  write_file(folder / "announce.txt.mustache", "Hello {{contact.first_name}}");
  write_file(folder / "lead.json.mustache", R"({"email": "{{contact.email}}"})");
  return folder;
}

TEST(Kits, LoadTheContractExample) {
  TempDir dir;
  fs::path folder = write_kit(dir.path(), "q4-cloud-migration", kKitToml);
  Kit kit = load_kit(folder.string());
  EXPECT_EQ(kit.id, "q4-cloud-migration");
  EXPECT_EQ(kit.version, 1);
  EXPECT_EQ(kit.expires, std::chrono::year_month_day(std::chrono::year(2027), std::chrono::January,
                                                     std::chrono::day(31)));
  EXPECT_EQ(kit.audience.tiers, (std::vector<Tier>{Tier::gold, Tier::platinum}));
  EXPECT_EQ(kit.audience.enrollment, Enrollment::automatic);
  EXPECT_EQ(kit.schedule.start, std::chrono::local_days(std::chrono::year(2026) / 12 / 1) + 9h);
  EXPECT_EQ(kit.schedule.window.days, 0x1f);
  EXPECT_EQ(kit.schedule.window.from_minute, 8 * 60);
  EXPECT_EQ(kit.schedule.window.to_minute, 18 * 60);
  ASSERT_EQ(kit.steps.size(), 2u);
  EXPECT_EQ(kit.steps[0].html_template, "announce.html.mustache");
  EXPECT_EQ(kit.steps[1].channel, Channel::webhook);
  EXPECT_EQ(kit.steps[1].delay, 60min);
  EXPECT_EQ(kit.mdf.coop_ratio_bp, 5000);
  EXPECT_EQ(kit.mdf.max_per_partner_minor, 500000);
  EXPECT_EQ(kit.mdf.claim_window_days, 60);
  EXPECT_EQ(kit.mdf.min_delivered, 100);
  EXPECT_EQ(kit.folder, folder.string());
  EXPECT_EQ(kit.digest.size(), 64u);
}

TEST(Kits, AcceptAFolderPathWithATrailingSlash) {
  TempDir dir;
  fs::path folder = write_kit(dir.path(), "q4-cloud-migration", kKitToml);
  EXPECT_EQ(load_kit(folder.string() + "/").folder, folder.string());
}

TEST(Kits, SyntaxErrorNamesFileAndLine) {
  TempDir dir;
  fs::path folder = write_kit(dir.path(), "q4-cloud-migration",
                              replaced(kKitToml, "version = 1", "version = = 1"));
  EXPECT_THAT(error_of([&] { load_kit(folder.string()); }),
              HasSubstr((folder / "kit.toml").string() + ":3: "));
}

TEST(Kits, UnknownKeyNamesFileLineAndTable) {
  TempDir dir;
  fs::path folder = write_kit(dir.path(), "q4-cloud-migration",
                              replaced(kKitToml, "delay = \"1h\"", "delay = \"1h\"\ndelya = 2"));
  EXPECT_EQ(error_of([&] { load_kit(folder.string()); }),
            (folder / "kit.toml").string() + ":29: unknown key 'delya' in steps[2]");
}

TEST(Kits, BadDatesAreRefused) {
  TempDir dir;
  fs::path folder =
      write_kit(dir.path(), "q4-cloud-migration", replaced(kKitToml, "2027-01-31", "2027-02-30"));
  EXPECT_THAT(error_of([&] { load_kit(folder.string()); }),
              HasSubstr((folder / "kit.toml").string() + ":5: invalid date"));
  write_kit(dir.path(), "q4-cloud-migration", replaced(kKitToml, "2027-01-31", "\"2027-01-31\""));
  EXPECT_THAT(error_of([&] { load_kit(folder.string()); }),
              HasSubstr("expires: must be a date written without quotes"));
  write_kit(dir.path(), "q4-cloud-migration",
            replaced(kKitToml, "2026-12-01T09:00:00", "2026-12-01T09:00:00Z"));
  EXPECT_THAT(error_of([&] { load_kit(folder.string()); }),
              HasSubstr("schedule.start: write a local date-time without an offset"));
}

TEST(Kits, BadWindowsAreRefused) {
  TempDir dir;
  std::string path = (dir / "q4-cloud-migration" / "kit.toml").string();
  auto with_window = [&](const std::string& window) {
    write_kit(
        dir.path(), "q4-cloud-migration",
        replaced(
            kKitToml,
            R"(window = { days = ["mon", "tue", "wed", "thu", "fri"], from = "08:00", to = "18:00" })",
            window));
    return error_of([&] { load_kit((dir / "q4-cloud-migration").string()); });
  };
  EXPECT_EQ(with_window(R"(window = { from = "18:00", to = "08:00" })"),
            path +
                ":15: schedule.window.to: must be later than 'from' (a window cannot cross "
                "midnight)");
  EXPECT_THAT(with_window(R"(window = { days = ["monday"] })"),
              HasSubstr("schedule.window.days: 'monday' is not one of mon"));
  EXPECT_THAT(with_window(R"(window = { days = [] })"), HasSubstr("is empty"));
  EXPECT_THAT(with_window(R"(window = { from = "8:00" })"),
              HasSubstr("'8:00' is not a time of day"));
  EXPECT_THAT(with_window(R"(window = { from = "24:00" })"),
              HasSubstr("'24:00' is not a time of day"));
}

TEST(Kits, WindowMayRunToTheEndOfTheDay) {
  TempDir dir;
  fs::path folder = write_kit(
      dir.path(), "q4-cloud-migration",
      replaced(kKitToml, R"(from = "08:00", to = "18:00")", R"(from = "20:00", to = "24:00")"));
  Kit kit = load_kit(folder.string());
  EXPECT_EQ(kit.schedule.window.to_minute, 24 * 60);
}

TEST(Kits, DuplicateStepIdIsRefused) {
  TempDir dir;
  fs::path folder = write_kit(dir.path(), "q4-cloud-migration",
                              replaced(kKitToml, "id = \"crm-sync\"", "id = \"announce\""));
  EXPECT_EQ(error_of([&] { load_kit(folder.string()); }),
            (folder / "kit.toml").string() +
                ":26: steps[2].id: 'announce' is already the id of an earlier step");
}

TEST(Kits, IdMustMatchTheFolderName) {
  TempDir dir;
  fs::path folder = write_kit(dir.path(), "q4-copy", kKitToml);
  EXPECT_THAT(error_of([&] { load_kit(folder.string()); }),
              HasSubstr(":1: id: 'q4-cloud-migration' does not match the folder name 'q4-copy'"));
}

TEST(Kits, StepsNeedWhatTheirChannelSends) {
  TempDir dir;
  fs::path folder = write_kit(dir.path(), "q4-cloud-migration",
                              replaced(kKitToml, "text = \"announce.txt.mustache\"\n", ""));
  EXPECT_THAT(error_of([&] { load_kit(folder.string()); }),
              HasSubstr("missing required key 'steps[1].text'"));
  write_kit(dir.path(), "q4-cloud-migration",
            replaced(kKitToml, "payload = \"lead.json.mustache\"",
                     "payload = \"lead.json.mustache\"\nsubject = \"Hi\""));
  EXPECT_THAT(error_of([&] { load_kit(folder.string()); }),
              HasSubstr("steps[2].subject: is for email steps"));
  write_kit(dir.path(), "q4-cloud-migration",
            replaced(kKitToml, "channel = \"webhook\"", "channel = \"sms\""));
  EXPECT_THAT(error_of([&] { load_kit(folder.string()); }),
              HasSubstr("steps[2].channel: 'sms' is not one of email, webhook"));
  write_kit(dir.path(), "q4-cloud-migration", replaced(kKitToml, "\"1h\"", "\"90s\""));
  EXPECT_THAT(error_of([&] { load_kit(folder.string()); }), HasSubstr("steps[2].delay"));
}

TEST(Kits, CoopRatioIsReadAsWrittenInBasisPoints) {
  TempDir dir;
  fs::path folder = write_kit(dir.path(), "q4-cloud-migration",
                              replaced(kKitToml, "coop_ratio = 0.5", "coop_ratio = 0.07"));
  EXPECT_EQ(load_kit(folder.string()).mdf.coop_ratio_bp, 700);
  write_kit(dir.path(), "q4-cloud-migration",
            replaced(kKitToml, "coop_ratio = 0.5", "coop_ratio = 1"));
  EXPECT_EQ(load_kit(folder.string()).mdf.coop_ratio_bp, 10000);
  write_kit(dir.path(), "q4-cloud-migration",
            replaced(kKitToml, "coop_ratio = 0.5", "coop_ratio = 0.12345"));
  EXPECT_THAT(error_of([&] { load_kit(folder.string()); }), HasSubstr("more than four decimals"));
  write_kit(dir.path(), "q4-cloud-migration",
            replaced(kKitToml, "coop_ratio = 0.5", "coop_ratio = 1.5"));
  EXPECT_THAT(error_of([&] { load_kit(folder.string()); }), HasSubstr("between 0 and 1"));
}

TEST(Kits, DigestChangesWithAnyFileOfTheKitButNotWithDotFiles) {
  TempDir dir;
  fs::path folder = write_kit(dir.path(), "q4-cloud-migration", kKitToml);
  std::string before = load_kit(folder.string()).digest;
  EXPECT_EQ(load_kit(folder.string()).digest, before);
  write_file(folder / ".kit.toml.swp", "editor state");
  EXPECT_EQ(load_kit(folder.string()).digest, before);
  write_file(folder / "images" / "hero.png", "png bytes");
  std::string with_image = load_kit(folder.string()).digest;
  EXPECT_NE(with_image, before);
  write_file(folder / "announce.txt.mustache", "Hi {{contact.first_name}}");
  EXPECT_NE(load_kit(folder.string()).digest, with_image);
}

TEST(Kits, FolderWithoutKitTomlIsAnInputError) {
  TempDir dir;
  fs::create_directories(dir / "empty");
  EXPECT_THAT(error_of([&] { load_kit((dir / "empty").string()); }), HasSubstr("no kit.toml"));
}

// ---- looks_incomplete ---------------------------------------------------------------------

// Moves every mtime in `folder` an hour back, so "recent" does not depend on the clock.
void age(const fs::path& folder) {
  auto past = fs::file_time_type::clock::now() - 1h;
  for (const auto& entry : fs::recursive_directory_iterator(folder)) {
    fs::last_write_time(entry.path(), past);
  }
  fs::last_write_time(folder, past);
}

TEST(LooksIncomplete, SettledKitFolderIsComplete) {
  TempDir dir;
  fs::path folder = write_kit(dir.path(), "q4-cloud-migration", kKitToml);
  age(folder);
  EXPECT_FALSE(looks_incomplete(folder.string(), 10min));
}

TEST(LooksIncomplete, RecentlyWrittenFolderIsIncomplete) {
  TempDir dir;
  fs::path folder = write_kit(dir.path(), "q4-cloud-migration", kKitToml);
  age(folder);
  write_file(folder / "announce.txt.mustache", "changed just now");
  EXPECT_TRUE(looks_incomplete(folder.string(), 10min));
}

TEST(LooksIncomplete, FoldersWithoutKitTomlOrWithCopyNamesAreIncomplete) {
  TempDir dir;
  for (const char* name : {".q4", "q4.tmp", "q4.part"}) {
    fs::path folder = write_kit(dir.path(), name, kKitToml);
    age(folder);
    EXPECT_TRUE(looks_incomplete(folder.string(), 0ms)) << name;
  }
  fs::path folder = write_kit(dir.path(), "q4", kKitToml);
  write_file(folder / "hero.png.part", "half a picture");
  age(folder);
  EXPECT_TRUE(looks_incomplete(folder.string(), 0ms));
  fs::remove(folder / "hero.png.part");
  fs::remove(folder / "kit.toml");
  EXPECT_TRUE(looks_incomplete(folder.string(), 0ms));
}

// ---- validate_kit -------------------------------------------------------------------------
// These need render::KitTemplates and schedule::ineligibility.

struct ValidationFixture {
  TempDir dir;
  Config config;
  PartnerSet partners;
  fs::path folder;

  ValidationFixture() {
    config.paths.templates = (dir / "templates").string();
    config.vendor.name = "Vendor Inc.";
    config.vendor.postal_address = "1 Vendor Way";
    config.http.public_url = "https://mkt.vendor.example";
    config.smtp.from_address = "partners@mkt.vendor.example";
    fs::create_directories(dir / "templates");
    write_file(dir / "templates" / "layout.html.mustache",
               "{{{body}}}<a href=\"{{links.unsubscribe}}\">Unsubscribe</a>");
    write_file(dir / "templates" / "layout.txt.mustache", "{{{body}}}\n{{links.unsubscribe}}");
    folder = write_kit(dir / "campaigns", "q4-cloud-migration", kKitToml);
    write_file(dir / "partners" / "acme-it.toml", kAcme);
    write_file(dir / "partners" / "acme-it.secret", kWebhookSecret);
    write_file(dir / "partners" / "acme-it.csv", "email,first_name,last_name,company\n");
    // Gold and msp like Acme, but without a logo.
    write_file(dir / "partners" / "plain.toml",
               replaced(replaced(kAcme, "acme-it\"", "plain\""),
                        "logo_url = \"https://acme-it.example/logo.png\"\n", ""));
    write_file(dir / "partners" / "plain.csv", "email,first_name,last_name,company\n");
  }
  void load() { partners = load_partners((dir / "partners").string()); }
};

TEST(ValidateKit, PassesWhenEveryEligiblePartnerHasEveryVariable) {
  ValidationFixture f;
  fs::remove(f.dir / "partners" / "plain.toml");
  f.load();
  ValidKit valid = validate_kit(f.folder.string(), f.config, f.partners, "secret");
  EXPECT_EQ(valid.kit.id, "q4-cloud-migration");
  EXPECT_NE(valid.templates, nullptr);
}

TEST(ValidateKit, HoldsBackOnlyThePartnerThatLacksAVariableNamingIt) {
  ValidationFixture f;
  f.load();
  ValidKit valid = validate_kit(f.folder.string(), f.config, f.partners, "s");
  ASSERT_EQ(valid.held_partners.size(), 1u);
  const std::string& why = valid.held_partners.at("plain");
  EXPECT_THAT(why, HasSubstr("step 'announce' html:"));
  EXPECT_THAT(why, HasSubstr("partner.branding.logo_url"));
}

TEST(ValidateKit, RefusesTheKitWhenEveryEligiblePartnerLacksTheVariable) {
  ValidationFixture f;
  fs::remove(f.dir / "partners" / "acme-it.toml");
  f.load();
  std::string error = error_of([&] { validate_kit(f.folder.string(), f.config, f.partners, "s"); });
  EXPECT_THAT(error, HasSubstr((f.folder / "kit.toml").string() + ": "));
  EXPECT_THAT(error, HasSubstr("partner 'plain': step 'announce' html:"));
  EXPECT_THAT(error, HasSubstr("partner.branding.logo_url"));
}

// Acme and a second partner "other" like it, so one partner's trouble is not every partner's.
void add_other_partner(ValidationFixture& f) {
  fs::remove(f.dir / "partners" / "plain.toml");
  write_file(f.dir / "partners" / "other.toml",
             replaced(replaced(kAcme, "acme-it\"", "other\""), "acme-it.csv", "other.csv"));
  write_file(f.dir / "partners" / "other.csv", "email,first_name,last_name,company\n");
}

TEST(ValidateKit, AContactsFileWithoutLastNameHoldsThePartnerOnlyFromAKitThatShowsIt) {
  ValidationFixture f;
  add_other_partner(f);
  const std::string csv = (f.dir / "partners" / "acme-it.csv").string();
  write_file(csv, "email,first_name,company\n");
  f.load();
  // The fixture's kit shows first_name only.
  EXPECT_TRUE(validate_kit(f.folder.string(), f.config, f.partners, "s").held_partners.empty());

  write_file(f.folder / "announce.txt.mustache",
             "Hello {{contact.first_name}} {{contact.last_name}}");
  ValidKit valid = validate_kit(f.folder.string(), f.config, f.partners, "s");
  ASSERT_EQ(valid.held_partners.count("acme-it"), 1u);
  EXPECT_EQ(valid.held_partners.at("acme-it"),
            csv +
                ": header row lacks last_name, which this kit shows (the partner's other kits "
                "still send)");
  EXPECT_EQ(valid.held_partners.count("other"), 0u);
}

TEST(ValidateKit, AContactsFileWithADuplicateColumnOrThatCannotBeReadHoldsThePartnerFromAnyKit) {
  ValidationFixture f;
  add_other_partner(f);
  write_file(f.dir / "partners" / "acme-it.csv", "email,first_name,last_name,company,company\n");
  f.load();
  ValidKit valid = validate_kit(f.folder.string(), f.config, f.partners, "s");
  ASSERT_EQ(valid.held_partners.count("acme-it"), 1u);
  EXPECT_THAT(valid.held_partners.at("acme-it"), HasSubstr("'company' appears twice"));
  EXPECT_EQ(valid.held_partners.count("other"), 0u);

  fs::remove(f.dir / "partners" / "acme-it.csv");
  valid = validate_kit(f.folder.string(), f.config, f.partners, "s");
  ASSERT_EQ(valid.held_partners.count("acme-it"), 1u);
  EXPECT_THAT(valid.held_partners.at("acme-it"), HasSubstr("cannot read"));
}

TEST(ValidateKit, HoldsBackAPartnerWhoseDataWouldBreakTheSubjectIntoTwoLines) {
  ValidationFixture f;
  add_other_partner(f);
  // A TOML "\n" escape is a real line break; the region is free text.
  write_file(f.dir / "partners" / "acme-it.toml",
             replaced(kAcme, "region = \"NA\"", "region = \"NA\\nBcc: x@y.example\""));
  write_file(f.folder / "kit.toml",
             replaced(kKitToml, "subject = \"{{partner.name}}", "subject = \"{{partner.region}}"));
  f.load();
  ValidKit valid = validate_kit(f.folder.string(), f.config, f.partners, "s");
  ASSERT_EQ(valid.held_partners.count("acme-it"), 1u);
  EXPECT_THAT(valid.held_partners.at("acme-it"),
              HasSubstr("step 'announce' subject would carry a line break or control character "
                        "into the Subject header: the value of {{partner.region}} ("));
  EXPECT_EQ(valid.held_partners.count("other"), 0u);
}

TEST(ValidateKit, RefusesAKitWhoseSubjectPartialHasALineBreak) {
  ValidationFixture f;
  add_other_partner(f);
  write_file(f.folder / "headline.mustache", "Your cloud move\nstarts now");
  write_file(f.folder / "kit.toml", replaced(kKitToml, "subject = \"{{partner.name}}",
                                             "subject = \"{{> headline}} {{partner.name}}"));
  f.load();
  std::string error = error_of([&] { validate_kit(f.folder.string(), f.config, f.partners, "s"); });
  EXPECT_THAT(error, HasSubstr((f.folder / "kit.toml").string() + ": "));
  EXPECT_THAT(error, HasSubstr("partner 'acme-it': step 'announce' subject would carry a line "
                               "break or control character into the Subject header: its text "
                               "(partials included) has one"));
}

TEST(ValidateKit, RefusesAWebhookPayloadThatDoesNotRenderAsJson) {
  ValidationFixture f;
  fs::remove(f.dir / "partners" / "plain.toml");
  // A contact value outside quotes is JSON only by luck of the row; a missing comma never is.
  write_file(f.folder / "lead.json.mustache",
             R"({"email": "{{contact.email}}" "name": {{contact.first_name}}})");
  f.load();
  std::string error = error_of([&] { validate_kit(f.folder.string(), f.config, f.partners, ""); });
  EXPECT_THAT(error, HasSubstr("partner 'acme-it': step 'crm-sync' payload"));
  EXPECT_THAT(error, HasSubstr("rendered payload is not JSON"));
}

TEST(ValidateKit, AcceptsAWebhookPayloadWithPartnerValuesAndQuotedContactValues) {
  ValidationFixture f;
  fs::remove(f.dir / "partners" / "plain.toml");
  write_file(
      f.folder / "lead.json.mustache",
      R"({"email": "{{contact.email}}", "partner": "{{partner.name}}", "tier": "{{partner.tier}}",
                 "allocation": {{partner.mdf.allocation}}, "unsubscribe": "{{links.unsubscribe}}"})");
  f.load();
  EXPECT_NO_THROW(validate_kit(f.folder.string(), f.config, f.partners, ""));
}

TEST(ValidateKit, IgnoresSuspendedAndIneligiblePartners) {
  ValidationFixture f;
  write_file(f.dir / "partners" / "plain.toml",
             replaced(replaced(replaced(kAcme, "acme-it\"", "plain\""),
                               "logo_url = \"https://acme-it.example/logo.png\"\n", ""),
                      "\"gold\"", "\"silver\""));  // the kit is for gold and platinum
  write_file(f.dir / "partners" / "paused.toml",
             replaced(replaced(replaced(kAcme, "acme-it\"", "paused\""),
                               "logo_url = \"https://acme-it.example/logo.png\"\n", ""),
                      "\"active\"", "\"suspended\""));
  f.load();
  EXPECT_NO_THROW(validate_kit(f.folder.string(), f.config, f.partners, "s"));
}

TEST(ValidateKit, ContactColumnsComeFromEachPartnersCsv) {
  ValidationFixture f;
  fs::remove(f.dir / "partners" / "plain.toml");
  write_file(f.folder / "announce.txt.mustache", "Your manager: {{contact.account_manager}}");
  f.load();
  EXPECT_THAT(error_of([&] { validate_kit(f.folder.string(), f.config, f.partners, "s"); }),
              HasSubstr("partner 'acme-it': step 'announce' text:"));
  write_file(f.dir / "partners" / "acme-it.csv",
             "email,first_name,last_name,company,account_manager\n");
  EXPECT_NO_THROW(validate_kit(f.folder.string(), f.config, f.partners, "s"));
}

// ---- FolderWatcher ------------------------------------------------------------------------

// Runs handlers until `done` or a generous deadline: the deadline only keeps a broken watcher
// from hanging the suite, it never decides the outcome of a passing run.
void run_until(boost::asio::io_context& io, const std::function<bool()>& done) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    io.run_one_for(deadline - std::chrono::steady_clock::now());
  }
}

TEST(FolderWatcher, CallsOnceForABurstOfWritesInAKitFolder) {
  TempDir dir;
  fs::create_directories(dir / "campaigns" / "q4");
  boost::asio::io_context io;
  int calls = 0;
  FolderWatcher watcher(io, {(dir / "campaigns").string()}, 50ms, [&] { ++calls; });
  for (int i = 0; i < 20; ++i)
    write_file(dir / "campaigns" / "q4" / "kit.toml", "v" + std::to_string(i));
  write_file(dir / "campaigns" / "q4" / "announce.html.mustache", "<p>hi</p>");

  run_until(io, [&] { return calls > 0; });
  EXPECT_EQ(calls, 1);
  // Every event of the burst was queued before the loop ran, so nothing is left to report.
  io.poll();
  EXPECT_EQ(calls, 1);
}

TEST(FolderWatcher, WatchesKitFoldersCreatedAfterItStarted) {
  TempDir dir;
  fs::create_directories(dir / "campaigns");
  boost::asio::io_context io;
  int calls = 0;
  FolderWatcher watcher(io, {(dir / "campaigns").string()}, 20ms, [&] { ++calls; });

  fs::create_directories(dir / "campaigns" / "new-kit");
  run_until(io, [&] { return calls == 1; });
  ASSERT_EQ(calls, 1);
  // A write inside a subfolder is invisible to the parent's watch: only the new watch sees it.
  write_file(dir / "campaigns" / "new-kit" / "kit.toml", "id = \"new-kit\"");
  run_until(io, [&] { return calls == 2; });
  EXPECT_EQ(calls, 2);
}

TEST(FolderWatcher, StoppedWatcherCallsNothing) {
  TempDir dir;
  fs::create_directories(dir / "partners");
  boost::asio::io_context io;
  int calls = 0;
  FolderWatcher watcher(io, {(dir / "partners").string()}, 1ms, [&] { ++calls; });
  write_file(dir / "partners" / "acme-it.toml", kAcme);
  watcher.stop();
  io.run();  // returns once the cancelled read has completed: no work is left
  EXPECT_EQ(calls, 0);
}

TEST(FolderWatcher, RefusesAFolderThatDoesNotExist) {
  TempDir dir;
  boost::asio::io_context io;
  EXPECT_THROW(FolderWatcher(io, {(dir / "nope").string()}, 1ms, [] {}), InputError);
}

}  // namespace
}  // namespace channeld::catalog
