// app::HitJournal against a real PostgreSQL and real files: opens and clicks are answered once
// they are on disk, reach the database once, survive the database refusing them and a stop,
// and a replay after a crash records exactly what the database did not have.
#include "app/hit_journal.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <soci/soci.h>

#include <atomic>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "store/store.hpp"
#include "support/support.hpp"

namespace channeld::app {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

const SysTime kSent = std::chrono::sys_days{std::chrono::year{2026} / 12 / 1} + std::chrono::hours{9};

class HitJournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = testing::fresh_database(testing::database_for_this_test("hits_"));
    if (db_.empty()) GTEST_SKIP();
    store_ = std::make_unique<store::Store>(db_, 2);
    store_->migrate();
    engagement_ = std::make_unique<store::Engagement>(*store_);
    for (int i = 0; i < 3; ++i) ids_.push_back(send("c" + std::to_string(i) + "@example.com"));
  }

  // A message that went out; returns its outbox id.
  std::int64_t send(const std::string& email) {
    store::NewMessage m;
    m.kit_id = "q4";
    m.kit_version = 1;
    m.step_id = "announce";
    m.partner_id = "acme-it";
    m.email = email;
    m.contact_json = nlohmann::json{{"email", email}}.dump();
    m.due_at = kSent - std::chrono::hours(1);
    store_->enqueue({m});
    auto claimed = store_->claim("test-owner", 10, kSent, std::chrono::seconds(60));
    EXPECT_EQ(claimed.size(), 1u);
    store::Outcome o;
    o.id = claimed.at(0).id;
    o.kind = store::OutcomeKind::sent;
    o.detail = "250 ok";
    o.message_id = "<" + email + ">";
    o.rendered_version = 1;
    store_->record("test-owner", {o}, kSent);
    return o.id;
  }

  store::Hit hit(std::size_t message, bool click) {
    store::Hit h;
    h.click = click;
    h.outbox_id = ids_.at(message);
    h.kit_id = "q4";
    h.partner_id = "acme-it";
    h.link_index = click ? 1 : 0;
    h.link = click ? "https://acme-it.example/offer?a=1&b=\t2" : "";
    h.user_agent = "Mozilla/5.0\twith a tab\\ and a\nnewline";
    h.at = kSent + std::chrono::minutes(5);
    return h;
  }

  std::int64_t scalar(const std::string& sql) {
    soci::session db("postgresql", db_);
    long long n = 0;
    db << sql, soci::into(n);
    return n;
  }
  void exec(const std::string& sql) {
    soci::session db("postgresql", db_);
    db << sql;
  }
  std::int64_t clicks() { return scalar("SELECT COALESCE(sum(clicks), 0) FROM message_engagement"); }
  std::int64_t opens() { return scalar("SELECT COALESCE(sum(opens), 0) FROM message_engagement"); }
  std::int64_t events() {
    return scalar("SELECT COALESCE(sum(hits), 0) FROM delivery_event WHERE kind IN ('clicked', 'opened')");
  }
  std::size_t files() {
    std::size_t n = 0;
    if (fs::exists(dir_.path() / "hits"))
      for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir_.path() / "hits")) ++n;
    return n;
  }

  // Records `hit` and waits for its answer; the error it got, if any.
  static std::exception_ptr answer(HitJournal& journal, store::Hit h) {
    std::promise<std::exception_ptr> answered;
    auto future = answered.get_future();
    journal.record(std::move(h), [&answered](std::exception_ptr e) { answered.set_value(e); });
    return future.get();
  }

  std::string db_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<store::Engagement> engagement_;
  std::vector<std::int64_t> ids_;
  testing::TempDir dir_;
};

TEST_F(HitJournalTest, HitsAreAnsweredFromTheJournalAndReachTheDatabaseExactlyOnce) {
  HitJournalOptions options;
  options.max_batch = 64;       // several statements
  options.segment_bytes = 4096;  // several segments
  HitJournal journal(dir_.path() / "hits", "host:1", *engagement_, options);
  constexpr int kThreads = 4, kEach = 150;
  std::atomic<int> answered{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        std::promise<void> done;
        journal.record(hit(static_cast<std::size_t>(i % 3), (i + t) % 2 == 0),
                       [&](std::exception_ptr e) {
                         (e ? failed : answered)++;
                         done.set_value();
                       });
        done.get_future().wait();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(answered.load(), kThreads * kEach);
  EXPECT_EQ(failed.load(), 0);

  journal.wait_applied();
  EXPECT_EQ(journal.waiting(), 0u);
  EXPECT_EQ(journal.bypassed(), 0u);
  EXPECT_EQ(clicks() + opens(), kThreads * kEach);
  EXPECT_EQ(clicks(), kThreads * kEach / 2);
  EXPECT_EQ(events(), kThreads * kEach);
  EXPECT_EQ(scalar("SELECT sum(hits) FROM delivery_event WHERE detail = "
                   "'link 1; Mozilla/5.0\twith a tab\\ and a\nnewline'"),
            kThreads * kEach / 2)
      << "the user agent comes back byte for byte";

  journal.stop(milliseconds(0));
  EXPECT_EQ(files(), 0u) << "a clean stop leaves nothing to replay";
  EXPECT_EQ(scalar("SELECT count(*) FROM hit_journal"), 0);
  EXPECT_EQ(replay_dead_hit_journals(dir_.path() / "hits", *engagement_), 0u);
  EXPECT_EQ(clicks() + opens(), kThreads * kEach);
}

// Hits recorded without waiting reach the journal in large batches, so a statement ends inside
// a batch and the next one starts there: each hit must still be recorded exactly once.
TEST_F(HitJournalTest, StatementsSmallerThanTheWrittenBatchesRecordEachHitOnce) {
  HitJournalOptions options;
  options.max_batch = 7;
  HitJournal journal(dir_.path() / "hits", "host:1", *engagement_, options);
  constexpr int kHits = 300;
  std::atomic<int> answered{0};
  for (int i = 0; i < kHits; ++i) {
    journal.record(hit(static_cast<std::size_t>(i % 3), true),
                   [&](std::exception_ptr e) { answered += e ? 0 : 1; });
  }
  journal.wait_applied();
  EXPECT_EQ(answered.load(), kHits);
  EXPECT_EQ(journal.waiting(), 0u);
  EXPECT_EQ(journal.bypassed(), 0u);
  EXPECT_EQ(clicks(), kHits);
  EXPECT_EQ(scalar("SELECT max(applied) FROM hit_journal"), kHits)
      << "the mark names the last line";
  journal.stop(milliseconds(0));
  EXPECT_EQ(replay_dead_hit_journals(dir_.path() / "hits", *engagement_), 0u);
  EXPECT_EQ(clicks(), kHits);
}

TEST_F(HitJournalTest, IdenticalHitsOfABatchAreOneEventRowWithTheirCount) {
  std::vector<store::Hit> hits(10, hit(0, true));
  store::Hit other_agent = hit(0, true);
  other_agent.user_agent = "Mozilla/5.0 (compatible; Barracuda)";
  store::Hit other_second = hit(0, true);
  other_second.at += std::chrono::seconds(1);
  store::Hit other_link = hit(0, true);
  other_link.link_index = 2;
  hits.insert(hits.end(), {other_agent, other_second, other_link, hit(0, false), hit(1, true)});
  engagement_->record_journaled(hits, "j", 15);
  EXPECT_EQ(events(), 15) << "every hit counted";
  EXPECT_EQ(scalar("SELECT count(*) FROM delivery_event WHERE kind IN ('clicked', 'opened')"), 6)
      << "the ten identical clicks are one row; a different agent, second, link, kind or message "
         "is a row of its own";
  EXPECT_EQ(scalar("SELECT max(hits) FROM delivery_event"), 10);
  EXPECT_EQ(clicks(), 14);
  EXPECT_EQ(opens(), 1);
}

TEST_F(HitJournalTest, WhileTheDatabaseRefusesHitsAreStillAnsweredAndTheNextStartRecordsThemOnce) {
  exec("ALTER TABLE hit_journal RENAME TO hit_journal_away");
  {
    HitJournal journal(dir_.path() / "hits", "host:1", *engagement_);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(answer(journal, hit(0, true)), nullptr);
    EXPECT_EQ(journal.waiting(), 5u) << "durable on disk, not in the database";
    journal.stop(milliseconds(0));
  }
  EXPECT_EQ(clicks(), 0);
  EXPECT_EQ(files(), 2u) << "the lock and one segment stay for the next start";

  exec("ALTER TABLE hit_journal_away RENAME TO hit_journal");
  EXPECT_EQ(replay_dead_hit_journals(dir_.path() / "hits", *engagement_), 5u);
  EXPECT_EQ(clicks(), 5);
  EXPECT_EQ(events(), 5);
  EXPECT_EQ(files(), 0u);
  EXPECT_EQ(scalar("SELECT count(*) FROM hit_journal"), 0);
  EXPECT_EQ(replay_dead_hit_journals(dir_.path() / "hits", *engagement_), 0u);
  EXPECT_EQ(clicks(), 5) << "a second replay counts nothing twice";
}

// Each hit answered alone is a write of its own, so the segment's last block is written again
// and again and lines cross block boundaries: whatever was answered must be on disk for the
// next start.
TEST_F(HitJournalTest, HitsWrittenOneByOneAcrossBlocksAreAllOnDiskForTheNextStart) {
  exec("ALTER TABLE hit_journal RENAME TO hit_journal_away");
  constexpr int kHits = 60;  // about 9 KB of lines: three blocks
  {
    HitJournal journal(dir_.path() / "hits", "host:1", *engagement_);
    for (int i = 0; i < kHits; ++i)
      ASSERT_EQ(answer(journal, hit(static_cast<std::size_t>(i % 3), i % 2 == 0)), nullptr);
    EXPECT_EQ(journal.bypassed(), 0u);
    journal.stop(milliseconds(0));
  }
  exec("ALTER TABLE hit_journal_away RENAME TO hit_journal");
  EXPECT_EQ(replay_dead_hit_journals(dir_.path() / "hits", *engagement_), std::size_t{kHits});
  EXPECT_EQ(clicks(), kHits / 2);
  EXPECT_EQ(opens(), kHits / 2);
}

TEST_F(HitJournalTest, AReplaySkipsWhatTheDatabaseAlreadyHasAndATornLastLine) {
  // What a daemon killed after recording lines 1-3 leaves: two segments, the second ending in
  // a torn line.
  const fs::path hits = dir_.path() / "hits";
  fs::create_directories(hits);
  testing::write_file(hits / "host_1-dead.lock", "");
  std::string first, second;
  for (std::uint64_t line = 1; line <= 4; ++line) first += hit_journal_line(line, hit(0, true));
  // A message this database does not have (a state folder copied from another installation):
  // dropped, not a batch that fails at every start.
  store::Hit foreign = hit(0, true);
  foreign.outbox_id = 987654321;
  first += hit_journal_line(5, foreign);
  for (std::uint64_t line = 6; line <= 8; ++line) second += hit_journal_line(line, hit(1, false));
  const std::string torn = hit_journal_line(9, hit(2, true));
  // Cut inside its last field, the user agent: what is left would parse as a whole line.
  second += torn.substr(0, torn.size() - 5);
  testing::write_file(hits / "host_1-dead.0.hits", first);
  testing::write_file(hits / "host_1-dead.1.hits", second);
  exec("INSERT INTO hit_journal (journal, applied) VALUES ('host_1-dead', 3)");
  // Its three recorded clicks, as the applier had written them.
  engagement_->record_journaled({hit(0, true), hit(0, true), hit(0, true)}, "other", 3);
  exec("DELETE FROM hit_journal WHERE journal = 'other'");

  EXPECT_EQ(replay_dead_hit_journals(hits, *engagement_), 5u);
  EXPECT_EQ(scalar("SELECT clicks FROM message_engagement WHERE outbox_id = " +
                   std::to_string(ids_[0])),
            4);
  EXPECT_EQ(scalar("SELECT opens FROM message_engagement WHERE outbox_id = " +
                   std::to_string(ids_[1])),
            3);
  EXPECT_EQ(scalar("SELECT count(*) FROM message_engagement WHERE outbox_id = " +
                   std::to_string(ids_[2])),
            0)
      << "the torn line was never answered";
  EXPECT_EQ(files(), 0u);
  EXPECT_EQ(scalar("SELECT count(*) FROM hit_journal"), 0);
}

TEST_F(HitJournalTest, AJournalWhoseDaemonIsAliveIsLeftAlone) {
  exec("ALTER TABLE hit_journal RENAME TO hit_journal_away");
  HitJournalOptions options;
  options.first_retry = milliseconds(10);
  options.max_retry = milliseconds(50);
  HitJournal journal(dir_.path() / "hits", "host:1", *engagement_, options);
  EXPECT_EQ(answer(journal, hit(0, false)), nullptr);
  EXPECT_EQ(replay_dead_hit_journals(dir_.path() / "hits", *engagement_), 0u);
  EXPECT_TRUE(fs::exists(dir_.path() / "hits" / (journal.name() + ".lock")));
  EXPECT_TRUE(fs::exists(dir_.path() / "hits" / (journal.name() + ".0.hits")));
  exec("ALTER TABLE hit_journal_away RENAME TO hit_journal");
  journal.wait_applied();  // the applier's retry gets through once the table is back
  EXPECT_EQ(opens(), 1);
  journal.stop(milliseconds(0));
  EXPECT_EQ(files(), 0u);
}

}  // namespace
}  // namespace channeld::app
