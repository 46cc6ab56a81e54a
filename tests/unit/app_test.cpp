// The dispatcher's rules, without a database or a server: which leased rows may be sent now,
// and what each connector verdict does to a row.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "app/decisions.hpp"
#include "app/hit_journal.hpp"
#include "app/journal.hpp"
#include "app/proofs.hpp"
#include "support/support.hpp"

namespace channeld::app {
namespace {

using namespace std::chrono_literals;
using store::OutcomeKind;

SysTime utc(int y, unsigned m, unsigned d, int hour) {
  return SysTime{std::chrono::sys_days{std::chrono::year{y} / m / d}} + std::chrono::hours{hour};
}

class DecideTest : public ::testing::Test {
 protected:
  DecideTest() {
    Kit kit;
    kit.id = "cloud";
    kit.version = 2;
    kit.expires = std::chrono::year{2027} / 1 / 31;
    kit.schedule.start = LocalTime{std::chrono::local_days{std::chrono::year{2026} / 11 / 1}};
    kit.schedule.window = SendWindow{0x1f, 8 * 60, 18 * 60};  // Mon-Fri 08:00-18:00
    Step step;
    step.id = "announce";
    kit.steps.push_back(step);
    KitEntry entry;
    entry.live = std::make_shared<const catalog::ValidKit>(catalog::ValidKit{kit, nullptr});
    entry.state = KitState::live;
    snapshot.kits.emplace("cloud", entry);

    Partner partner;
    partner.id = "acme-it";
    partner.timezone = "America/Chicago";
    snapshot.partners.partners.emplace("acme-it", partner);

    row.id = 42;
    row.kit_id = "cloud";
    row.step_id = "announce";
    row.partner_id = "acme-it";
    row.email = "dana@example.com";
    row.attempts = 1;
  }

  Decision decide_at(SysTime now) { return decide(row, snapshot, now, policy); }

  Snapshot snapshot;
  store::ClaimedMessage row;
  RetryPolicy policy{3, 60s, 3600s};
  // Wednesday 2026-12-02 10:00 in Chicago (UTC-6).
  SysTime wednesday_morning = utc(2026, 12, 2, 16);
};

TEST_F(DecideTest, SendsADueMessageInsideTheWindow) {
  auto d = decide_at(wednesday_morning);
  ASSERT_TRUE(d.send.has_value());
  EXPECT_FALSE(d.settle.has_value());
  EXPECT_EQ(d.send->step->id, "announce");
  EXPECT_EQ(d.send->partner->id, "acme-it");
}

TEST_F(DecideTest, NeverSendsToASuppressedAddress) {
  row.suppressed = true;
  auto d = decide_at(wednesday_morning);
  ASSERT_TRUE(d.settle.has_value());
  EXPECT_EQ(d.settle->kind, OutcomeKind::suppressed);
}

TEST_F(DecideTest, DefersToTheNextWindowOpeningWithoutCountingAnAttempt) {
  // Saturday 2026-12-05 12:00 Chicago: the window opens Monday 08:00 Chicago = 14:00 UTC.
  auto d = decide_at(utc(2026, 12, 5, 18));
  ASSERT_TRUE(d.settle.has_value());
  EXPECT_EQ(d.settle->kind, OutcomeKind::deferred);
  EXPECT_EQ(d.settle->retry_at, utc(2026, 12, 7, 14));
}

TEST_F(DecideTest, ExpiresMessagesOfAnExpiredRemovedOrChangedKit) {
  EXPECT_EQ(decide_at(utc(2027, 2, 2, 16)).settle->kind, OutcomeKind::expired);

  row.step_id = "dropped-in-v2";
  auto changed = decide_at(wednesday_morning);
  ASSERT_TRUE(changed.settle.has_value());
  EXPECT_EQ(changed.settle->kind, OutcomeKind::expired);
  EXPECT_NE(changed.settle->detail.find("version 2"), std::string::npos);

  row.kit_id = "removed";
  EXPECT_EQ(decide_at(wednesday_morning).settle->kind, OutcomeKind::expired);
}

TEST_F(DecideTest, ExpiresMessagesOfASuspendedPartner) {
  snapshot.partners.partners.at("acme-it").active = false;
  auto d = decide_at(wednesday_morning);
  ASSERT_TRUE(d.settle.has_value());
  EXPECT_EQ(d.settle->kind, OutcomeKind::expired);
  EXPECT_NE(d.settle->detail.find("suspended"), std::string::npos);
}

TEST_F(DecideTest, HoldsEveryMessageWhileTheSuppressionFileIsUnreadable) {
  snapshot.suppressions_error = "suppressions.csv:1: unknown column 'partner'";
  auto d = decide_at(wednesday_morning);
  ASSERT_TRUE(d.settle.has_value());
  EXPECT_EQ(d.settle->kind, OutcomeKind::deferred);
  EXPECT_EQ(d.settle->retry_at, wednesday_morning + snapshot.config.delivery.scan_interval);
}

TEST_F(DecideTest, HoldsMessagesOfABrokenPartnerFileButExpiresThoseOfARemovedOne) {
  snapshot.partners.partners.erase("acme-it");
  EXPECT_EQ(decide_at(wednesday_morning).settle->kind, OutcomeKind::expired);
  snapshot.partners.broken.emplace("acme-it", "acme-it.toml:3: bad tier");
  EXPECT_EQ(decide_at(wednesday_morning).settle->kind, OutcomeKind::deferred);
}

TEST_F(DecideTest, HoldsMessagesOfARefusedKitThatHasNoGoodVersion) {
  snapshot.kits.at("cloud").live.reset();
  snapshot.kits.at("cloud").state = KitState::refused;
  EXPECT_EQ(decide_at(wednesday_morning).settle->kind, OutcomeKind::deferred);
}

TEST_F(DecideTest, HoldsMessagesOfAPartnerHeldBackForThisKitOnly) {
  auto held = std::make_shared<catalog::ValidKit>(*snapshot.kits.at("cloud").live);
  held->held_partners.emplace("acme-it", "acme-it.csv:1: header row lacks last_name");
  snapshot.kits.at("cloud").live = held;
  auto d = decide_at(wednesday_morning);
  ASSERT_TRUE(d.settle.has_value());
  EXPECT_EQ(d.settle->kind, OutcomeKind::deferred);
  EXPECT_NE(d.settle->detail.find("last_name"), std::string::npos);
}

TEST_F(DecideTest, FailsARowLeasedMoreOftenThanTheAttemptLimit) {
  row.attempts = policy.max_attempts + 1;
  auto d = decide_at(wednesday_morning);
  ASSERT_TRUE(d.settle.has_value());
  EXPECT_EQ(d.settle->kind, OutcomeKind::failed);
}

// A proof row of kit "cloud" v2 (first step 2026-11-01 00:00 Chicago, lead time 48 h).
class DecideProofTest : public DecideTest {
 protected:
  DecideProofTest() {
    row.channel = Channel::proof;
    row.kit_version = 2;
    row.email = "marketing@acme-it.example";
  }
  Decision decide_proof_at(SysTime now) { return decide_proof(row, snapshot, now, policy); }
  // Saturday 2026-10-31 02:00 Chicago (UTC-5): the day before the start, outside the window.
  SysTime night_before = utc(2026, 10, 31, 7);
};

TEST_F(DecideProofTest, SendsAProofOutsideTheSendWindowBeforeTheFirstStep) {
  auto d = decide_proof_at(night_before);
  ASSERT_TRUE(d.send.has_value()) << (d.settle ? d.settle->detail : "");
  EXPECT_EQ(d.send->step->id, "announce");
}

TEST_F(DecideProofTest, ExpiresAProofOnceTheFirstStepIsDueOrProofsAreOff) {
  auto late = decide_proof_at(utc(2026, 11, 2, 16));
  ASSERT_TRUE(late.settle.has_value());
  EXPECT_EQ(late.settle->kind, OutcomeKind::expired);
  snapshot.config.proofs.lead_time = std::chrono::minutes{0};
  auto off = decide_proof_at(night_before);
  ASSERT_TRUE(off.settle.has_value());
  EXPECT_EQ(off.settle->kind, OutcomeKind::expired);
}

TEST_F(DecideProofTest, ExpiresAProofOfAnOlderKitVersion) {
  row.kit_version = 1;
  auto d = decide_proof_at(night_before);
  ASSERT_TRUE(d.settle.has_value());
  EXPECT_EQ(d.settle->kind, OutcomeKind::expired);
  EXPECT_NE(d.settle->detail.find("superseded by kit version 2"), std::string::npos);
}

TEST_F(DecideProofTest, ASuppressedReplyToSettlesTheProofAsSuppressed) {
  row.suppressed = true;
  auto d = decide_proof_at(night_before);
  ASSERT_TRUE(d.settle.has_value());
  EXPECT_EQ(d.settle->kind, OutcomeKind::suppressed);
}

TEST(SampleContact, ShowsEveryColumnAsItsNameAndNoRealAddress) {
  const Contact c = sample_contact({"industry"});
  EXPECT_EQ(c.first_name, "[first_name]");
  EXPECT_EQ(c.extra.at("industry"), "[industry]");
  EXPECT_EQ(c.email, "sample.contact@example.com");
  EXPECT_EQ(proof_from_json(proof_json({12, {"industry"}})).audience, 12);
}

TEST(OutcomeOfSend, MapsEachVerdictToItsRowState) {
  const RetryPolicy policy{3, 60s, 3600s};
  const SysTime now = utc(2026, 12, 2, 16);
  EXPECT_EQ(outcome_of_send(1, deliver::Verdict::sent, "250 ok", 1, now, policy).kind,
            OutcomeKind::sent);
  EXPECT_EQ(outcome_of_send(1, deliver::Verdict::failed, "554", 1, now, policy).kind,
            OutcomeKind::failed);
  EXPECT_EQ(outcome_of_send(1, deliver::Verdict::hard_bounce, "550", 1, now, policy).kind,
            OutcomeKind::bounced);
}

TEST(OutcomeOfSend, RetriesTransientFailuresWithGrowingBackoffUntilTheLimit) {
  const RetryPolicy policy{3, 60s, 3600s};
  const SysTime now = utc(2026, 12, 2, 16);
  auto first = outcome_of_send(7, deliver::Verdict::retry, "451 later", 1, now, policy);
  auto second = outcome_of_send(7, deliver::Verdict::retry, "451 later", 2, now, policy);
  ASSERT_EQ(first.kind, OutcomeKind::retry);
  ASSERT_EQ(second.kind, OutcomeKind::retry);
  EXPECT_GE(first.retry_at, now + 30s);  // equal jitter: at least half the base
  EXPECT_LE(first.retry_at, now + 60s);
  EXPECT_GE(second.retry_at, now + 60s);  // the base doubles for the second retry
  EXPECT_LE(second.retry_at, now + 120s);
  EXPECT_EQ(first.detail, "451 later");

  auto last = outcome_of_send(7, deliver::Verdict::retry, "451 later", 3, now, policy);
  EXPECT_EQ(last.kind, OutcomeKind::failed);
  EXPECT_NE(last.detail.find("gave up after 3 attempts"), std::string::npos);
}

// ---- the delivery journal ------------------------------------------------------------------

store::Outcome sent_outcome(std::int64_t id) {
  store::Outcome o = make_outcome(id, OutcomeKind::sent, "250 2.0.0 OK queued as " + std::to_string(id));
  o.message_id = "<" + std::to_string(id) + "@mkt.vendor.example>";
  o.rendered_version = 3;
  return o;
}

using Replayed = std::map<std::string, std::vector<store::Outcome>>;
Replayed replay(const std::filesystem::path& dir) {
  Replayed out;
  replay_dead_journals(dir, [&](const std::string& owner, const std::vector<store::Outcome>& os) {
    auto& v = out[owner];
    v.insert(v.end(), os.begin(), os.end());
  });
  return out;
}

TEST(Journal, ALineReadsBackAsTheOutcomeItWasWrittenFrom) {
  store::Outcome retry = make_outcome(7, OutcomeKind::retry, "451 4.3.0 try again\tlater \xff");
  retry.retry_at = utc(2026, 11, 3, 9);
  for (const auto& o : {sent_outcome(5), retry}) {
    std::string owner;
    store::Outcome back;
    ASSERT_TRUE(parse_journal_line(journal_line("host:12:345", o), owner, back));
    EXPECT_EQ(owner, "host:12:345");
    EXPECT_EQ(back.id, o.id);
    EXPECT_EQ(back.kind, o.kind);
    EXPECT_EQ(back.retry_at, o.retry_at);
    EXPECT_EQ(back.message_id, o.message_id);
    EXPECT_EQ(back.rendered_version, o.rendered_version);
  }
  std::string owner;
  // A verdict keeps its time through the journal (a replay records when it was sent), and a
  // verdict without one is stamped when written.
  store::Outcome timed = sent_outcome(9);
  timed.at = utc(2026, 11, 2, 14);
  store::Outcome back_timed;
  ASSERT_TRUE(parse_journal_line(journal_line("host:12:345", timed), owner, back_timed));
  EXPECT_EQ(back_timed.at, timed.at);
  const auto before = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
  ASSERT_TRUE(parse_journal_line(journal_line("host:12:345", sent_outcome(10)), owner, back_timed));
  EXPECT_GE(back_timed.at, before);

  store::Outcome back;
  EXPECT_FALSE(parse_journal_line("{\"owner\":\"a\",\"id\":3,\"ki", owner, back))
      << "a torn last line is skipped, not misread";
}

TEST(HitJournalLine, ReadsBackAsTheHitItWasWrittenFrom) {
  store::Hit click;
  click.click = true;
  click.outbox_id = 123456789012;
  click.kit_id = "q4-launch";
  click.partner_id = "acme-it";
  click.proxy = true;
  click.link_index = 3;
  click.link = std::string("https://acme-it.example/a?b=1&c=\\t\tx\n\0y", 39);
  click.user_agent = "Bot\t1\r\n\\";
  click.at = utc(2026, 12, 1, 9);
  std::uint64_t line = 0;
  store::Hit back;
  const std::string text = hit_journal_line(42, click);
  ASSERT_EQ(text.back(), '\n');
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << "one hit, one line";
  EXPECT_EQ(text.find('\0'), std::string::npos) << "a segment's lines end at its first NUL";
  ASSERT_TRUE(parse_hit_journal_line(std::string_view(text).substr(0, text.size() - 1), line, back));
  EXPECT_EQ(line, 42u);
  EXPECT_TRUE(back.click);
  EXPECT_EQ(back.outbox_id, click.outbox_id);
  EXPECT_EQ(back.kit_id, click.kit_id);
  EXPECT_EQ(back.partner_id, click.partner_id);
  EXPECT_TRUE(back.proxy);
  EXPECT_EQ(back.link_index, 3);
  EXPECT_EQ(back.link, click.link);
  EXPECT_EQ(back.user_agent, click.user_agent);
  EXPECT_EQ(back.at, click.at);

  // A user agent is clipped to what the database keeps before it reaches the disk.
  store::Hit open = click;
  open.click = false;
  open.user_agent = std::string(5000, 'a') + "\xff";
  const std::string long_text = hit_journal_line(43, open);
  ASSERT_TRUE(
      parse_hit_journal_line(std::string_view(long_text).substr(0, long_text.size() - 1), line, back));
  EXPECT_FALSE(back.click);
  EXPECT_EQ(back.user_agent, std::string(200, 'a'));
}

TEST(HitJournalLine, ATornOrForeignLineIsRefused) {
  std::uint64_t line = 0;
  store::Hit back;
  store::Hit hit;
  hit.outbox_id = 7;
  const std::string text = hit_journal_line(9, hit);
  for (std::size_t cut = 0; cut + 1 < text.size(); ++cut) {
    const std::string_view part = std::string_view(text).substr(0, cut);
    // The last field may end anywhere: only cuts that lose whole fields or a number show.
    if (std::count(part.begin(), part.end(), '\t') < 9) {
      EXPECT_FALSE(parse_hit_journal_line(part, line, back)) << part;
    }
  }
  EXPECT_FALSE(parse_hit_journal_line("0\t1\t7\t0\t0\t0\tk\tp\tl\tua", line, back))
      << "lines are numbered from 1";
  EXPECT_FALSE(parse_hit_journal_line("1\t2\t7\t0\t0\t0\tk\tp\tl\tua", line, back));
  EXPECT_FALSE(parse_hit_journal_line("1\t1\tx7\t0\t0\t0\tk\tp\tl\tua", line, back));
  EXPECT_FALSE(parse_hit_journal_line("1\t1\t7\t0\t0\t0\tk\tp\tl\\q\tua", line, back))
      << "an escape the writer never makes";
  EXPECT_FALSE(parse_hit_journal_line("{\"owner\":\"a\",\"id\":3}", line, back))
      << "a delivery journal's line";
}

TEST(Journal, ALiveDaemonsJournalIsNeverReplayed) {
  testing::TempDir dir;
  Journal live(dir.path(), "live:1:1");
  ASSERT_TRUE(live.append(sent_outcome(1)).empty());
  EXPECT_TRUE(replay(dir.path()).empty()) << "its lock is held";
}

TEST(Journal, RecordedSegmentsGoAndACleanStopLeavesNothing) {
  testing::TempDir dir;
  {
    Journal j(dir.path(), "a:1:1");
    j.append(sent_outcome(1));
    j.append(sent_outcome(2));
    const auto mark = j.cut();
    j.append(sent_outcome(3));  // arrives while the batch before the cut is being recorded
    j.recorded(mark);
    EXPECT_TRUE(j.pending()) << "the verdict after the cut is not recorded yet";
    j.recorded(j.cut());
    EXPECT_FALSE(j.pending());
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(Journal, ADeadDaemonsUnrecordedVerdictsAreReplayedAsThatOwnerThenRemoved) {
  testing::TempDir dir;
  // A child process appends and dies without cleaning up, as after kill -9.
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    Journal j(dir.path(), "dead:9:9");
    j.append(sent_outcome(1));
    j.recorded(j.cut());  // 1 is in the store
    j.append(sent_outcome(2));
    j.append(sent_outcome(3));
    _exit(0);  // no destructor: the files stay, the lock goes with the process
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);

  auto replayed = replay(dir.path());
  ASSERT_EQ(replayed.size(), 1u);
  const auto& outcomes = replayed["dead:9:9"];
  ASSERT_EQ(outcomes.size(), 2u);
  EXPECT_EQ(outcomes[0].id, 2);
  EXPECT_EQ(outcomes[1].id, 3);
  EXPECT_EQ(outcomes[1].message_id, "<3@mkt.vendor.example>");
  EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "replayed journals are removed";
  EXPECT_TRUE(replay(dir.path()).empty());
}

TEST(Journal, AJournalWhoseReplayFailsIsKeptForTheNextStart) {
  testing::TempDir dir;
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    Journal j(dir.path(), "dead:1:1");
    j.append(sent_outcome(1));
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_THROW(replay_dead_journals(dir.path(),
                                    [](const std::string&, const std::vector<store::Outcome>&) {
                                      throw std::runtime_error("database away");
                                    }),
               std::runtime_error);
  EXPECT_EQ(replay(dir.path())["dead:1:1"].size(), 1u);
}

}  // namespace
}  // namespace channeld::app

// ---- what SIGHUP can change ----------------------------------------------------------------

#include <fstream>
#include <sstream>

#include "app/reload.hpp"

namespace channeld::app {
namespace {

TEST(RestartOnlyChanges, NamesEveryChangedKeyThatOnlyARestartApplies) {
  Config before;
  before.database_url = "postgresql://a";
  Config after = before;
  after.smtp.timeout = std::chrono::seconds{5};
  after.limits.per_domain_per_second = 2;
  after.delivery.lease = std::chrono::seconds{60};
  after.vendor.name = "Vendor Two";                         // reloads
  after.delivery.scan_interval = std::chrono::seconds{5};   // reloads
  after.delivery.shutdown_grace = std::chrono::seconds{1};  // reloads
  EXPECT_EQ(
      restart_only_changes(before, after),
      (std::vector<std::string>{"smtp.timeout", "limits.per_domain_per_second", "delivery.lease"}));
  EXPECT_TRUE(restart_only_changes(before, before).empty());
}

TEST(RestartOnlyChanges, OperationsGuideListsEveryRestartOnlyKey) {
  std::ifstream file(std::string(CHANNELD_SOURCE_DIR) + "/docs/operations.md");
  std::stringstream text;
  text << file.rdbuf();
  ASSERT_FALSE(text.str().empty());
  for (const auto& key : restart_only_keys())
    EXPECT_NE(text.str().find("`" + key + "`"), std::string::npos)
        << key << " takes effect only at restart but docs/operations.md does not say so";
}

}  // namespace
}  // namespace channeld::app
