// The store against a real PostgreSQL: every test gets a fresh database with the shipped
// migrations applied, and drives time through the `now` arguments, never the wall clock. The
// tests read rows back with plain SQL where the Store API does not expose a column, so they
// check what is really in the table.
#include "store/store.hpp"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <latch>
#include <mutex>
#include <set>
#include <thread>

#include "store/mdf.hpp"
#include "store/migrations.hpp"
#include "store/session.hpp"
#include "support/support.hpp"

namespace channeld::store {
namespace {

using namespace std::chrono_literals;

const SysTime t0 = SysTime{std::chrono::sys_days{std::chrono::year{2026} / 12 / 1}} + 9h;
constexpr std::chrono::seconds kLease = 60s;

long long epoch(SysTime t) {
  return t.time_since_epoch().count();
}

NewMessage message(const std::string& email, SysTime due = t0,
                   const std::string& partner = "acme-it", const std::string& step = "announce") {
  NewMessage m;
  m.kit_id = "q4-cloud";
  m.kit_version = 1;
  m.step_id = step;
  m.partner_id = partner;
  m.email = email;
  m.contact_json = R"({"email": ")" + email + R"("})";
  m.due_at = due;
  return m;
}

Outcome outcome(std::int64_t id, OutcomeKind kind, std::string detail = "",
                SysTime retry_at = SysTime{}) {
  Outcome o;
  o.id = id;
  o.kind = kind;
  o.detail = std::move(detail);
  o.retry_at = retry_at;
  return o;
}

// The columns of one outbox row that the Store API does not hand back.
struct OutboxRow {
  std::string state;
  int attempts = 0;
  long long due_at = 0;
  std::string last_error;
  std::string lease_owner;
  int reclaimed = 0;
  int events = 0;
};

// One database per test process, migrated once and emptied before each test (when the suite
// runs as one process, the tests share it).
class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // ctest runs each test in a process of its own, in parallel: one database per process.
    static const std::string suite_database = [] {
      std::string conninfo = testing::fresh_database(testing::database_for_this_test("st_"));
      if (!conninfo.empty()) Store(conninfo, 1).migrate();
      return conninfo;
    }();
    conninfo_ = suite_database;
    if (conninfo_.empty()) {
      // The first test already heard why from fresh_database; the others hear it here.
      if (!IsSkipped() && !HasFailure()) testing::missing_server("PostgreSQL (CHANNELD_TEST_PG)");
      return;
    }
    db_.open("postgresql", conninfo_);
    // DELETE, not TRUNCATE: on tables this small it is several times faster.
    db_ << "DELETE FROM message_engagement; DELETE FROM lead;"
           " DELETE FROM delivery_event; DELETE FROM outbox; DELETE FROM suppression;"
           " DELETE FROM expansion; DELETE FROM kit_state";
    store_ = std::make_unique<Store>(conninfo_, 4);
  }

  Store& store() { return *store_; }

  std::vector<ClaimedMessage> claim(const std::string& owner, SysTime now,
                                    std::size_t limit = 100) {
    return store_->claim(owner, limit, now, kLease);
  }

  OutboxRow row(std::int64_t id) {
    OutboxRow r;
    const long long key = id;
    soci::indicator error_ind = soci::i_ok, owner_ind = soci::i_ok;
    db_ << "SELECT state, attempts, CAST(extract(epoch FROM due_at) AS bigint), last_error,"
           " lease_owner, CAST(reclaimed AS integer),"
           " (SELECT count(*) FROM delivery_event e WHERE e.outbox_id = o.id)"
           " FROM outbox o WHERE id = :id",
        soci::use(key), soci::into(r.state), soci::into(r.attempts), soci::into(r.due_at),
        soci::into(r.last_error, error_ind), soci::into(r.lease_owner, owner_ind),
        soci::into(r.reclaimed), soci::into(r.events);
    return r;
  }

  std::string conninfo_;
  std::unique_ptr<Store> store_;
  soci::session db_;
};

// ---- migrations ----

// No server needed: what SOCI is handed for each libpq form of [database] url.
TEST(ConnectString, GivesSociOneTokenItPassesThroughForBothLibpqForms) {
  const auto uri = connect_string("postgresql://channeld:p%40ss%20w@127.0.0.1:5432/channeld");
  EXPECT_EQ(uri.password, "p@ss w");
  EXPECT_EQ(uri.soci.find(' '), std::string::npos);
  EXPECT_NE(uri.soci.find("dbname=channeld"), std::string::npos);
  EXPECT_NE(uri.soci.back(), '=') << "no '=' appended: " << uri.soci;

  const auto kv = connect_string("host=127.0.0.1 dbname=channeld password='a \\'\"\\\\b'");
  EXPECT_EQ(kv.password, "a '\"\\b");
  EXPECT_EQ(kv.soci.find(' '), std::string::npos);
  EXPECT_EQ(kv.soci.find('\''), std::string::npos);
}

TEST(ConnectString, RefusesTextLibpqCannotParseWithoutShowingThePassword) {
  try {
    connect_string("host=127.0.0.1 password='unclosed secret");
    ADD_FAILURE() << "expected a StoreError";
  } catch (const StoreError& e) {
    EXPECT_EQ(std::string(e.what()).find("unclosed secret"), std::string::npos) << e.what();
  }
}

// The bounds on a database that has gone away are added, and never override the url's own.
TEST(ConnectString, AddsBoundsOnADeadDatabaseUnlessTheUrlSetsThem) {
  const auto plain = connect_string("host=db.example dbname=channeld");
  for (const auto& [keyword, value] : kConnectionDefaults) {
    EXPECT_NE(plain.soci.find(std::string(keyword) + "=" + value), std::string::npos)
        << keyword << " in " << plain.soci;
  }

  const auto own = connect_string(
      "postgresql://db.example/channeld?connect_timeout=3&keepalives_idle=60");
  EXPECT_NE(own.soci.find("connect_timeout=3"), std::string::npos) << own.soci;
  EXPECT_EQ(own.soci.find("connect_timeout=10"), std::string::npos) << own.soci;
  EXPECT_NE(own.soci.find("keepalives_idle=60"), std::string::npos) << own.soci;
  EXPECT_EQ(own.soci.find("keepalives_idle=15"), std::string::npos) << own.soci;
  EXPECT_NE(own.soci.find("tcp_user_timeout=20000"), std::string::npos) << own.soci;

  // libpq reads PGCONNECT_TIMEOUT itself, unless the connect string names a value.
  ::setenv("PGCONNECT_TIMEOUT", "7", 1);
  const auto from_environment = connect_string("host=db.example");
  ::unsetenv("PGCONNECT_TIMEOUT");
  EXPECT_EQ(from_environment.soci.find("connect_timeout"), std::string::npos)
      << from_environment.soci;
}

// A host that takes the connection and never answers (a hung server, a half-dead proxy): the
// store gives up at connect_timeout instead of waiting for ever. The url's timeout reaching
// libpq through SOCI's re-reading of the connect string is what is checked; the default's
// value is the same path.
TEST(ConnectString, ASilentServerFailsTheConnectAtItsTimeout) {
  const testing::SilentListener silent;
  const std::string url = "host=127.0.0.1 port=" + std::to_string(silent.port()) +
                          " dbname=channeld user=channeld connect_timeout=1";
  try {
    Store store(url, 1);
    ADD_FAILURE() << "connected to a server that never answered";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("timeout expired"), std::string::npos) << e.what();
  }
}

// The daemon's own connections carry the keepalive and unacknowledged-data bounds, as the
// kernel reports them on the socket libpq opened.
TEST_F(StoreTest, ConnectionsToTheDatabaseCarryTheDeadPeerBounds) {
  store().impl().run("reading the socket's options", [](soci::session& sql) {
    auto* backend = static_cast<soci::postgresql_session_backend*>(sql.get_backend());
    const int fd = PQsocket(backend->conn_);
    ASSERT_GE(fd, 0);
    sockaddr_storage peer{};
    socklen_t peer_length = sizeof peer;
    ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&peer), &peer_length), 0);
    if (peer.ss_family != AF_INET && peer.ss_family != AF_INET6)
      GTEST_SKIP() << "CHANNELD_TEST_PG reaches PostgreSQL through a Unix socket";
    const auto option = [fd](int level, int name) {
      int value = -1;
      socklen_t size = sizeof value;
      EXPECT_EQ(::getsockopt(fd, level, name, &value, &size), 0);
      return value;
    };
    EXPECT_EQ(option(SOL_SOCKET, SO_KEEPALIVE), 1);
    EXPECT_EQ(option(IPPROTO_TCP, TCP_KEEPIDLE), 15);
    EXPECT_EQ(option(IPPROTO_TCP, TCP_KEEPINTVL), 5);
    EXPECT_EQ(option(IPPROTO_TCP, TCP_KEEPCNT), 3);
    EXPECT_EQ(option(IPPROTO_TCP, TCP_USER_TIMEOUT), 20000);
  });
}

TEST_F(StoreTest, MigrateAppliesEveryMigrationOnceAndThenNothing) {
  const std::string other = testing::fresh_database(testing::database_for_this_test("store_"));
  Store fresh(other, 1);
  EXPECT_EQ(fresh.schema_version(), 0);

  const std::vector<int> applied = fresh.migrate();
  ASSERT_FALSE(applied.empty());
  EXPECT_EQ(applied.front(), 1);
  EXPECT_EQ(applied.back(), Store::latest_schema_version());
  EXPECT_TRUE(std::is_sorted(applied.begin(), applied.end()));
  EXPECT_EQ(fresh.schema_version(), Store::latest_schema_version());

  EXPECT_TRUE(fresh.migrate().empty());
  EXPECT_EQ(fresh.schema_version(), Store::latest_schema_version());
}

TEST_F(StoreTest, TwoDaemonsMigratingTogetherApplyTheSchemaOnce) {
  const std::string other = testing::fresh_database(testing::database_for_this_test("store_"));
  Store first(other, 1);
  Store second(other, 1);
  std::vector<int> by_first, by_second;
  std::latch start(2);
  std::thread a([&] {
    start.arrive_and_wait();
    by_first = first.migrate();
  });
  std::thread b([&] {
    start.arrive_and_wait();
    by_second = second.migrate();
  });
  a.join();
  b.join();

  // One of them did all the work; the other found it done.
  EXPECT_TRUE(by_first.empty() != by_second.empty());
  const auto& applied = by_first.empty() ? by_second : by_first;
  // Versions may leave gaps (numbers reserved by work not merged yet): count the shipped files.
  const int shipped = static_cast<int>(migrations().size());
  EXPECT_EQ(static_cast<int>(applied.size()), shipped);
  EXPECT_EQ(applied.back(), Store::latest_schema_version());
  soci::session db("postgresql", other);
  int rows = 0;
  db << "SELECT count(*) FROM schema_migrations", soci::into(rows);
  EXPECT_EQ(rows, shipped);
}

// ---- enqueue ----

TEST_F(StoreTest, EnqueueSkipsMessagesWhoseIdempotencyKeyExists) {
  EXPECT_EQ(store().enqueue({message("a@x.example"), message("a@x.example")}), 1u);
  EXPECT_EQ(store().enqueue({message("a@x.example"), message("b@x.example")}), 1u);

  // A new kit version is the same message: the key has no version in it.
  NewMessage v2 = message("a@x.example");
  v2.kit_version = 2;
  EXPECT_EQ(store().enqueue({v2}), 0u);
  EXPECT_EQ(store().counts_by_state()["queued"], 2);
}

TEST_F(StoreTest, IdempotencyKeyIgnoresTheCaseOfTheEmail) {
  EXPECT_EQ(idempotency_key("q4-cloud", "announce", "acme-it", "Pat@X.Example"),
            "q4-cloud/announce/acme-it/pat@x.example");
  EXPECT_EQ(store().enqueue({message("pat@x.example"), message("Pat@X.Example")}), 1u);
}

TEST_F(StoreTest, EnqueueKeepsQuotesBackslashesCommasBracesAndUnicodeIntact) {
  NewMessage m = message(R"(o"brien,{x}\y@x.example)");
  m.contact_json = R"({"company": "O\"Brien, {Ltd} \\ NULL Ünïcødé ✓"})";
  ASSERT_EQ(store().enqueue({m}), 1u);

  const auto claimed = claim("daemon-a", t0);
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].email, m.email);
  EXPECT_EQ(claimed[0].contact_json, m.contact_json);
  EXPECT_EQ(claimed[0].idempotency_key,
            idempotency_key("q4-cloud", "announce", "acme-it", m.email));
}

TEST_F(StoreTest, EnqueueInsertsTenThousandMessagesInOneBatch) {
  std::vector<NewMessage> batch;
  for (int i = 0; i < 10'000; ++i) batch.push_back(message("c" + std::to_string(i) + "@x.example"));
  EXPECT_EQ(store().enqueue(batch), 10'000u);
  EXPECT_EQ(store().enqueue(batch), 0u);
  EXPECT_EQ(store().counts_by_state()["queued"], 10'000);
}

// A planning pass that queued many messages leaves statistics that make the claim read the due
// index in order and stop after a batch, instead of sorting every due row on each claim.
TEST_F(StoreTest, ALargeExpansionRefreshesTheStatisticsTheClaimIsPlannedFrom) {
  std::vector<NewMessage> batch;
  for (int i = 0; i < 5'000; ++i) batch.push_back(message("c" + std::to_string(i) + "@x.example"));
  ASSERT_EQ(store().enqueue(batch), 5'000u);
  EXPECT_FALSE(store().refresh_outbox_statistics(Store::kStatisticsRefreshRows - 1));
  ASSERT_TRUE(store().refresh_outbox_statistics(5'000));

  double estimate = 0;
  db_ << "SELECT CAST(reltuples AS float8) FROM pg_class WHERE oid = CAST('outbox' AS regclass)",
      soci::into(estimate);
  EXPECT_GT(estimate, 4'000.0);
  // The claim's own selection of due rows, planned as the claim is.
  std::string plan;
  soci::rowset<std::string> lines =
      db_.prepare << "EXPLAIN SELECT id FROM outbox WHERE state = 'queued' AND due_at <= now()"
                     " ORDER BY due_at, id LIMIT 500 FOR UPDATE SKIP LOCKED";
  for (const auto& l : lines) plan += l + "\n";
  EXPECT_NE(plan.find("Index Scan using outbox_due"), std::string::npos) << plan;
  EXPECT_EQ(plan.find("Sort"), std::string::npos) << plan;
}

std::mutex notices_lock;
std::vector<std::string> notices;
void record_notice(std::string_view severity, std::string_view text) {
  const std::lock_guard<std::mutex> lock(notices_lock);
  notices.push_back(std::string(severity) + ": " + std::string(text));
}

// Autovacuum (or another daemon's ANALYZE) holding the table's maintenance lock must not stall
// the planning pass that asks for fresh statistics: the ANALYZE is skipped, not waited for, and
// the server's warning reaches the notice sink (the daemon's log) instead of raw stderr.
TEST_F(StoreTest, RefreshingStatisticsNeverWaitsForAnotherSessionsMaintenanceLock) {
  channeld::store::set_notice_sink(record_notice);
  Store store(conninfo_, 1);  // made after the sink is set, as the daemon's are
  soci::session other("postgresql", conninfo_);
  other << "BEGIN";
  other << "LOCK TABLE outbox IN SHARE UPDATE EXCLUSIVE MODE";
  auto refreshed =
      std::async(std::launch::async, [&] { return store.refresh_outbox_statistics(5'000); });
  // Generous: the call returns at once, or waits as long as the lock is held.
  const bool returned = refreshed.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
  other << "ROLLBACK";  // frees a refresh that waited, so the test ends either way
  EXPECT_TRUE(returned) << "the ANALYZE waited for the lock";
  EXPECT_TRUE(refreshed.get());
  channeld::store::set_notice_sink(nullptr);
  const std::lock_guard<std::mutex> lock(notices_lock);
  EXPECT_NE(std::find(notices.begin(), notices.end(),
                      "WARNING: skipping analyze of \"outbox\" --- lock not available"),
            notices.end())
      << notices.size() << " notices";
}

// ---- claim ----

TEST_F(StoreTest, ClaimTakesOnlyMessagesThatAreDue) {
  store().enqueue({message("now@x.example", t0), message("later@x.example", t0 + 1h)});

  // Leased past the second message's due time, so only that one is due then.
  const auto first = store().claim("daemon-a", 100, t0, 2h);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].email, "now@x.example");
  EXPECT_EQ(first[0].attempts, 1);
  EXPECT_FALSE(first[0].reclaimed);
  EXPECT_TRUE(claim("daemon-a", t0 + 30s).empty());

  const auto second = claim("daemon-a", t0 + 1h);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].email, "later@x.example");
  EXPECT_EQ(row(second[0].id).lease_owner, "daemon-a");
}

TEST_F(StoreTest, ClaimHonoursTheLimitAndNextDueReportsTheRest) {
  EXPECT_EQ(store().next_due(), std::nullopt);
  store().enqueue({message("a@x.example", t0), message("b@x.example", t0 + 5min),
                   message("c@x.example", t0 + 10min)});
  EXPECT_EQ(store().next_due(), t0);

  EXPECT_EQ(claim("daemon-a", t0 + 1h, 2).size(), 2u);
  EXPECT_EQ(store().next_due(), t0 + 10min);
}

TEST_F(StoreTest, ConcurrentClaimsNeverShareAMessageAndMissNone) {
  std::vector<NewMessage> batch;
  for (int i = 0; i < 2'000; ++i) batch.push_back(message("c" + std::to_string(i) + "@x.example"));
  ASSERT_EQ(store().enqueue(batch), 2'000u);

  std::vector<std::int64_t> got_a, got_b;
  std::latch start(2);
  auto drain = [&](const std::string& owner, std::vector<std::int64_t>& got) {
    start.arrive_and_wait();
    for (;;) {
      const auto claimed = store().claim(owner, 50, t0, kLease);
      if (claimed.empty()) return;
      for (const auto& m : claimed) got.push_back(m.id);
    }
  };
  std::thread a(drain, "daemon-a", std::ref(got_a));
  std::thread b(drain, "daemon-b", std::ref(got_b));
  a.join();
  b.join();

  std::set<std::int64_t> all(got_a.begin(), got_a.end());
  all.insert(got_b.begin(), got_b.end());
  EXPECT_EQ(got_a.size() + got_b.size(), 2'000u) << "a row was claimed twice";
  EXPECT_EQ(all.size(), 2'000u);
  EXPECT_EQ(store().counts_by_state()["sending"], 2'000);
}

TEST_F(StoreTest, AnExpiredLeaseIsReclaimedAndFlaggedAndItsOldOwnerIsIgnored) {
  store().enqueue({message("a@x.example")});
  const auto first = claim("daemon-a", t0);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_TRUE(claim("daemon-b", t0 + kLease - 1s).empty()) << "lease still held";

  const auto second = claim("daemon-b", t0 + kLease + 1s);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].id, first[0].id);
  EXPECT_TRUE(second[0].reclaimed);
  EXPECT_EQ(second[0].attempts, 2);

  // daemon-a finishes late: its lease is gone, so its outcome must not count.
  store().record("daemon-a", {outcome(first[0].id, OutcomeKind::failed, "550 late")},
                 t0 + kLease + 2s);
  EXPECT_EQ(row(first[0].id).state, "sending");
  EXPECT_EQ(row(first[0].id).lease_owner, "daemon-b");
  EXPECT_EQ(row(first[0].id).events, 0);

  store().record("daemon-b", {outcome(first[0].id, OutcomeKind::sent, "250 ok")}, t0 + kLease + 3s);
  EXPECT_EQ(row(first[0].id).state, "sent");
  EXPECT_EQ(store().reclaimed_total(), 1);
}

// ---- record ----

TEST_F(StoreTest, RetryReturnsTheMessageToTheQueueAtRetryAt) {
  store().enqueue({message("a@x.example")});
  const auto id = claim("daemon-a", t0).at(0).id;
  store().record("daemon-a", {outcome(id, OutcomeKind::retry, "421 busy", t0 + 10min)}, t0);

  const OutboxRow r = row(id);
  EXPECT_EQ(r.state, "queued");
  EXPECT_EQ(r.due_at, epoch(t0 + 10min));
  EXPECT_EQ(r.last_error, "421 busy");
  EXPECT_EQ(r.lease_owner, "");
  EXPECT_EQ(r.events, 1);

  EXPECT_TRUE(claim("daemon-a", t0 + 9min).empty());
  const auto again = claim("daemon-a", t0 + 10min);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].attempts, 2);
}

TEST_F(StoreTest, DeferredIsNotCountedAsAnAttempt) {
  store().enqueue({message("a@x.example")});
  const auto id = claim("daemon-a", t0).at(0).id;
  store().record("daemon-a", {outcome(id, OutcomeKind::deferred, "outside window", t0 + 12h)}, t0);

  EXPECT_EQ(row(id).state, "queued");
  EXPECT_EQ(row(id).attempts, 0);
  const auto again = claim("daemon-a", t0 + 12h);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].attempts, 1);
}

TEST_F(StoreTest, BouncedSuppressesTheAddressForEveryPartner) {
  store().enqueue(
      {message("gone@x.example", t0, "acme-it"), message("gone@x.example", t0 + 1h, "globex")});
  const auto id = claim("daemon-a", t0).at(0).id;
  store().record("daemon-a", {outcome(id, OutcomeKind::bounced, "550 no such user")}, t0);

  EXPECT_EQ(row(id).state, "bounced");
  EXPECT_TRUE(store().is_suppressed("gone@x.example", "globex"));
  std::string reason;
  db_ << "SELECT reason FROM suppression WHERE email = 'gone@x.example' AND partner_id = ''",
      soci::into(reason);
  EXPECT_EQ(reason, "hard bounce: 550 no such user");

  const auto other_partner = claim("daemon-a", t0 + 1h);
  ASSERT_EQ(other_partner.size(), 1u);
  EXPECT_TRUE(other_partner[0].suppressed);
}

TEST_F(StoreTest, RecordMovesEachMessageToTheStateOfItsOutcome) {
  store().enqueue({message("sent@x.example"), message("failed@x.example"),
                   message("suppressed@x.example"), message("expired@x.example")});
  std::map<std::string, std::int64_t> id_of;
  for (const auto& m : claim("daemon-a", t0)) id_of[m.email] = m.id;
  ASSERT_EQ(id_of.size(), 4u);

  Outcome sent = outcome(id_of["sent@x.example"], OutcomeKind::sent, "250 ok");
  sent.message_id = "<1@mkt.vendor.example>";
  sent.rendered_version = 1;
  store().record("daemon-a",
                 {sent, outcome(id_of["failed@x.example"], OutcomeKind::failed, "554 rejected"),
                  outcome(id_of["suppressed@x.example"], OutcomeKind::suppressed),
                  outcome(id_of["expired@x.example"], OutcomeKind::expired)},
                 t0 + 1s);

  // Every outcome but 'sent' adds an event; the sent row names its sender instead.
  for (const auto& [email, id] : id_of) {
    const std::string kind = email.substr(0, email.find('@'));
    EXPECT_EQ(row(id).state, kind);
    EXPECT_EQ(row(id).lease_owner, "");
    EXPECT_EQ(row(id).events, kind == "sent" ? 0 : 1) << kind;
  }
  std::string sent_by;
  const long long sent_row = id_of["sent@x.example"];
  db_ << "SELECT sent_by FROM outbox WHERE id = :id", soci::use(sent_row), soci::into(sent_by);
  EXPECT_EQ(sent_by, "daemon-a");
  EXPECT_EQ(row(id_of["failed@x.example"]).last_error, "554 rejected");
  std::string message_id;
  long long sent_at = 0;
  const long long sent_id = id_of["sent@x.example"];
  db_ << "SELECT message_id, CAST(extract(epoch FROM sent_at) AS bigint) FROM outbox"
         " WHERE id = :id",
      soci::use(sent_id), soci::into(message_id), soci::into(sent_at);
  EXPECT_EQ(message_id, "<1@mkt.vendor.example>");
  EXPECT_EQ(sent_at, epoch(t0 + 1s));
  EXPECT_TRUE(claim("daemon-a", t0 + 1h).empty()) << "final states are never claimed again";
}

// A dead daemon's journal is replayed later, sometimes much later: the message was sent when
// its verdict says, not when the replay recorded it.
TEST_F(StoreTest, AVerdictWithItsOwnTimeIsRecordedAsSentThen) {
  store().enqueue({message("late@x.example")});
  const long long id = claim("daemon-a", t0).at(0).id;
  Outcome sent = outcome(id, OutcomeKind::sent, "250 ok");
  sent.at = t0 + 5s;
  store().record("daemon-a", {sent}, t0 + 3h);
  long long sent_at = 0;
  db_ << "SELECT CAST(extract(epoch FROM sent_at) AS bigint) FROM outbox WHERE id = :id",
      soci::use(id), soci::into(sent_at);
  EXPECT_EQ(sent_at, epoch(t0 + 5s));
}

TEST_F(StoreTest, ReleaseReturnsLeasedMessagesAsIfNeverClaimed) {
  store().enqueue({message("a@x.example"), message("b@x.example")});
  ASSERT_EQ(claim("daemon-a", t0).size(), 2u);
  EXPECT_EQ(store().release("daemon-b"), 0u);
  EXPECT_EQ(store().release("daemon-a"), 2u);

  const auto again = claim("daemon-b", t0);
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[0].attempts, 1);
  EXPECT_FALSE(again[0].reclaimed);
}

TEST_F(StoreTest, ExpireKitExpiresOnlyQueuedMessagesOfThatKit) {
  NewMessage other_kit = message("a@x.example");
  other_kit.kit_id = "other-kit";
  store().enqueue({message("a@x.example"), message("b@x.example", t0 + 1h), other_kit});
  const auto leased = claim("daemon-a", t0, 1);
  ASSERT_EQ(leased.size(), 1u);

  EXPECT_EQ(store().expire_kit("q4-cloud", t0), 1u);
  const auto counts = store().counts_by_state();
  EXPECT_EQ(counts.at("expired"), 1);
  EXPECT_EQ(counts.at("sending"), 1) << "a message being sent is settled by its dispatcher";
  EXPECT_EQ(counts.at("queued"), 1);
}

// ---- suppression, expansion, kits, results ----

TEST_F(StoreTest, SuppressionAppliesToOnePartnerOrToAll) {
  store().suppress("Pat@X.Example", "acme-it", "unsubscribed");
  EXPECT_TRUE(store().is_suppressed("pat@x.example", "acme-it"));
  EXPECT_FALSE(store().is_suppressed("pat@x.example", "globex"));

  store().suppress("sam@x.example", "", "complaint");
  EXPECT_TRUE(store().is_suppressed("sam@x.example", "acme-it"));
  EXPECT_TRUE(store().is_suppressed("sam@x.example", "globex"));
}

TEST_F(StoreTest, SuppressingAgainNeverChangesTheFirstReason) {
  store().suppress("pat@x.example", "acme-it", "unsubscribed");
  store().suppress("pat@x.example", "acme-it", "imported from list");
  std::string reason;
  int rows = 0;
  db_ << "SELECT min(reason), count(*) FROM suppression", soci::into(reason), soci::into(rows);
  EXPECT_EQ(rows, 1);
  EXPECT_EQ(reason, "unsubscribed");
}

TEST_F(StoreTest, ExpansionIsRememberedPerContactsDigest) {
  EXPECT_FALSE(store().expanded("q4-cloud", "announce", "acme-it", "d1"));
  store().mark_expanded("q4-cloud", "announce", "acme-it", "d1");
  store().mark_expanded("q4-cloud", "announce", "acme-it", "d1");
  EXPECT_TRUE(store().expanded("q4-cloud", "announce", "acme-it", "d1"));
  EXPECT_FALSE(store().expanded("q4-cloud", "announce", "acme-it", "d2"));
  EXPECT_FALSE(store().expanded("q4-cloud", "announce", "globex", "d1"));
}

TEST_F(StoreTest, RecordKitStateReplacesTheKitsPreviousRow) {
  store().record_kit_state({"q4-cloud", 1, "aaa", "live", "", t0});
  store().record_kit_state({"b-kit", 3, "bbb", "refused", "kit.toml:4: bad delay", t0});
  store().record_kit_state(
      {"q4-cloud", 2, "ccc", "refused", "announce.html: unknown {{x}}", t0 + 1h});

  const auto states = store().kit_states();
  ASSERT_EQ(states.size(), 2u);
  EXPECT_EQ(states[0].kit_id, "b-kit");
  EXPECT_EQ(states[1].kit_id, "q4-cloud");
  EXPECT_EQ(states[1].version, 2);
  EXPECT_EQ(states[1].digest, "ccc");
  EXPECT_EQ(states[1].state, "refused");
  EXPECT_EQ(states[1].error, "announce.html: unknown {{x}}");
  EXPECT_EQ(states[1].updated_at, t0 + 1h);
}

TEST_F(StoreTest, DeliveryCountsGroupByKitPartnerAndState) {
  store().enqueue({message("a@x.example", t0, "acme-it"), message("b@x.example", t0, "acme-it"),
                   message("c@x.example", t0 + 1h, "acme-it"),
                   message("a@x.example", t0 + 1h, "globex")});
  const auto sent = claim("daemon-a", t0);
  ASSERT_EQ(sent.size(), 2u);
  store().record("daemon-a",
                 {outcome(sent[0].id, OutcomeKind::sent), outcome(sent[1].id, OutcomeKind::sent)},
                 t0);

  const auto counts = store().delivery_counts();
  ASSERT_EQ(counts.size(), 3u);
  auto expect_count = [](const DeliveryCount& c, const char* partner, const char* state,
                         std::int64_t n) {
    EXPECT_EQ(c.kit_id, "q4-cloud");
    EXPECT_EQ(c.partner_id, partner);
    EXPECT_EQ(c.state, state);
    EXPECT_EQ(c.count, n);
  };
  expect_count(counts[0], "acme-it", "queued", 1);
  expect_count(counts[1], "acme-it", "sent", 2);
  expect_count(counts[2], "globex", "queued", 1);
}

// ---- what MDF reads from engagement ----

TEST_F(StoreTest, MdfCountsEachContactWithAHumanClickOnceAndAttributedLeadsPerCampaign) {
  store().enqueue({message("a@x.example", t0, "acme-it", "announce"),
                   message("a@x.example", t0, "acme-it", "reminder"),
                   message("b@x.example", t0, "acme-it"), message("c@x.example", t0, "acme-it"),
                   message("a@x.example", t0, "globex")});
  const auto sent = claim("daemon-a", t0);
  ASSERT_EQ(sent.size(), 5u);
  std::vector<Outcome> outcomes;
  for (const auto& m : sent) outcomes.push_back(outcome(m.id, OutcomeKind::sent));
  store().record("daemon-a", outcomes, t0);
  std::map<std::string, std::vector<long long>> ids_of;  // "partner email" -> outbox ids
  for (const auto& m : sent) ids_of[m.partner_id + " " + m.email].push_back(m.id);
  auto engaged = [&](long long outbox, const char* partner, int clicks, int human) {
    // Named, not a temporary in the statement: soci::use keeps a reference, and the statement
    // runs when the whole expression ends, after such a temporary is gone (ASan reported it).
    const std::string p = partner;
    db_ << "INSERT INTO message_engagement (outbox_id, kit_id, partner_id, clicks, human_clicks)"
           " VALUES (:id, 'q4-cloud', :partner, :clicks, :human)",
        soci::use(outbox), soci::use(p), soci::use(clicks), soci::use(human);
  };
  // a@ clicked in both acme-it messages: one contact. b@'s click was a link scanner's.
  engaged(ids_of["acme-it a@x.example"].at(0), "acme-it", 2, 2);
  engaged(ids_of["acme-it a@x.example"].at(1), "acme-it", 1, 1);
  engaged(ids_of["acme-it b@x.example"].at(0), "acme-it", 1, 0);
  engaged(ids_of["globex a@x.example"].at(0), "globex", 1, 1);
  auto lead = [&](const char* partner, const char* external, const char* kit, const char* origin) {
    const std::string p = partner, e = external, o = origin;
    soci::indicator kit_ind = kit ? soci::i_ok : soci::i_null;
    const std::string k = kit ? kit : "";
    db_ << "INSERT INTO lead (partner_id, external_id, stage, kit_id, origin, created_at,"
           " updated_at) VALUES (:p, :e, 'lead', :k, :o, now(), now())",
        soci::use(p), soci::use(e), soci::use(k, kit_ind), soci::use(o);
  };
  lead("acme-it", "L1", "q4-cloud", "partner_sourced");
  lead("acme-it", "L2", "q4-cloud", "influenced");
  lead("acme-it", "L3", nullptr, "unattributed");

  auto results = MdfStore(store()).campaign_results();
  const auto& acme = results[{"q4-cloud", "acme-it"}];
  EXPECT_EQ(acme.delivered, 4);
  EXPECT_EQ(acme.unique_clicks, 1);
  EXPECT_EQ(acme.leads, 2);
  const auto& globex = results[{"q4-cloud", "globex"}];
  EXPECT_EQ(globex.delivered, 1);
  EXPECT_EQ(globex.unique_clicks, 1);
  EXPECT_EQ(globex.leads, 0);
}

TEST_F(StoreTest, MdfLeadTotalsSplitTheQuartersLeadsByOriginAndStageInTheFundCurrency) {
  auto lead = [&](const char* external, const char* origin, const char* stage, long long amount,
                  const char* currency, const char* created) {
    const std::string e = external, o = origin, st = stage, c = currency, at = created;
    db_ << "INSERT INTO lead (partner_id, external_id, stage, amount_minor, currency, origin,"
           " created_at, updated_at) VALUES ('acme-it', :e, :st, :amount, :c, :o,"
           " CAST(:at AS timestamptz), CAST(:at AS timestamptz))",
        soci::use(e, "e"), soci::use(st, "st"), soci::use(amount, "amount"), soci::use(c, "c"),
        soci::use(o, "o"), soci::use(at, "at");
  };
  lead("S1", "partner_sourced", "lead", 100000, "EUR", "2026-10-01T00:00:00Z");
  lead("S2", "partner_sourced", "opportunity", 50000, "EUR", "2026-11-15T12:00:00Z");
  lead("S3", "partner_sourced", "won", 70000, "EUR", "2026-12-31T23:59:59Z");
  lead("I1", "influenced", "opportunity", 30000, "EUR", "2026-12-01T00:00:00Z");
  lead("I2", "influenced", "won", 20000, "EUR", "2026-12-02T00:00:00Z");
  lead("U1", "unattributed", "won", 999999, "EUR", "2026-12-03T00:00:00Z");
  lead("X1", "influenced", "won", 888888, "USD", "2026-12-03T00:00:00Z");
  lead("Q3", "partner_sourced", "won", 777777, "EUR", "2026-09-30T23:59:59Z");
  lead("Q1", "partner_sourced", "won", 666666, "EUR", "2027-01-01T00:00:00Z");

  const mdf::LeadTotals totals = MdfStore(store()).lead_totals(mdf::Period{2026, 4}, "EUR");
  EXPECT_EQ(totals.sourced_pipeline, 150000);
  EXPECT_EQ(totals.sourced_won, 70000);
  EXPECT_EQ(totals.influenced_pipeline, 30000);
  EXPECT_EQ(totals.influenced_won, 20000);
  const mdf::LeadTotals none = MdfStore(store()).lead_totals(mdf::Period{2026, 2}, "EUR");
  EXPECT_EQ(
      none.sourced_pipeline + none.sourced_won + none.influenced_pipeline + none.influenced_won, 0);
}

// ---- connections and errors ----

TEST_F(StoreTest, AStoreReconnectsAfterItsConnectionWasKilled) {
  Store single(conninfo_, 1);
  EXPECT_EQ(single.schema_version(), Store::latest_schema_version());
  store_.reset();

  // Waits (up to 5 s) until each backend has really gone.
  db_ << "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
         " WHERE datname = current_database() AND pid <> pg_backend_pid()";

  // The call that finds the connection dead fails; the next one gets a new connection.
  EXPECT_THROW(single.schema_version(), StoreError);
  EXPECT_EQ(single.schema_version(), Store::latest_schema_version());
  EXPECT_TRUE(single.ping());
}

TEST(StoreConnection, ErrorsNeverRepeatThePassword) {
  for (const std::string url :
       {"host=127.0.0.1 port=1 user=channeld password=hunter2-secret dbname=x",
        "postgresql://channeld:hunter2-secret@127.0.0.1:1/x"}) {
    try {
      Store store(url, 1);
      ADD_FAILURE() << "connected to port 1";
    } catch (const StoreError& e) {
      EXPECT_EQ(std::string(e.what()).find("hunter2"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("cannot connect"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace channeld::store
