// MDF over the API against a real PostgreSQL and a real HTTP server on an ephemeral 127.0.0.1
// port, called with a real httplib::Client: claims posted as JSON by partner and finance
// tokens, claims read back per role, and the finance report, whose bytes must equal what the
// real `channeld report mdf` prints for the same database and files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <soci/soci.h>

#include <nlohmann/json.hpp>

#include "api/auth.hpp"
#include "api/http_server.hpp"
#include "api/mdf_routes.hpp"
#include "app/claims.hpp"
#include "catalog/catalog.hpp"
#include "store/engagement.hpp"
#include "store/store.hpp"
#include "support/process.hpp"
#include "support/support.hpp"

namespace channeld::api {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;
using testing::TempDir;
using testing::write_file;

const SysTime kNow = std::chrono::sys_days{std::chrono::year{2026} / 12 / 20};

json claim(const std::string& id, const std::string& partner, const std::string& invoice) {
  return json{{"claim_id", id},
              {"partner_id", partner},
              {"kit_id", "cloud"},
              {"period", "2026-Q4"},
              {"activity_start", "2026-11-01"},
              {"activity_end", "2026-11-30"},
              {"amount_claimed", "400.00"},
              {"actual_spend", "800.00"},
              {"currency", "USD"},
              {"invoice_ref", invoice}};
}

class MdfApi : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = testing::fresh_database(testing::database_for_this_test("mdfapi_"));
    if (db_.empty()) GTEST_SKIP();
    store_ = std::make_unique<store::Store>(db_, 4);
    store_->migrate();
    store::Engagement engagement(*store_);
    for (const auto& [name, role] :
         std::vector<std::pair<std::string, std::string>>{{"admin", "admin"},
                                                          {"finance", "finance"},
                                                          {"acme", "partner:acme-it"},
                                                          {"northwind", "partner:northwind"}}) {
      tokens_[name] = new_token();
      engagement.add_token(name, token_hash(tokens_[name]), role);
    }
    write_site();

    Routes routes([] { return true; }, registry_, [this] { return store_->delivery_counts(); });
    routes.set_token_lookup([this](const std::string& hash) -> std::optional<StoredToken> {
      auto found = store::Engagement(*store_).token_by_hash(hash);
      if (!found) return std::nullopt;
      return StoredToken{found->first, found->second};
    });
    MdfDeps deps;
    deps.store = store_.get();
    // As the CLI does: the config and partner files read from disk.
    deps.report = [this](const mdf::Period& period) {
      const Config config = catalog::load_config(config_file().string());
      return app::build_report(*store_, config, catalog::load_partners(config.paths.partners),
                               period);
    };
    deps.clock = [] { return kNow; };
    routes.add(mdf_routes(std::move(deps)));
    server_ = std::make_unique<HttpServer>("127.0.0.1:0", std::move(routes));
    server_->start();
  }

  void TearDown() override {
    if (server_) server_->stop();
  }

  void write_site() {
    for (const char* folder : {"campaigns", "templates", "claims", "outbox"})
      fs::create_directories(dir_ / folder);
    fs::copy(testing::source_dir() / "templates", dir_ / "templates",
             fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    write_file(dir_ / "link.secret", "test-link-secret-0123456789abcdef");
    write_file(config_file(), R"([database]
url = ")" + db_ + R"("
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
[mdf]
currency = "USD"
allocation = { platinum = "20000.00", gold = "1000.00" }
gross_margin_rate = 0.30
program_costs = { "2026-Q4" = "45000.00" }
)");
    for (const auto& [id, tier] : std::vector<std::pair<std::string, std::string>>{
             {"acme-it", "gold"}, {"northwind", "platinum"}}) {
      write_file(dir_ / "partners" / (id + ".toml"),
                 "id = \"" + id + "\"\nname = \"Partner " + id + "\"\ntier = \"" + tier +
                     "\"\ntype = \"msp\"\nregion = \"NA\"\ntimezone = \"America/Chicago\"\n"
                     "status = \"active\"\ncontacts = \"" +
                     id + ".csv\"\n" + R"(
[branding]
logo_url = "https://example.com/logo.png"
primary_color = "#0a5fff"
website = "https://example.com"
postal_address = "200 Main St, Austin TX"
sender_name = "Sender"
reply_to = "marketing@example.com"
)");
      write_file(dir_ / "partners" / (id + ".csv"),
                 "email,first_name,last_name,company\nc@" + id + ".example.com,F,L,Co\n");
    }
  }

  fs::path config_file() const { return dir_ / "channeld.toml"; }

  httplib::Client client() {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_connection_timeout(std::chrono::seconds{5});
    c.set_read_timeout(std::chrono::seconds{5});
    return c;
  }
  httplib::Headers bearer(const std::string& who) {
    return {{"Authorization", "Bearer " + tokens_.at(who)}};
  }
  httplib::Result post(const std::string& who, const json& body) {
    return client().Post("/v1/claims", bearer(who), body.dump(), "application/json");
  }
  std::int64_t stored_claims() {
    soci::session db("postgresql", db_);
    long long n = 0;
    db << "SELECT count(*) FROM mdf_claim", soci::into(n);
    return n;
  }

  std::string db_;
  TempDir dir_;
  std::unique_ptr<store::Store> store_;
  std::map<std::string, std::string> tokens_;
  metrics::Registry registry_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(MdfApi, APartnerPostsItsOwnClaimsAndGetsAResultPerClaimWithDuplicatesRefused) {
  auto res =
      post("acme", json::array({claim("A-1", "acme-it", "INV-1"), claim("A-2", "acme-it", "INV-2"),
                                claim("A-1", "acme-it", "INV-1")}));
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const json body = json::parse(res->body);
  EXPECT_EQ(body["accepted"], 2);
  EXPECT_EQ(body["refused"], 1);
  ASSERT_EQ(body["results"].size(), 3u);
  EXPECT_EQ(body["results"][0]["outcome"], "added");
  EXPECT_EQ(body["results"][1]["outcome"], "added");
  EXPECT_EQ(body["results"][2]["outcome"], "refused");
  EXPECT_EQ(body["results"][2]["detail"], "duplicate claim_id");
  EXPECT_EQ(stored_claims(), 2);
  soci::session db("postgresql", db_);
  std::string source;
  db << "SELECT source FROM mdf_claim WHERE claim_id = 'A-2'", soci::into(source);
  EXPECT_EQ(source, "api:acme");
}

TEST_F(MdfApi, APartnerPostingAnotherPartnersClaimGets403AndNothingIsStored) {
  auto res = post(
      "acme", json::array({claim("A-1", "acme-it", "INV-1"), claim("N-1", "northwind", "INV-9")}));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 403) << res->body;
  EXPECT_THAT(res->body, HasSubstr("northwind"));
  EXPECT_EQ(stored_claims(), 0);
}

TEST_F(MdfApi, FinancePostsAnyPartnersClaimAndABadRowCostsOnlyItself) {
  json bad = claim("N-2", "northwind", "INV-8");
  bad["amount_claimed"] = "12,50";
  auto res = post("finance", json::array({claim("N-1", "northwind", "INV-9"), bad}));
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const json body = json::parse(res->body);
  EXPECT_EQ(body["results"][0]["outcome"], "added");
  EXPECT_EQ(body["results"][1]["outcome"], "refused");
  EXPECT_THAT(body["results"][1]["detail"].get<std::string>(), HasSubstr("amount_claimed"));
  EXPECT_EQ(stored_claims(), 1);
}

TEST_F(MdfApi, MalformedOrOversizedBodiesAndMissingTokensAreRefused) {
  auto not_json = client().Post("/v1/claims", bearer("finance"), "{not json", "application/json");
  ASSERT_TRUE(not_json);
  EXPECT_EQ(not_json->status, 400);
  auto not_claims = client().Post("/v1/claims", bearer("finance"), "42", "application/json");
  ASSERT_TRUE(not_claims);
  EXPECT_EQ(not_claims->status, 400);
  auto huge = client().Post("/v1/claims", bearer("finance"), std::string(kMaxClaimsBody + 1, ' '),
                            "application/json");
  ASSERT_TRUE(huge);
  EXPECT_EQ(huge->status, 413);
  auto anonymous =
      client().Post("/v1/claims", claim("A-1", "acme-it", "INV-1").dump(), "application/json");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  auto anonymous_report = client().Get("/v1/reports/mdf?period=2026-Q4");
  ASSERT_TRUE(anonymous_report);
  EXPECT_EQ(anonymous_report->status, 401);
  auto bytes_period = client().Get("/v1/reports/mdf?period=%FF%FE", bearer("finance"));
  ASSERT_TRUE(bytes_period);
  EXPECT_EQ(bytes_period->status, 400) << "a period that is not UTF-8 is still a 400";
  EXPECT_EQ(stored_claims(), 0);
}

TEST_F(MdfApi, APartnerReadsOnlyItsOwnClaimsAndFinanceReadsAll) {
  ASSERT_EQ(post("finance", json::array({claim("A-1", "acme-it", "INV-1"),
                                         claim("N-1", "northwind", "INV-9")}))
                ->status,
            200);
  auto own = client().Get("/v1/claims?period=2026-Q4", bearer("acme"));
  ASSERT_TRUE(own);
  ASSERT_EQ(own->status, 200) << own->body;
  const json mine = json::parse(own->body)["claims"];
  ASSERT_EQ(mine.size(), 1u);
  EXPECT_EQ(mine[0]["claim_id"], "A-1");
  EXPECT_EQ(mine[0]["decision"], "pending");

  auto all = client().Get("/v1/claims?period=2026-Q4", bearer("finance"));
  ASSERT_TRUE(all);
  ASSERT_EQ(all->status, 200) << all->body;
  EXPECT_EQ(json::parse(all->body)["claims"].size(), 2u);
  auto other_period = client().Get("/v1/claims?period=2026-Q3", bearer("finance"));
  ASSERT_TRUE(other_period);
  EXPECT_EQ(json::parse(other_period->body)["claims"].size(), 0u);
  auto bad_period = client().Get("/v1/claims?period=Q4", bearer("finance"));
  ASSERT_TRUE(bad_period);
  EXPECT_EQ(bad_period->status, 400);
}

TEST_F(MdfApi, FinanceGetsTheReportByteForByteAsTheCliPrintsItAndPartnersGet403) {
  ASSERT_EQ(post("finance", json::array({claim("A-1", "acme-it", "INV-1"),
                                         claim("N-1", "northwind", "INV-9")}))
                ->status,
            200);
  for (const std::string format : {"csv", "json", "html"}) {
    auto res = client().Get("/v1/reports/mdf?period=2026-Q4&format=" + format, bearer("finance"));
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
    auto [code, printed] =
        testing::run_program({testing::channeld_binary().string(), "report", "mdf", "--period",
                              "2026-Q4", "--format", format, "--config", config_file().string()});
    ASSERT_EQ(code, 0) << printed;
    EXPECT_EQ(res->body, printed) << format;
    if (format == "csv") {
      EXPECT_THAT(res->get_header_value("Content-Type"), HasSubstr("text/csv"));
      EXPECT_THAT(res->body, HasSubstr("A-1,acme-it,gold,cloud,USD,400.00,800.00"));
      EXPECT_THAT(res->body, HasSubstr("N-1,northwind,platinum,cloud,USD,400.00,800.00"));
    }
  }
  auto partner = client().Get("/v1/reports/mdf?period=2026-Q4", bearer("acme"));
  ASSERT_TRUE(partner);
  EXPECT_EQ(partner->status, 403);
  auto no_period = client().Get("/v1/reports/mdf", bearer("finance"));
  ASSERT_TRUE(no_period);
  EXPECT_EQ(no_period->status, 400);
  auto bad_format = client().Get("/v1/reports/mdf?period=2026-Q4&format=pdf", bearer("admin"));
  ASSERT_TRUE(bad_format);
  EXPECT_EQ(bad_format->status, 400);
}

}  // namespace
}  // namespace channeld::api
