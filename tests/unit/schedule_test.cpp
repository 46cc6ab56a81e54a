#include "schedule/schedule.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <set>

namespace channeld::schedule {
namespace {

using namespace std::chrono_literals;
using std::chrono::December;
using std::chrono::February;
using std::chrono::January;
using std::chrono::March;
using std::chrono::November;

constexpr std::uint8_t kWeekdays = 0b0011111;  // Monday..Friday

LocalTime local(std::chrono::year_month_day day, std::chrono::minutes time_of_day) {
  return LocalTime{std::chrono::local_days{day} + time_of_day};
}

SysTime utc(std::chrono::year_month_day day, std::chrono::minutes time_of_day) {
  return SysTime{std::chrono::sys_days{day} + time_of_day};
}

const date::time_zone* zone(const char* name) {
  return date::locate_zone(name);
}

Step step(const char* id, std::chrono::minutes delay) {
  Step s;
  s.id = id;
  s.delay = delay;
  return s;
}

// The contract's sample kit: weekdays 08:00-18:00 local, starting Tuesday 2026-12-01 09:00.
Kit sample_kit() {
  Kit kit;
  kit.id = "q4-cloud-migration";
  kit.expires = 2027y / January / 31;
  kit.audience.tiers = {Tier::gold, Tier::platinum};
  kit.audience.types = {PartnerType::msp, PartnerType::var};
  kit.schedule.start = local(2026y / December / 1, 9h);
  kit.schedule.window = SendWindow{kWeekdays, 8 * 60, 18 * 60};
  kit.steps.push_back(step("announce", 0min));
  kit.steps.push_back(step("crm-sync", 1h));
  kit.steps.push_back(step("reminder", 24h * 3));
  return kit;
}

Partner sample_partner() {
  Partner partner;
  partner.id = "acme-it";
  partner.tier = Tier::gold;
  partner.type = PartnerType::msp;
  partner.region = "NA";
  partner.timezone = "America/Chicago";
  return partner;
}

// ---- eligibility --------------------------------------------------------------------------

struct EligibilityCase {
  const char* name;
  std::function<void(Kit&, Partner&)> change;
  std::optional<std::string> reason;
};

TEST(Ineligibility, NamesTheFirstRuleThePartnerFails) {
  const std::vector<EligibilityCase> cases{
      {"matching partner", [](Kit&, Partner&) {}, std::nullopt},
      {"suspended", [](Kit&, Partner& p) { p.active = false; }, "partner is suspended"},
      {"suspended beats tier",
       [](Kit&, Partner& p) {
         p.active = false;
         p.tier = Tier::silver;
       },
       "partner is suspended"},
      {"tier", [](Kit&, Partner& p) { p.tier = Tier::silver; },
       "tier silver is not in the kit's audience (gold, platinum)"},
      {"type", [](Kit&, Partner& p) { p.type = PartnerType::reseller; },
       "type reseller is not in the kit's audience (msp, var)"},
      {"region",
       [](Kit& k, Partner& p) {
         k.audience.regions = {"NA", "LATAM"};
         p.region = "EMEA";
       },
       "region EMEA is not in the kit's audience (NA, LATAM)"},
      {"empty audience lists admit everyone",
       [](Kit& k, Partner& p) {
         k.audience = Audience{};
         p.tier = Tier::registered;
         p.type = PartnerType::referral;
       },
       std::nullopt},
      {"opt-in without opting in",
       [](Kit& k, Partner& p) {
         k.audience.enrollment = Enrollment::opt_in;
         p.opt_in_kits = {"another-kit"};
       },
       "partner has not opted in to this kit"},
      {"opt-in after opting in",
       [](Kit& k, Partner& p) {
         k.audience.enrollment = Enrollment::opt_in;
         p.opt_in_kits = {"another-kit", "q4-cloud-migration"};
       },
       std::nullopt},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Kit kit = sample_kit();
    Partner partner = sample_partner();
    c.change(kit, partner);
    EXPECT_EQ(ineligibility(kit, partner), c.reason);
  }
}

// ---- due times ----------------------------------------------------------------------------

TEST(StepDue, ReadsTheSameLocalStartInEachPartnersZone) {
  const Kit kit = sample_kit();
  EXPECT_EQ(step_due(kit, 0, zone("America/Chicago")), utc(2026y / December / 1, 15h));
  EXPECT_EQ(step_due(kit, 0, zone("Asia/Tokyo")), utc(2026y / December / 1, 0h));
  EXPECT_EQ(step_due(kit, 0, zone("Europe/Berlin")), utc(2026y / December / 1, 8h));
}

TEST(StepDue, AddsTheDelaysOfAllStepsUpToTheOneAsked) {
  const Kit kit = sample_kit();
  const auto* chicago = zone("America/Chicago");
  EXPECT_EQ(step_due(kit, 1, chicago), utc(2026y / December / 1, 16h));
  // 09:00 + 1h + 3d = Friday 2026-12-04 10:00 CST.
  EXPECT_EQ(step_due(kit, 2, chicago), utc(2026y / December / 4, 16h));
}

TEST(StepDue, RejectsAStepIndexPastTheLastStep) {
  EXPECT_THROW(step_due(sample_kit(), 3, zone("UTC")), std::out_of_range);
}

TEST(StepDue, MovesASaturdaySendToMondayMorningLocal) {
  Kit kit = sample_kit();
  kit.schedule.start = local(2026y / December / 5, 9h);  // a Saturday
  EXPECT_EQ(step_due(kit, 0, zone("America/Chicago")), utc(2026y / December / 7, 14h));
  EXPECT_EQ(step_due(kit, 0, zone("Asia/Tokyo")), utc(2026y / December / 6, 23h));
}

TEST(StepDue, MovesAnEveningSendToTheNextMorning) {
  Kit kit = sample_kit();
  kit.schedule.start = local(2026y / December / 1, 19h);
  EXPECT_EQ(step_due(kit, 0, zone("America/Chicago")), utc(2026y / December / 2, 14h));

  kit.schedule.start = local(2026y / December / 1, 9h);
  kit.steps[1].delay = 10h;  // 19:00 Tuesday
  EXPECT_EQ(step_due(kit, 1, zone("America/Chicago")), utc(2026y / December / 2, 14h));
}

TEST(StepDue, MovesATimeSkippedBySpringForwardToTheEndOfTheGap) {
  Kit kit = sample_kit();
  kit.schedule.window = SendWindow{};  // always open
  // 2027-03-14 02:30 does not exist in Chicago: clocks jump from 02:00 CST to 03:00 CDT.
  kit.schedule.start = local(2027y / March / 14, 2h + 30min);
  EXPECT_EQ(step_due(kit, 0, zone("America/Chicago")), utc(2027y / March / 14, 8h));
}

TEST(StepDue, TakesTheEarlierInstantOfATimeRepeatedByFallBack) {
  Kit kit = sample_kit();
  kit.schedule.window = SendWindow{};
  // 2026-11-01 01:30 happens twice in Chicago: first at CDT (UTC-5), then at CST (UTC-6).
  kit.schedule.start = local(2026y / November / 1, 1h + 30min);
  EXPECT_EQ(step_due(kit, 0, zone("America/Chicago")), utc(2026y / November / 1, 6h + 30min));
}

TEST(StepDue, RefusesAKitWhoseWindowNeverOpens) {
  Kit kit = sample_kit();
  kit.schedule.window.days = 0;
  EXPECT_THROW(step_due(kit, 0, zone("UTC")), InputError);
}

// ---- windows ------------------------------------------------------------------------------

TEST(InWindow, IncludesTheOpeningMinuteAndExcludesTheClosingOne) {
  const SendWindow window{kWeekdays, 8 * 60, 18 * 60};
  const auto* chicago = zone("America/Chicago");
  // Tuesday 2026-12-01 in Chicago is UTC-6.
  EXPECT_FALSE(in_window(window, chicago, utc(2026y / December / 1, 13h + 59min)));
  EXPECT_TRUE(in_window(window, chicago, utc(2026y / December / 1, 14h)));
  EXPECT_TRUE(in_window(window, chicago, utc(2026y / December / 1, 23h + 59min)));
  EXPECT_FALSE(in_window(window, chicago, utc(2026y / December / 2, 0h)));
}

TEST(InWindow, JudgesTheDayOfWeekInThePartnersZone) {
  const SendWindow window{kWeekdays, 0, 24 * 60};
  // Friday 2026-12-04 20:00 UTC is Saturday 05:00 in Tokyo and still Friday in Chicago.
  const SysTime at = utc(2026y / December / 4, 20h);
  EXPECT_TRUE(in_window(window, zone("America/Chicago"), at));
  EXPECT_FALSE(in_window(window, zone("Asia/Tokyo"), at));
}

TEST(NextWindowOpen, ReturnsTheSameInstantInsideTheWindow) {
  const SendWindow window{kWeekdays, 8 * 60, 18 * 60};
  const SysTime at = utc(2026y / December / 1, 15h);
  EXPECT_EQ(next_window_open(window, zone("America/Chicago"), at), at);
}

TEST(NextWindowOpen, KeepsLocalOpeningTimeAcrossADstChange) {
  const SendWindow window{kWeekdays, 8 * 60, 18 * 60};
  // Friday 2027-03-12 19:00 CST; the next opening is Monday 08:00 CDT, after spring-forward.
  EXPECT_EQ(next_window_open(window, zone("America/Chicago"), utc(2027y / March / 13, 1h)),
            utc(2027y / March / 15, 13h));
}

TEST(NextWindowOpen, FindsAWindowOpenOneDayAWeek) {
  const SendWindow sundays{0b1000000, 10 * 60, 11 * 60};
  // Sunday 2026-12-06 11:00 UTC has just closed; the next is a week later.
  EXPECT_EQ(next_window_open(sundays, zone("UTC"), utc(2026y / December / 6, 11h)),
            utc(2026y / December / 13, 10h));
}

TEST(NextWindowOpen, SkipsAnOpeningSwallowedByADstGap) {
  const SendWindow night{0x7f, 2 * 60, 2 * 60 + 30};
  // Chicago has no 02:00-02:30 on 2027-03-14, so the next opening is on the 15th (CDT).
  EXPECT_EQ(next_window_open(night, zone("America/Chicago"), utc(2027y / March / 14, 0h)),
            utc(2027y / March / 15, 7h));
}

TEST(NextWindowOpen, ReportsAWindowThatNeverOpens) {
  const SysTime at = utc(2026y / December / 1, 0h);
  EXPECT_EQ(next_window_open(SendWindow{0, 0, 24 * 60}, zone("UTC"), at), std::nullopt);
  EXPECT_EQ(next_window_open(SendWindow{0x7f, 600, 600}, zone("UTC"), at), std::nullopt);
}

// ---- expiry -------------------------------------------------------------------------------

TEST(Expired, StillSendsOnTheExpiryDayInThePartnersZone) {
  const Kit kit = sample_kit();  // expires 2027-01-31
  const auto* chicago = zone("America/Chicago");
  EXPECT_FALSE(expired(kit, chicago, utc(2027y / January / 31, 6h)));          // 00:00 local
  EXPECT_FALSE(expired(kit, chicago, utc(2027y / February / 1, 5h + 59min)));  // 23:59 local
  EXPECT_TRUE(expired(kit, chicago, utc(2027y / February / 1, 6h)));           // Feb 1 00:00 local
}

TEST(Expired, ExpiresEarlierForPartnersAheadOfUtc) {
  const Kit kit = sample_kit();
  const SysTime at = utc(2027y / January / 31, 15h + 30min);  // Feb 1 00:30 in Tokyo
  EXPECT_TRUE(expired(kit, zone("Asia/Tokyo"), at));
  EXPECT_FALSE(expired(kit, zone("America/Chicago"), at));
}

// ---- retries ------------------------------------------------------------------------------

TEST(RetryDelay, DoublesEachAttemptWithinEqualJitterBounds) {
  const auto base = 60s;
  for (int attempt = 1; attempt <= 6; ++attempt) {
    const auto ceiling = base * (1 << (attempt - 1));
    for (std::uint64_t seed = 0; seed < 200; ++seed) {
      const auto delay = retry_delay(attempt, base, 6h, seed);
      ASSERT_GE(delay, ceiling / 2) << "attempt " << attempt << " seed " << seed;
      ASSERT_LE(delay, ceiling) << "attempt " << attempt << " seed " << seed;
    }
  }
}

TEST(RetryDelay, NeverExceedsTheCapEvenForHugeAttemptCounts) {
  for (int attempt : {10, 11, 64, 1000, 1 << 30}) {  // 60 s * 2^9 > 6 h from attempt 10
    for (std::uint64_t seed = 0; seed < 50; ++seed) {
      const auto delay = retry_delay(attempt, 60s, 6h, seed);
      ASSERT_GE(delay, 3h);
      ASSERT_LE(delay, 6h);
    }
  }
}

TEST(RetryDelay, IsReproducibleForOneSeedAndSpreadAcrossSeeds) {
  EXPECT_EQ(retry_delay(4, 60s, 6h, 42), retry_delay(4, 60s, 6h, 42));
  std::set<std::int64_t> distinct;
  for (std::uint64_t seed = 0; seed < 100; ++seed) {
    distinct.insert(retry_delay(4, 60s, 6h, seed).count());
  }
  // 241 possible values (240..480 s): 100 seeds must land on many of them, not a few.
  EXPECT_GT(distinct.size(), 50u);
}

TEST(RetryDelay, VariesBetweenAttemptsOfOneMessage) {
  // With the same ceiling (capped), attempts still draw different jitter.
  std::set<std::int64_t> distinct;
  for (int attempt = 20; attempt < 30; ++attempt) {
    distinct.insert(retry_delay(attempt, 60s, 6h, 7).count());
  }
  EXPECT_GT(distinct.size(), 5u);
}

// ---- partner proofs ---------------------------------------------------------------------

// 2026-12-01 09:00 in Chicago (CST, UTC-6) is 15:00 UTC.
const SysTime kChicagoStart = utc(2026y / December / 1, 15h);

TEST(ProofTiming, IsDueLeadTimeBeforeThePartnersFirstStep) {
  const Kit kit = sample_kit();
  const SysTime now = utc(2026y / November / 20, 0h);
  auto timing = proof_timing(kit, false, zone("America/Chicago"), 48h, now);
  ASSERT_TRUE(timing);
  EXPECT_EQ(timing->email_step, 0u);
  EXPECT_EQ(timing->email_at, kChicagoStart);
  EXPECT_EQ(timing->first_step_at, kChicagoStart);
  EXPECT_EQ(timing->due, kChicagoStart - 48h);
}

TEST(ProofTiming, GoesAtOnceWhenTheLeadTimeHasPassedAndTheStepKeepsItsTime) {
  const Kit kit = sample_kit();
  // Loaded 5 hours before the start: less than the 48 h lead time.
  const SysTime now = kChicagoStart - 5h;
  auto timing = proof_timing(kit, false, zone("America/Chicago"), 48h, now);
  ASSERT_TRUE(timing);
  EXPECT_EQ(timing->due, now);
  EXPECT_EQ(timing->email_at, kChicagoStart) << "a proof never delays the step";
}

TEST(ProofTiming, NoProofOnceTheFirstStepIsDue) {
  const Kit kit = sample_kit();
  EXPECT_FALSE(proof_timing(kit, false, zone("America/Chicago"), 48h, kChicagoStart));
  EXPECT_FALSE(proof_timing(kit, false, zone("America/Chicago"), 48h, kChicagoStart + 1h));
  EXPECT_TRUE(proof_timing(kit, false, zone("America/Chicago"), 48h, kChicagoStart - 1s));
}

TEST(ProofTiming, ZeroLeadTimeDisablesProofs) {
  const Kit kit = sample_kit();
  EXPECT_FALSE(
      proof_timing(kit, false, zone("America/Chicago"), 0min, utc(2026y / November / 20, 0h)));
}

TEST(ProofTiming, AKitWithoutAnEmailStepHasNoProof) {
  Kit kit = sample_kit();
  for (auto& s : kit.steps) s.channel = Channel::webhook;
  EXPECT_FALSE(
      proof_timing(kit, true, zone("America/Chicago"), 48h, utc(2026y / November / 20, 0h)));
}

TEST(ProofTiming, AnEarlierWebhookStepSetsTheDueTimeOnlyForPartnersWithAWebhook) {
  Kit kit = sample_kit();
  kit.steps[0].channel = Channel::webhook;  // 09:00 webhook, then the 10:00 email "crm-sync"
  const SysTime now = utc(2026y / November / 20, 0h);
  auto with_hook = proof_timing(kit, true, zone("America/Chicago"), 48h, now);
  ASSERT_TRUE(with_hook);
  EXPECT_EQ(with_hook->email_step, 1u);
  EXPECT_EQ(with_hook->email_at, kChicagoStart + 1h);
  EXPECT_EQ(with_hook->due, kChicagoStart - 48h);
  auto without = proof_timing(kit, false, zone("America/Chicago"), 48h, now);
  ASSERT_TRUE(without);
  EXPECT_EQ(without->first_step_at, kChicagoStart + 1h);
  EXPECT_EQ(without->due, kChicagoStart + 1h - 48h);
}

TEST(ProofTiming, FollowsEachPartnersTimeZone) {
  const Kit kit = sample_kit();
  const SysTime now = utc(2026y / November / 20, 0h);
  // 09:00 in Berlin (CET, UTC+1) is 08:00 UTC, seven hours before Chicago's.
  auto berlin = proof_timing(kit, false, zone("Europe/Berlin"), 48h, now);
  ASSERT_TRUE(berlin);
  EXPECT_EQ(berlin->due, utc(2026y / December / 1, 8h) - 48h);
}

}  // namespace
}  // namespace channeld::schedule
