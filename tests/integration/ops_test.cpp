// What an operator relies on, end to end with the real channeld binary and a real PostgreSQL
// cluster: the systemd notify protocol (READY, STOPPING, and watchdog pings that stop when any
// thread that must make progress is wedged) and a /readyz that says why it is not ready, never
// waits for the database, and recovers by itself.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <poll.h>
#include <signal.h>
#include <soci/soci.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <regex>
#include <set>

#include "support/process.hpp"
#include "support/support.hpp"

namespace channeld::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

// A daemon's folder: config writing email to an outbox folder (no SMTP needed), no partners and
// no kits: the threads still run, which is all these tests watch.
class Site {
 public:
  explicit Site(std::string database) : database_(std::move(database)) {
    fs::create_directories(dir_ / "campaigns");
    fs::create_directories(dir_ / "partners");
    fs::create_directories(dir_ / "templates");
    write_file(dir_ / "link.secret", "test-link-secret-0123456789abcdef");
    write_file(dir_ / "channeld.toml", R"([database]
url = ")" + database_ + R"("
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
)");
  }

  std::vector<std::string> channeld() const {
    return {channeld_binary().string(), "--config", (dir_ / "channeld.toml").string()};
  }
  const fs::path& dir() const { return dir_.path(); }
  void sql(const std::string& statement) const {
    soci::session db("postgresql", database_);
    db << statement;
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

// ---- the systemd notify protocol ---------------------------------------------------------

// The socket systemd would listen on: children started while it exists find it through
// NOTIFY_SOCKET, and get WATCHDOG_USEC as systemd would set it.
class NotifySocket {
 public:
  explicit NotifySocket(std::chrono::microseconds watchdog)
      : path_(dir_ / "notify.sock"), fd_(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path_.c_str());
    EXPECT_EQ(::bind(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
    ::setenv("NOTIFY_SOCKET", path_.c_str(), 1);
    ::setenv("WATCHDOG_USEC", std::to_string(watchdog.count()).c_str(), 1);
    ::unsetenv("WATCHDOG_PID");  // unset: the child takes the watchdog as its own
  }
  ~NotifySocket() {
    ::unsetenv("NOTIFY_SOCKET");
    ::unsetenv("WATCHDOG_USEC");
    ::close(fd_);
  }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  struct Message {
    std::string text;
    Clock::time_point at;
  };
  // The next datagram, or nothing if none arrives within `limit`.
  std::optional<Message> next(std::chrono::milliseconds limit) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) <= 0) return std::nullopt;
    char buffer[4096];
    const ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
    if (n < 0) return std::nullopt;
    return Message{std::string(buffer, static_cast<std::size_t>(n)), Clock::now()};
  }
  // Skips other messages until one containing `text` arrives; false if none within `limit`.
  bool wait_for(const std::string& text, std::chrono::seconds limit) {
    const auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
      auto m = next(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
      if (m && m->text.find(text) != std::string::npos) return true;
    }
    return false;
  }

 private:
  TempDir dir_;
  fs::path path_;
  int fd_;
};

// Sets an environment variable for the children of one test.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() { ::unsetenv(name_); }

 private:
  const char* name_;
};

bool fault_hooks_built() {
  if (CHANNELD_FAULT_HOOKS_BUILT) return true;
  missing_server("a channeld built with -DCHANNELD_FAULT_HOOKS=ON (scripts/test.sh builds one)");
  return false;
}

// With a watchdog period of 400 ms the daemon pings every 100 ms. SIGUSR1 makes the fault hook
// wedge `thread` for 3 s: the pings must stop for most of that time, then resume.
void expect_pings_stop_while_wedged(const std::string& thread, const std::string& name) {
  if (!fault_hooks_built()) return;
  auto db = fresh_database(name);
  if (db.empty()) return;
  Site site(db);
  NotifySocket notify(400ms);
  ScopedEnv wedge("CHANNELD_FAULT_WEDGE", thread + ":3");
  Process daemon(site.channeld(), site.dir() / "daemon.log");
  ASSERT_TRUE(notify.wait_for("READY=1", 60s)) << daemon.output();
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(notify.wait_for("WATCHDOG=1", 5s)) << "ping " << i << "\n" << daemon.output();

  daemon.signal(SIGUSR1);
  const auto wedged_at = Clock::now();
  std::optional<Clock::time_point> last_ping;
  Clock::duration longest_gap{0};
  bool resumed = false;
  while (!resumed && Clock::now() - wedged_at < 20s) {
    auto m = notify.next(1000ms);
    if (!m || m->text.find("WATCHDOG=1") == std::string::npos) continue;
    const auto since = m->at - (last_ping ? *last_ping : wedged_at);
    longest_gap = std::max(longest_gap, since);
    resumed = since >= 2s;  // the first ping after a stop of 2 s or more
    last_ping = m->at;
  }
  EXPECT_TRUE(resumed) << "no pause of 2 s or more in the pings, or they never came back; "
                       << "longest gap "
                       << std::chrono::duration_cast<std::chrono::milliseconds>(longest_gap).count()
                       << " ms\n"
                       << daemon.output();
  if (thread != "main") {
    EXPECT_THAT(daemon.output(), HasSubstr("watchdog: not pinging systemd"));
  }

  daemon.signal(SIGTERM);
  EXPECT_TRUE(notify.wait_for("STOPPING=1", 30s)) << daemon.output();
  EXPECT_EQ(daemon.wait(60s), 0) << daemon.output();
}

TEST(Watchdog, SendsReadyThenRegularPingsThenStoppingOnSigterm) {
  auto db = fresh_database("ops_notify");
  if (db.empty()) return;
  Site site(db);
  NotifySocket notify(400ms);
  Process daemon(site.channeld(), site.dir() / "daemon.log");
  ASSERT_TRUE(notify.wait_for("READY=1", 60s)) << daemon.output();
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(notify.wait_for("WATCHDOG=1", 5s)) << "ping " << i << "\n" << daemon.output();
  daemon.signal(SIGTERM);
  EXPECT_TRUE(notify.wait_for("STOPPING=1", 30s)) << daemon.output();
  EXPECT_EQ(daemon.wait(60s), 0) << daemon.output();
}

TEST(Watchdog, PingsStopWhileTheDeliveryThreadIsWedgedAndResumeAfter) {
  expect_pings_stop_while_wedged("delivery", "ops_wedge_delivery");
}

TEST(Watchdog, PingsStopWhileTheDatabasePoolIsWedgedAndResumeAfter) {
  expect_pings_stop_while_wedged("pool", "ops_wedge_pool");
}

TEST(Watchdog, PingsStopWhileTheMainLoopIsWedgedAndResumeAfter) {
  expect_pings_stop_while_wedged("main", "ops_wedge_main");
}

// The pool probe runs on whichever pool thread is free, so one of the two stuck in the database
// (here: the readiness check, waiting on a lock) while the other stays idle is seen only through
// the store's record of how long its calls have held their sessions.
TEST(Watchdog, PingsStopWhileOnePoolThreadIsStuckInTheDatabaseAndResumeAfter) {
  auto db = fresh_database("ops_wedge_one_pool_thread");
  if (db.empty()) return;
  Site site(db);
  NotifySocket notify(400ms);
  Process daemon(site.channeld(), site.dir() / "daemon.log");
  ASSERT_TRUE(notify.wait_for("READY=1", 60s)) << daemon.output();
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(notify.wait_for("WATCHDOG=1", 5s)) << "ping " << i << "\n" << daemon.output();

  soci::session blocker("postgresql", db);
  soci::transaction hold(blocker);
  blocker << "LOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE";
  // Pings come every 100 ms while all is well; the next readiness check (within 2 s) blocks.
  bool stopped = false;
  const auto locked_at = Clock::now();
  while (!stopped && Clock::now() - locked_at < 20s) stopped = !notify.next(1500ms).has_value();
  EXPECT_TRUE(stopped) << "the pings went on while a pool thread was stuck in the database\n"
                       << daemon.output();
  EXPECT_THAT(daemon.output(),
              HasSubstr("not pinging systemd: a database call of delivery or planning"));

  hold.rollback();
  EXPECT_TRUE(notify.wait_for("WATCHDOG=1", 10s)) << daemon.output();
  daemon.signal(SIGTERM);
  EXPECT_TRUE(notify.wait_for("STOPPING=1", 30s)) << daemon.output();
  EXPECT_EQ(daemon.wait(60s), 0) << daemon.output();
}

// ---- readiness -----------------------------------------------------------------------------

struct Answer {
  int status = 0;
  std::string body;
  Clock::duration took{};
};

Answer get(int port, const std::string& path) {
  httplib::Client http("127.0.0.1", port);
  http.set_connection_timeout(5s);
  http.set_read_timeout(5s);
  const auto start = Clock::now();
  auto result = http.Get(path);
  Answer answer;
  answer.took = Clock::now() - start;
  if (result) {
    answer.status = result->status;
    answer.body = result->body;
  }
  return answer;
}

// Polls /readyz until its answer has `status` and contains `text`; every answer must come
// within a second, whatever the database is doing.
bool readyz_becomes(int port, int status, const std::string& text, Answer& last) {
  return eventually(
      [&] {
        last = get(port, "/readyz");
        EXPECT_LT(last.took, 1s) << "/readyz took " << last.took.count() << " ns";
        return last.status == status && last.body.find(text) != std::string::npos;
      },
      60s);
}

TEST(Readiness, ReadyzSaysWhyItIsNotReadyAndRecoversByItself) {
  auto db = fresh_database("ops_readyz");
  if (db.empty()) return;
  Site site(db);
  Process daemon(site.channeld(), site.dir() / "daemon.log");
  ASSERT_TRUE(eventually([&] { return http_port_from_log(daemon.output()) > 0; }))
      << daemon.output();
  const int port = http_port_from_log(daemon.output());
  Answer last;
  ASSERT_TRUE(readyz_becomes(port, 200, "ready", last)) << last.body;

  // The newest migration rolled back (as an older daemon would see it): schema behind.
  site.sql(
      "CREATE TABLE held_migration AS SELECT * FROM schema_migrations "
      "WHERE version = (SELECT max(version) FROM schema_migrations)");
  site.sql("DELETE FROM schema_migrations WHERE version IN (SELECT version FROM held_migration)");
  EXPECT_TRUE(readyz_becomes(port, 503, "schema behind", last)) << last.body;
  site.sql("INSERT INTO schema_migrations SELECT * FROM held_migration");
  EXPECT_TRUE(readyz_becomes(port, 200, "ready", last)) << last.body;

  // The database refuses every connection and drops the daemon's: unreachable.
  const std::string name = "ops_readyz";
  {
    const char* base = std::getenv("CHANNELD_TEST_PG");
    soci::session admin("postgresql", std::string(base));
    admin << "ALTER DATABASE " + name + " ALLOW_CONNECTIONS false";
    admin << "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '" +
                 name + "'";
  }
  EXPECT_TRUE(readyz_becomes(port, 503, "database unreachable", last)) << last.body;
  EXPECT_LT(get(port, "/healthz").took, 1s);
  {
    const char* base = std::getenv("CHANNELD_TEST_PG");
    soci::session admin("postgresql", std::string(base));
    admin << "ALTER DATABASE " + name + " ALLOW_CONNECTIONS true";
  }
  EXPECT_TRUE(readyz_becomes(port, 200, "ready", last)) << last.body;

  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(60s), 0) << daemon.output();
  const std::string log = daemon.output();
  EXPECT_THAT(log, HasSubstr("ready again"));
}

TEST(Readiness, ReadyzAnswersAtOnceWhileTheDatabaseHangs) {
  auto db = fresh_database("ops_readyz_hang");
  if (db.empty()) return;
  Site site(db);
  Process daemon(site.channeld(), site.dir() / "daemon.log");
  ASSERT_TRUE(eventually([&] { return http_port_from_log(daemon.output()) > 0; }))
      << daemon.output();
  const int port = http_port_from_log(daemon.output());
  Answer last;
  ASSERT_TRUE(readyz_becomes(port, 200, "ready", last)) << last.body;

  // A transaction holding an exclusive lock on the table the check reads: the check waits
  // forever (no error, no answer), as it would on a database that stopped answering.
  soci::session blocker("postgresql", db);
  soci::transaction hold(blocker);
  blocker << "LOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE";
  EXPECT_TRUE(readyz_becomes(port, 503, "database not answering", last)) << last.body;
  EXPECT_LT(get(port, "/healthz").took, 1s);
  EXPECT_EQ(get(port, "/metrics").status, 200);
  hold.rollback();
  EXPECT_TRUE(readyz_becomes(port, 200, "ready", last)) << last.body;

  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(60s), 0) << daemon.output();
}

// ---- docs match the code ------------------------------------------------------------------

TEST(Metrics, EveryMetricNamedInTheHttpGuideIsExportedByARunningDaemon) {
  auto db = fresh_database("ops_metrics_doc");
  if (db.empty()) return;
  std::set<std::string> documented;
  const std::string guide = read_file(source_dir() / "docs" / "http.md");
  static const std::regex name_re("channeld_[a-z_]+");
  for (auto it = std::sregex_iterator(guide.begin(), guide.end(), name_re);
       it != std::sregex_iterator(); ++it) {
    std::string name = it->str();
    for (const std::string suffix : {"_bucket", "_sum", "_count"})
      if (name.size() > suffix.size() && name.ends_with(suffix))
        name.resize(name.size() - suffix.size());
    documented.insert(name);
  }
  ASSERT_GE(documented.size(), 5u) << "the guide names fewer metrics than expected";

  Site site(db);
  Process daemon(site.channeld(), site.dir() / "daemon.log");
  ASSERT_TRUE(eventually([&] { return http_port_from_log(daemon.output()) > 0; }))
      << daemon.output();
  const int port = http_port_from_log(daemon.output());
  Answer metrics;
  ASSERT_TRUE(eventually([&] {
    metrics = get(port, "/metrics");
    // The outbox gauge fills after the first readiness check; with no kits the outbox is empty,
    // so wait for the family header rather than a sample.
    return metrics.status == 200;
  }));
  for (const auto& name : documented)
    EXPECT_NE(metrics.body.find("# TYPE " + name + " "), std::string::npos)
        << name << " is named in docs/http.md but not exported:\n"
        << metrics.body;
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(60s), 0) << daemon.output();
}

}  // namespace
}  // namespace channeld::testing
