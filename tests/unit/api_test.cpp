// Pure parts of the API: authentication and roles, lead attribution, machine-fetch detection.
// No server and no database: the HTTP behaviour is tested in tests/integration/.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <stdexcept>

#include "api/attribution.hpp"
#include "api/auth.hpp"

namespace channeld::api {
namespace {

using std::chrono::hours;

Request with_authorization(const std::string& value) {
  Request r;
  r.method = "GET";
  r.path = "/v1/results";
  r.headers["authorization"] = value;
  return r;
}

TokenLookup tokens_of(std::map<std::string, StoredToken> by_token) {
  std::map<std::string, StoredToken> by_hash;
  for (auto& [token, stored] : by_token) by_hash[token_hash(token)] = stored;
  return [by_hash](const std::string& hash) -> std::optional<StoredToken> {
    auto it = by_hash.find(hash);
    if (it == by_hash.end()) return std::nullopt;
    return it->second;
  };
}

TEST(Authenticate, ABearerTokenOfAPartnerGivesThatPartnersPrincipal) {
  auto lookup = tokens_of({{"chd_acme", {"acme-crm", "partner:acme-it"}}});
  auto who = authenticate(with_authorization("Bearer chd_acme"), lookup);
  ASSERT_TRUE(std::holds_alternative<Principal>(who));
  const auto& p = std::get<Principal>(who);
  EXPECT_EQ(p.role, Role::partner);
  EXPECT_EQ(p.partner_id, "acme-it");
  EXPECT_EQ(p.token_name, "acme-crm");
  EXPECT_TRUE(p.may_see_partner("acme-it"));
  EXPECT_FALSE(p.may_see_partner("northwind"));
}

TEST(Authenticate, NoHeaderAWrongSchemeOrAnUnknownTokenIs401) {
  auto lookup = tokens_of({{"chd_admin", {"ops", "admin"}}});
  Request none;
  for (const auto& request :
       {none, with_authorization("Basic Y2hkX2FkbWlu"), with_authorization("Bearer "),
        with_authorization("Bearer chd_nope"), with_authorization("chd_admin")}) {
    auto who = authenticate(request, lookup);
    ASSERT_TRUE(std::holds_alternative<Response>(who));
    const auto& r = std::get<Response>(who);
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(r.headers.at("WWW-Authenticate"), "Bearer realm=\"channeld\"");
    EXPECT_THAT(r.body, ::testing::HasSubstr("\"error\""));
  }
  EXPECT_TRUE(std::holds_alternative<Principal>(
      authenticate(with_authorization("bearer chd_admin"), lookup)))
      << "the scheme is case-insensitive (RFC 9110)";
}

TEST(Authenticate, AStoredRoleThisBinaryCannotReadGrantsNothing) {
  auto lookup = tokens_of({{"chd_x", {"x", "superuser"}}});
  auto who = authenticate(with_authorization("Bearer chd_x"), lookup);
  ASSERT_TRUE(std::holds_alternative<Response>(who));
  EXPECT_EQ(std::get<Response>(who).status, 401);
}

TEST(Authenticate, AFailingLookupIs503NotAPass) {
  TokenLookup broken = [](const std::string&) -> std::optional<StoredToken> {
    throw std::runtime_error("connection refused");
  };
  auto who = authenticate(with_authorization("Bearer chd_x"), broken);
  ASSERT_TRUE(std::holds_alternative<Response>(who));
  EXPECT_EQ(std::get<Response>(who).status, 503);
}

TEST(Require, AllowsListedRolesAndRefusesOthersWith403) {
  Principal finance{Role::finance, "", "books"};
  EXPECT_FALSE(require(finance, {Role::admin, Role::finance}));
  auto refused = require(finance, {Role::admin, Role::partner});
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 403);
  EXPECT_THAT(refused->body, ::testing::HasSubstr("admin, partner:<id>"));
}

TEST(ParseRole, ReadsTheThreeRolesAndRefusesAnythingElse) {
  EXPECT_EQ(parse_role("admin")->role, Role::admin);
  EXPECT_EQ(parse_role("finance")->role, Role::finance);
  EXPECT_EQ(parse_role("partner:acme-it")->partner_id, "acme-it");
  for (const char* bad : {"", "root", "partner:", "partner:Acme", "partner:a b", "Admin"})
    EXPECT_FALSE(parse_role(bad)) << bad;
}

TEST(Tokens, NewTokensAreLongRandomAndStoredOnlyAsTheirSha256) {
  std::set<std::string> seen;
  for (int i = 0; i < 50; ++i) {
    auto token = new_token();
    EXPECT_EQ(token.size(), 4u + 43u);
    EXPECT_EQ(token.rfind("chd_", 0), 0u);
    EXPECT_TRUE(seen.insert(token).second);
  }
  // SHA-256("abc"), FIPS 180-2 appendix B.1.
  EXPECT_EQ(token_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

// ---- attribution ------------------------------------------------------------------------

const SysTime kNow = std::chrono::sys_days{std::chrono::year{2026} / 12 / 20};

store::Touch touch(std::int64_t id, const std::string& kit, SysTime sent, bool clicked = false) {
  store::Touch t;
  t.outbox_id = id;
  t.kit_id = kit;
  t.step_id = "announce";
  t.message_id = "<" + std::to_string(id) + "@mkt.vendor.example>";
  t.sent_at = sent;
  t.clicked = clicked;
  return t;
}

TEST(AttributeLead, CreditsTheLastTouchWithinTheWindow) {
  auto a = attribute_lead(
      {touch(1, "q4", kNow - hours(24 * 30)), touch(2, "webinar", kNow - hours(24 * 3))}, kNow,
      hours(24 * 90), std::nullopt);
  ASSERT_TRUE(a.touch);
  EXPECT_EQ(a.touch->kit_id, "webinar");
  EXPECT_EQ(a.origin, "influenced");
}

TEST(AttributeLead, AClickedLastTouchMakesTheLeadPartnerSourced) {
  auto a =
      attribute_lead({touch(1, "q4", kNow - hours(48), true)}, kNow, hours(24 * 90), std::nullopt);
  EXPECT_EQ(a.origin, "partner_sourced");
}

TEST(AttributeLead, ALeadOutsideTheWindowIsUnattributed) {
  auto a = attribute_lead({touch(1, "q4", kNow - hours(24 * 91), true)}, kNow, hours(24 * 90),
                          std::nullopt);
  EXPECT_FALSE(a.touch);
  EXPECT_EQ(a.origin, "unattributed");
  EXPECT_EQ(attribute_lead({}, kNow, hours(24), std::nullopt).origin, "unattributed");
}

TEST(AttributeLead, TheWindowIncludesItsEdgeAndExcludesTheFuture) {
  EXPECT_TRUE(
      attribute_lead({touch(1, "q4", kNow - hours(24))}, kNow, hours(24), std::nullopt).touch);
  EXPECT_FALSE(
      attribute_lead({touch(1, "q4", kNow + hours(1))}, kNow, hours(24), std::nullopt).touch);
}

TEST(AttributeLead, AMessageNamedByTheReportWinsOverANewerOne) {
  auto a = attribute_lead({touch(1, "q4", kNow - hours(100)), touch(2, "webinar", kNow - hours(2))},
                          kNow, hours(24 * 90), std::string("<1@mkt.vendor.example>"));
  ASSERT_TRUE(a.touch);
  EXPECT_EQ(a.touch->kit_id, "q4");
  auto outside =
      attribute_lead({touch(1, "q4", kNow - hours(24 * 100)), touch(2, "webinar", kNow - hours(2))},
                     kNow, hours(24 * 90), std::string("<1@mkt.vendor.example>"));
  EXPECT_EQ(outside.touch->kit_id, "webinar")
      << "a named message outside the window is not credited";
}

// ---- machine fetches --------------------------------------------------------------------

TEST(MachineFetch, FlagsPrivacyProxiesAndScannersButNotPeople) {
  for (const char* machine :
       {"", "Mozilla/5.0",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
        "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
        "python-requests/2.31", "curl/7.88.1", "Mozilla/5.0 (compatible; Barracuda Sentinel)"}) {
    EXPECT_TRUE(is_machine_fetch(machine)) << machine;
  }
  for (const char* person :
       {"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.1 Safari/605.1.15",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/17.1 Mobile/15E148 Safari/604.1"}) {
    EXPECT_FALSE(is_machine_fetch(person)) << person;
  }
}

}  // namespace
}  // namespace channeld::api
