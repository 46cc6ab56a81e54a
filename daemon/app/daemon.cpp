#include "app/daemon.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "api/engagement_routes.hpp"
#include "api/http_server.hpp"
#include "api/mdf_routes.hpp"
#include "api/proof_routes.hpp"
#include "api/public_server.hpp"
#include "api/tracker.hpp"
#include "api/webhook_routes.hpp"
#include "app/claims.hpp"
#include "app/dispatcher.hpp"
#include "app/event_feed.hpp"
#include "app/hit_journal.hpp"
#include "app/journal.hpp"
#include "app/planner.hpp"
#include "app/proofs.hpp"
#include "app/reload.hpp"
#include "app/snapshot.hpp"
#include "app/tracking.hpp"
#include "catalog/catalog.hpp"
#include "catalog/watcher.hpp"
#include "deliver/connector.hpp"
#include "deliver/webhook_connector.hpp"
#include "metrics/log_throttle.hpp"
#include "metrics/metrics.hpp"
#include "store/engagement.hpp"
#include "store/last_good.hpp"
#include "store/partner_events.hpp"
#include "store/proofs.hpp"
#include "store/store.hpp"

namespace channeld::app {

namespace asio = boost::asio;

namespace {

// journald reads "<N>" at the start of a line as the syslog priority.
class SyslogPriorityFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    static constexpr const char* kPriority[] = {"<7>", "<7>", "<6>", "<4>", "<3>", "<2>", "<6>"};
    const char* p = kPriority[static_cast<int>(msg.level)];
    dest.append(p, p + 3);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<SyslogPriorityFlag>();
  }
};

// SIGTERM to exit, at most: delivery.shutdown_grace plus this. The dispatcher gives up on the
// database 3 s after the grace (Dispatcher::stop); the rest is for joining threads.
constexpr std::chrono::milliseconds kExitAfterGrace{4500};

SysTime system_now() {
  return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
}

std::string default_owner() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::random_device rd;
  return std::string(host) + ":" + std::to_string(getpid()) + ":" + std::to_string(rd() % 100000);
}

void print_summary(store::Store& store, const Config& config,
                   const Dispatcher::Throughput& throughput) {
  auto counts = store.delivery_counts();
  std::map<std::string, std::map<std::string, std::map<std::string, std::int64_t>>> by_kit;
  for (const auto& c : counts) by_kit[c.kit_id][c.partner_id][c.state] += c.count;
  std::printf("\nDelivery summary\n");
  if (by_kit.empty()) std::printf("  nothing was due: no messages queued\n");
  for (const auto& [kit, partners] : by_kit) {
    std::printf("  kit %s\n", kit.c_str());
    for (const auto& [partner, states] : partners) {
      std::string line;
      for (const auto& [state, n] : states)
        line += (line.empty() ? "" : ", ") + std::to_string(n) + " " + state;
      std::printf("    %-24s %s\n", partner.c_str(), line.c_str());
    }
  }
  if (throughput.sent >= 2) {
    // From the end of the first send to the end of the last: start-up and planning excluded.
    const double seconds =
        std::chrono::duration<double>(throughput.last - throughput.first).count();
    if (seconds > 0) {
      std::printf(
          "This run sent %zu messages in %.3f s from the first to the last (%.0f a second).\n",
          throughput.sent, seconds, static_cast<double>(throughput.sent - 1) / seconds);
    }
  }
  if (!config.paths.outbox.empty())
    std::printf("Messages were written to %s/<partner>/ as .eml and .html files.\n",
                config.paths.outbox.c_str());
  else
    std::printf("Messages were sent through %s.\n", config.smtp.url.c_str());
  std::fflush(stdout);
}

// What /readyz answers, as the last background check found it. The check runs on the database
// pool; HTTP threads read the result. A check that has not finished for `stale_after` (the
// database hangs, or the pool is wedged) counts as not ready.
class Readiness {
 public:
  using Clock = std::chrono::steady_clock;
  explicit Readiness(Clock::duration stale_after) : stale_after_(stale_after) {}

  // False if a check is still running: at most one at a time, so a hanging database holds one
  // pool thread, not all of them.
  bool begin_check() {
    const std::lock_guard lock(mutex_);
    if (checking_) return false;
    checking_ = true;
    return true;
  }
  void finish_check(Clock::time_point now, std::string reason,
                    std::map<std::string, std::int64_t> outbox_counts) {
    const std::lock_guard lock(mutex_);
    checking_ = false;
    checked_ = true;
    checked_at_ = now;
    reason_ = std::move(reason);
    if (reason_.empty()) outbox_counts_ = std::move(outbox_counts);
  }

  // "" when ready; otherwise why not, as /readyz reports it.
  std::string not_ready_reason(Clock::time_point now) const {
    const std::lock_guard lock(mutex_);
    if (!checked_) return "starting: the database has not been checked yet";
    if (now - checked_at_ > stale_after_)
      return "database not answering: the last readiness check finished " +
             std::to_string(
                 std::chrono::duration_cast<std::chrono::seconds>(now - checked_at_).count()) +
             "s ago" + (reason_.empty() ? "" : " (" + reason_ + ")");
    return reason_;
  }
  // As of the last successful check; empty before the first.
  std::map<std::string, std::int64_t> outbox_counts() const {
    const std::lock_guard lock(mutex_);
    return outbox_counts_;
  }

 private:
  const Clock::duration stale_after_;
  mutable std::mutex mutex_;  // guards everything below
  bool checking_ = false;
  bool checked_ = false;
  Clock::time_point checked_at_{};
  std::string reason_;
  std::map<std::string, std::int64_t> outbox_counts_;
};

// Everything one running daemon owns. Members are declared in the order they must be torn
// down in reverse: the pool joins before the store it uses is destroyed.
class Daemon {
 public:
  Daemon(const DaemonOptions& options, Config config)
      : options_(options),
        store_(config.database_url, 4),
        api_store_(config.database_url, static_cast<std::size_t>(config.database.api_sessions),
                   config.database.api_session_wait),
        catalog_strand_(asio::make_strand(pool_)),
        signals_(io_, SIGTERM, SIGINT, SIGHUP),
        scan_timer_(io_),
        idle_timer_(io_),
        watchdog_timer_(io_),
        readiness_timer_(io_),
        planner_(store_),
        proof_planner_(store_),
        owner_(options.owner.empty() ? default_owner() : options.owner) {
    // A peer that resets its connection while channeld writes (a relay, a webhook endpoint, an
    // API client) must cost that connection an EPIPE, not the process its life. systemd ignores
    // SIGPIPE for its services; a daemon started from a shell would not, and libcurl, told
    // CURLOPT_NOSIGNAL, leaves it to the application.
    std::signal(SIGPIPE, SIG_IGN);
    auto applied = store_.migrate();
    if (!applied.empty()) spdlog::info("database: applied {} migrations", applied.size());
    std::vector<std::string> problems;
    link_secret_ = store_.link_secret();
    const LastGood last_good = load_last_good();
    snapshots_.publish(
        load_snapshot(config, nullptr, system_now(), link_secret_, problems, &last_good));
    for (const auto& p : problems) spdlog::warn("{}", p);
    save_last_good();
    subscribe_feeds();
    announce_kits(nullptr);
    import_suppressions();
    // Our own lock first, then what dead daemons left: recorded before anything is claimed, so
    // a message they sent is never reclaimed and sent again. A database error here stops the
    // start (exit 1, systemd restarts us) with the journals kept.
    journal_ = std::make_unique<Journal>(config.paths.state, owner_);
    const auto replayed = replay_dead_journals(
        config.paths.state,
        [this](const std::string& owner, const std::vector<store::Outcome>& outcomes) {
          store_.record(owner, outcomes, system_now());
        });
    if (replayed > 0)
      spdlog::info("recorded {} delivery outcomes from the journal of a stopped daemon", replayed);
    // Opens and clicks a stopped daemon answered but had not yet written to the database.
    const std::filesystem::path hits_dir = std::filesystem::path(config.paths.state) / "hits";
    const auto replayed_hits = replay_dead_hit_journals(hits_dir, engagement_);
    if (replayed_hits > 0)
      spdlog::info("recorded {} opens and clicks from the journal of a stopped daemon",
                   replayed_hits);
    hits_ = std::make_unique<HitJournal>(hits_dir, owner_, engagement_);
    run_readiness_check();
    connector_ = make_connector(config);
    deliver::WebhookSettings webhook_settings;
    webhook_settings.allow =
        deliver::parse_allow_list(config.webhooks.allow, config.source_file + ": webhooks.allow");
    webhooks_ = deliver::make_webhook_connector(delivery_io_, std::move(webhook_settings));
    dispatcher_ =
        std::make_unique<Dispatcher>(delivery_io_, pool_, store_, snapshots_, *connector_,
                                     webhooks_.get(), metrics_, system_now, owner_, *journal_);
    event_feed_ = std::make_unique<EventFeed>(delivery_io_, pool_, store_, snapshots_, *webhooks_,
                                              metrics_, system_now, owner_);
  }

  ~Daemon() {
    delivery_guard_.reset();
    delivery_io_.stop();
    if (delivery_thread_.joinable()) delivery_thread_.join();
    pool_.join();
  }

  int run() {
    const auto snapshot = snapshots_.get();
    const Config& config = snapshot->config;
    start_http(config);
    // Claim files dropped in paths.claims are taken in by the pass a change triggers, as kits
    // are; a claims folder made after start is still read on every planning pass.
    std::vector<std::string> watched{config.paths.campaigns, config.paths.partners};
    if (std::error_code ec; std::filesystem::is_directory(config.paths.claims, ec))
      watched.push_back(config.paths.claims);
    watcher_ = std::make_unique<catalog::FolderWatcher>(
        io_, std::move(watched), std::chrono::milliseconds(500), [this] { reload(false); });
    wait_for_signal();
    start_watchdog();
    check_readiness();
#ifdef CHANNELD_FAULT_HOOKS
    arm_fault_hook();
#endif
    delivery_thread_ = std::thread([this] { delivery_io_.run(); });
    dispatcher_->start();
    event_feed_->start();
    plan();
    if (options_.until_idle) watch_for_idle();
    sd_notify(0, "READY=1");
    spdlog::info("channeld {} running as {}: {} kits, {} partners", CHANNELD_VERSION, owner_,
                 snapshot->kits.size(), snapshot->partners.partners.size());
    io_.run();
    // The dispatcher has stopped; the SMTP connector keeps its loop alive on purpose.
    delivery_guard_.reset();
    delivery_io_.stop();
    delivery_thread_.join();
    pool_.join();
    stop_http();
    if (options_.until_idle)
      print_summary(store_, snapshots_.get()->config, dispatcher_->throughput());
    spdlog::info("channeld stopped");
    return 0;
  }

 private:
  std::unique_ptr<deliver::EmailConnector> make_connector(const Config& config) {
    if (!config.paths.outbox.empty())
      return deliver::make_folder_connector(delivery_io_, config.paths.outbox);
    deliver::SmtpSettings smtp;
    smtp.url = config.smtp.url;
    smtp.username = config.smtp.username;
    if (!config.smtp.password_file.empty())
      smtp.password = read_secret(config.smtp.password_file, "smtp.password_file");
    smtp.max_connections = config.smtp.max_connections;
    smtp.timeout = config.smtp.timeout;
    smtp.require_tls = !config.smtp.username.empty();
    return deliver::make_smtp_connector(delivery_io_, std::move(smtp));
  }

  void start_http(const Config& config) {
    // Never touches the database: HTTP threads read what the last background check found.
    auto ready = [this] {
      if (const auto snapshot = snapshots_.get(); !snapshot->sending_held().empty())
        throw std::runtime_error(snapshot->sending_held());
      const std::string reason = readiness_.not_ready_reason(std::chrono::steady_clock::now());
      if (!reason.empty()) throw std::runtime_error(reason);
      return true;
    };
    api::Routes routes(ready, metrics_, [this] { return api_store_.delivery_counts(); });
    routes.set_token_lookup([this](const std::string& hash) -> std::optional<api::StoredToken> {
      auto found = engagement_.token_by_hash(hash);
      if (!found) return std::nullopt;
      return api::StoredToken{found->first, found->second};
    });
    api::EngagementDeps deps;
    deps.store = &engagement_;
    deps.record = [this](store::Hit hit, store::HitRecorded done) {
      hits_->record(std::move(hit), std::move(done));
    };
    deps.settings = [this] {
      const auto snapshot = snapshots_.get();
      return api::EngagementSettings{snapshot->link_secret,
                                     snapshot->config.leads.attribution_window,
                                     snapshot->config.mdf.currency};
    };
    deps.link = [this](const store::MessageRef& message, const render::ClickTarget& target) {
      return tracked_link(*snapshots_.get(), message, target);
    };
    deps.partner_name = [this](const std::string& id) {
      const Partner* partner = snapshots_.get()->partner(id);
      if (partner == nullptr) return id;
      return partner->branding.sender_name.empty() ? partner->name : partner->branding.sender_name;
    };
    deps.clock = system_now;
    deps.generation = [this] { return snapshots_.generation(); };
    // The public front's I/O thread must not wait: its cache misses (a database read and a
    // render) run on threads of their own. httplib's workers look up on their own thread.
    api::Tracker::Offload offload;
    if (!config.http.public_listen.empty()) {
      lookups_ = std::make_unique<asio::thread_pool>(kLookupThreads);
      offload = [this](std::function<void()> work) { asio::post(*lookups_, std::move(work)); };
    }
    tracker_ = std::make_shared<api::Tracker>(deps, std::move(offload));
    routes.add(api::engagement_routes(std::move(deps), tracker_));
    api::MdfDeps mdf_deps;
    mdf_deps.store = &api_store_;
    // The report from the current snapshot's config and partner files, as the CLI reads them.
    mdf_deps.report = [this](const mdf::Period& period) {
      const auto snapshot = snapshots_.get();
      return build_report(api_store_, snapshot->config, snapshot->partners, period);
    };
    mdf_deps.clock = system_now;
    routes.add(api::mdf_routes(std::move(mdf_deps)));
    routes.add(api::proof_routes(proof_deps()));
    routes.add(api::webhook_routes(api::WebhookDeps{&api_store_, system_now}));
    metrics_.describe("messages_total", "Delivery outcomes recorded by this process, by state");
    metrics_.describe("messages_reclaimed_total",
                      "Messages re-sent after another process's lease expired mid-send "
                      "(possible duplicates)");
    // Every series exists from the start at 0, so a rate() over a fresh daemon is 0, not absent.
    metrics_.add("messages_reclaimed_total", "", 0);
    metrics_.describe("proof_opt_outs_total", "Partners that opted out of a kit, by how");
    metrics_.describe("messages_cancelled_total",
                      "Queued messages settled as expired because their partner opted out of the "
                      "kit");
    for (const char* via : {"link", "api"})
      metrics_.add("proof_opt_outs_total", metrics::label_set({{"via", via}}), 0);
    metrics_.add("messages_cancelled_total", "", 0);
    for (const char* state :
         {"sent", "retry", "failed", "bounced", "suppressed", "expired", "deferred"})
      metrics_.add("messages_total", metrics::label_set({{"state", state}}), 0);
    metrics_.gauge(
        "outbox_messages",
        "Outbox rows by state, as of the last readiness check (every few seconds)", [this] {
          std::vector<std::pair<std::string, double>> out;
          for (const auto& [state, n] : readiness_.outbox_counts())
            out.emplace_back(metrics::label_set({{"state", state}}), static_cast<double>(n));
          return out;
        });
    metrics_.gauge("hits_waiting",
                   "Opens and clicks answered and durable in the local journal (paths.state/hits) "
                   "that the database does not have yet",
                   [this] {
                     return std::vector<std::pair<std::string, double>>{
                         {"", static_cast<double>(hits_ ? hits_->waiting() : 0)}};
                   });
    metrics_.gauge("sending_held",
                   "1 while no message goes out because the suppression file cannot be read or "
                   "validated (see /readyz for why), else 0",
                   [this] {
                     return std::vector<std::pair<std::string, double>>{
                         {"", snapshots_.get()->sending_held().empty() ? 0.0 : 1.0}};
                   });
    metrics_.gauge("kits", "Kits by state", [this] {
      std::map<std::string, double> by_state;
      for (const auto& [id, entry] : snapshots_.get()->kits)
        by_state[std::string(to_string(entry.state))] += 1;
      std::vector<std::pair<std::string, double>> out;
      for (const auto& [state, n] : by_state)
        out.emplace_back(metrics::label_set({{"state", state}}), n);
      return out;
    });
    http_ = std::make_unique<api::HttpServer>(config.http.listen, std::move(routes));
    http_->start();
    spdlog::info("http: listening on port {} ({})", http_->port(), config.http.listen);
    if (!config.http.public_listen.empty()) start_public_front(config);
  }

  // http.public_listen: clicks, opens and /healthz on the event-driven front, everything else
  // relayed to http_ on the address it listens on (loopback when it listens on every address).
  void start_public_front(const Config& config) {
    api::ListenAddress upstream = api::parse_listen(config.http.listen);
    if (upstream.host == "0.0.0.0" || upstream.host.empty()) upstream.host = "127.0.0.1";
    if (upstream.host == "::") upstream.host = "::1";
    upstream.port = http_->port();
    auto fast = [tracker = tracker_](const api::Request& request, api::Reply reply) {
      if (tracker->serve(request, reply)) return true;
      if (request.path == "/healthz" && (request.method == "GET" || request.method == "HEAD")) {
        reply(api::Response{200, "text/plain; charset=utf-8", "ok", {}});
        return true;
      }
      return false;
    };
    public_ = std::make_unique<api::PublicServer>(config.http.public_listen, upstream,
                                                  api::PublicLimits{}, std::move(fast));
    public_->start();
    spdlog::info("http: public front listening on port {} ({}), relaying to port {}",
                 public_->port(), config.http.public_listen, upstream.port);
  }

  // The public front first (no new request), then the lookups it handed off, then the hits
  // they queued: after this no Reply is still to come from another thread.
  void stop_http() {
    if (public_) public_->stop();
    if (lookups_) lookups_->join();
    if (hits_) hits_->stop(kHitsGrace);
    engagement_.drain();
    if (http_) http_->stop();
  }

  // HTTP threads: /p/ and /v1/proofs/opt-out reach the store directly (as /u/ does).
  api::ProofDeps proof_deps() {
    api::ProofDeps deps;
    deps.link_secret = [this] { return snapshots_.get()->link_secret; };
    deps.names = [this](const std::string& kit_id,
                        const std::string& partner_id) -> std::optional<api::ProofDeps::Names> {
      const auto snapshot = snapshots_.get();
      const Partner* partner = snapshot->partner(partner_id);
      const auto kit = snapshot->kits.find(kit_id);
      if (partner == nullptr || kit == snapshot->kits.end() || !kit->second.live)
        return std::nullopt;
      return api::ProofDeps::Names{kit->second.live->kit.name, partner->branding.sender_name.empty()
                                                                   ? partner->name
                                                                   : partner->branding.sender_name};
    };
    deps.opt_out = [this](const std::string& kit_id, const std::string& partner_id,
                          const std::string& via) {
      auto result = store::Proofs(api_store_).opt_out(kit_id, partner_id, via, system_now());
      if (result.recorded) {
        spdlog::info("partner {} opted out of kit {} ({}): {} queued messages cancelled",
                     partner_id, kit_id, via, result.cancelled);
        metrics_.add("proof_opt_outs_total",
                     metrics::label_set({{"via", via == "link" ? "link" : "api"}}));
      } else if (result.cancelled > 0) {
        spdlog::info("partner {} had opted out of kit {}: {} more queued messages cancelled",
                     partner_id, kit_id, result.cancelled);
      }
      metrics_.add("messages_cancelled_total", "", result.cancelled);
      return result;
    };
    return deps;
  }

  void wait_for_signal() {
    signals_.async_wait([this](boost::system::error_code ec, int signo) {
      if (ec) return;
      if (signo == SIGHUP) {
        spdlog::info("SIGHUP: reloading config, partners and kits");
        reload(true);
        wait_for_signal();
        return;
      }
      spdlog::info("{}: stopping", signo == SIGTERM ? "SIGTERM" : "SIGINT");
      stop();
    });
  }

  void stop() {
    if (stopping_) return;
    stopping_ = true;
    sd_notify(0, "STOPPING=1");
    arm_exit_deadline(snapshots_.get()->config.delivery.shutdown_grace + kExitAfterGrace);
    // Signals, timers and the watcher are done with: without this the main loop would run out
    // of work and return before the dispatcher has recorded and released what it holds.
    stop_work_.emplace(io_.get_executor());
    scan_timer_.cancel();
    idle_timer_.cancel();
    readiness_timer_.cancel();
#ifdef CHANNELD_FAULT_HOOKS
    fault_signals_.cancel();
#endif
    if (watcher_) watcher_->stop();
    // The dispatcher and the event feed call back on the delivery thread once everything they
    // leased is recorded or released; the rest of the shutdown happens here, on the main loop,
    // after both.
    auto both_stopped = [this, remaining = std::make_shared<int>(2)] {
      if (--*remaining > 0) return;
      asio::post(io_, [this] {
        stop_work_.reset();
        signals_.cancel();
        watchdog_timer_.cancel();
        // Let catalog work already queued finish, then let io_.run() return.
        asio::post(catalog_strand_, [this] { asio::post(io_, [this] { io_.stop(); }); });
      });
    };
    event_feed_->stop(both_stopped);
    dispatcher_->stop(snapshots_.get()->config.delivery.shutdown_grace, both_stopped);
  }

  // The last resort of a bounded shutdown: whatever still blocks (a database call that hangs, a
  // relay that never answers the end of DATA) cannot keep the process past `limit`. Verdicts are
  // in the journal by then; a plain thread, since the loops may be the ones blocked.
  static void arm_exit_deadline(std::chrono::milliseconds limit) {
    std::thread([limit] {
      std::this_thread::sleep_for(limit);
      spdlog::error(
          "not stopped {}ms after the signal; exiting now (outcomes not yet recorded "
          "are in the journal)",
          limit.count());
      spdlog::default_logger()->flush();
      std::_Exit(1);
    }).detach();
  }

  void start_watchdog() {
    std::uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0) return;
    watchdog_period_ = std::chrono::microseconds(usec / 4);
    watchdog_tick();
  }

  // Every WATCHDOG_USEC/4 on the main loop (so a stuck main loop stops the pings by itself).
  // Each tick that pings also posts a probe to the delivery loop and the database pool; the next
  // tick pings only if both probes ran. An idle thread runs its probe at once; a wedged one
  // stops the pings within two ticks, and systemd restarts us after four.
  void watchdog_tick() {
    const std::string stall = watchdog_stall();
    if (stall.empty()) {
      if (watchdog_stalled_) spdlog::info("watchdog: every thread is making progress again");
      watchdog_stalled_ = false;
      sd_notify(0, "WATCHDOG=1");
      delivery_probe_ran_ = false;
      pool_probe_ran_ = false;
      asio::post(delivery_io_, [this] { delivery_probe_ran_ = true; });
      asio::post(pool_, [this] { pool_probe_ran_ = true; });
    } else if (!watchdog_stalled_) {
      watchdog_stalled_ = true;
      spdlog::error("watchdog: not pinging systemd: {}", stall);
    }
    watchdog_timer_.expires_after(watchdog_period_);
    watchdog_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec == asio::error::operation_aborted) return;
      if (ec) spdlog::error("watchdog timer failed: {}", ec.message());
      watchdog_tick();
    });
  }

  // Why a tick must not ping, or "" when every thread that must make progress did. The pool
  // probe runs on whichever pool thread is free, so one pool thread stuck inside a database
  // call while the other serves the probe shows only in the store: a call that has held its
  // session for two ticks counts as wedged, in either store (delivery's or the API's).
  std::string watchdog_stall() const {
    const auto ms = [](auto d) {
      return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
    };
    if (!delivery_probe_ran_.load())
      return "the delivery thread has made no progress for " + ms(watchdog_period_) + " ms";
    if (!pool_probe_ran_.load())
      return "the database pool has made no progress for " + ms(watchdog_period_) + " ms";
    const auto bound = 2 * watchdog_period_;
    if (const auto held = store_.longest_call(); held > bound)
      return "a database call of delivery or planning has been running for " + ms(held) + " ms";
    if (const auto held = api_store_.longest_call(); held > bound)
      return "a database call of the HTTP API has been running for " + ms(held) + " ms";
    return "";
  }

  // /readyz and the outbox gauge read this; a check on the pool refreshes it every few seconds,
  // so neither ever waits for the database.
  void check_readiness() {
    readiness_timer_.expires_after(kReadinessInterval);
    readiness_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec == asio::error::operation_aborted || stopping_) return;
      if (readiness_.begin_check()) asio::post(pool_, [this] { run_readiness_check(); });
      check_readiness();
    });
  }

  // On the pool; at most one at a time (begin_check).
  void run_readiness_check() {
    std::string reason;
    std::map<std::string, std::int64_t> counts;
    try {
      const int version = store_.schema_version();
      const int latest = store::Store::latest_schema_version();
      if (version < latest)
        reason = "schema behind: the database is at migration " + std::to_string(version) +
                 ", this binary needs " + std::to_string(latest) + " (run channeld migrate)";
      else if (version > latest)
        reason = "schema ahead: the database is at migration " + std::to_string(version) +
                 ", newer than this binary's " + std::to_string(latest);
      else
        counts = store_.counts_by_state();
    } catch (const std::exception& e) {
      reason = std::string("database unreachable: ") + e.what();
    }
    const auto now = std::chrono::steady_clock::now();
    readiness_.finish_check(now, reason, std::move(counts));
    if (reason.empty()) {
      if (const auto n = readiness_log_.success())
        spdlog::info("ready again: the database answers ({} failed checks before)", n);
    } else if (const auto n = readiness_log_.failure(now)) {
      spdlog::error("not ready ({} failed checks since the last report): {}", n, reason);
    }
  }

#ifdef CHANNELD_FAULT_HOOKS
  // Test builds only (CMake CHANNELD_FAULT_HOOKS): SIGUSR1 blocks the thread named in
  // CHANNELD_FAULT_WEDGE ("main", "delivery" or "pool", then ":SECONDS", default 5), so a test
  // can watch the watchdog pings stop while it is wedged and resume after.
  void arm_fault_hook() {
    fault_signals_.async_wait([this](boost::system::error_code ec, int) {
      if (ec == asio::error::operation_aborted) return;
      const char* spec = std::getenv("CHANNELD_FAULT_WEDGE");
      const std::string what = spec != nullptr ? spec : "";
      const auto colon = what.find(':');
      const std::string thread = what.substr(0, colon);
      const std::chrono::seconds hold{
          colon == std::string::npos ? 5 : std::stoi(what.substr(colon + 1))};
      const auto wedge = [hold] { std::this_thread::sleep_for(hold); };
      spdlog::warn("fault hook: wedging the {} thread for {}s", thread, hold.count());
      if (thread == "main") asio::post(io_, wedge);
      if (thread == "delivery") asio::post(delivery_io_, wedge);
      if (thread == "pool")
        for (int i = 0; i < kPoolThreads; ++i) asio::post(pool_, wedge);
      arm_fault_hook();
    });
  }
#endif

  // Loads config (on SIGHUP), partners and kits on the catalog strand, publishes the new
  // snapshot, then plans.
  void reload(bool reread_config) {
    if (stopping_) return;
    asio::post(catalog_strand_, [this, reread_config] {
      auto previous = snapshots_.get();
      Config config = previous->config;
      if (reread_config) {
        try {
          config = catalog::load_config(options_.config_path);
          warn_restart_only_changes(previous->config, config);
          spdlog::info("config reloaded from {}", options_.config_path);
        } catch (const std::exception& e) {
          spdlog::error("config not reloaded, keeping the running one: {}", e.what());
        }
      }
      std::vector<std::string> problems;
      try {
        snapshots_.publish(
            load_snapshot(config, previous.get(), system_now(), link_secret_, problems));
      } catch (const std::exception& e) {
        spdlog::error("reload failed, keeping the running kits and partners: {}", e.what());
        return;
      }
      for (const auto& p : problems) spdlog::warn("{}", p);
      save_last_good();
      subscribe_feeds();
      announce_kits(previous.get());
      expire_removed_partners(*previous);
      import_suppressions();
      plan_now();
    });
  }

  static void warn_restart_only_changes(const Config& before, const Config& after) {
    std::string keys;
    for (const auto& key : restart_only_changes(before, after))
      keys += (keys.empty() ? "" : ", ") + key;
    if (!keys.empty()) spdlog::warn("changed but not applied until the daemon restarts: {}", keys);
  }

  LastGood load_last_good() {
    LastGood out;
    try {
      store::LastGoodFiles files(store_);
      out.kit_files = files.load(store::LastGoodFiles::Kind::kit);
      for (auto& [id, by_path] : files.load(store::LastGoodFiles::Kind::partner))
        if (auto it = by_path.find(""); it != by_path.end()) out.partner_files[id] = it->second;
    } catch (const std::exception& e) {
      spdlog::error("reading last good kits and partners failed: {}", e.what());
    }
    return out;
  }

  // Runs at start and on the catalog strand: keeps every kit folder and partner file that
  // passed as it is now, for the next start (see LastGood).
  // The partner files' [webhook] events, for the statements that queue feed events.
  void subscribe_feeds() {
    std::map<std::string, std::set<std::string>> feeds;
    for (const auto& [id, partner] : snapshots_.get()->partners.partners)
      if (partner.webhook && !partner.webhook->events.empty()) feeds[id] = partner.webhook->events;
    try {
      store::PartnerEvents(store_).subscribe(feeds);
    } catch (const std::exception& e) {
      // The previous subscriptions stay; the next reload tries again.
      spdlog::error("partner event feeds not updated: {}", e.what());
    }
  }

  void save_last_good() {
    const auto snapshot = snapshots_.get();
    store::LastGoodFiles files(store_);
    for (const auto& [id, entry] : snapshot->kits) {
      if (!entry.folder_valid || saved_[id] == entry.live->kit.digest) continue;
      try {
        files.save(store::LastGoodFiles::Kind::kit, id, entry.live->kit.digest,
                   kit_files(entry.live->kit.folder));
        saved_[id] = entry.live->kit.digest;
      } catch (const std::exception& e) {
        spdlog::error("kit {}: keeping its last good version failed: {}", id, e.what());
      }
    }
    for (const auto& [id, partner] : snapshot->partners.partners) {
      if (snapshot->partners.broken.count(id) != 0) continue;  // carried, not read now
      try {
        std::ifstream in(partner.source_file, std::ios::binary);
        std::ostringstream bytes;
        bytes << in.rdbuf();
        if (!in) continue;
        const std::string text = bytes.str();
        const std::string digest = std::to_string(std::hash<std::string>{}(text));
        if (saved_["partner/" + id] == digest) continue;
        files.save(store::LastGoodFiles::Kind::partner, id, digest, {{"", text}});
        saved_["partner/" + id] = digest;
      } catch (const std::exception& e) {
        spdlog::error("partner {}: keeping its last good version failed: {}", id, e.what());
      }
    }
  }

  // Runs on the catalog strand: records kit states, and expires queued rows of removed kits.
  void announce_kits(const Snapshot* previous) {
    const auto snapshot = snapshots_.get();
    done_kits_.clear();  // states are rewritten below; plan_now() marks done kits again
    try {
      for (const auto& [id, entry] : snapshot->kits) {
        store_.record_kit_state(kit_state_row(id, entry, to_string(entry.state)));
        if (entry.live && (previous == nullptr || previous->live_kit(id) == nullptr ||
                           previous->live_kit(id)->kit.digest != entry.live->kit.digest))
          spdlog::info("kit {} v{} is live", id, entry.live->kit.version);
      }
      if (previous == nullptr) return;
      for (const auto& [id, entry] : previous->kits) {
        if (snapshot->kits.count(id) != 0) continue;
        auto n = store_.expire_kit(id, system_now());
        count_expired(n);
        store::KitStateRow row = kit_state_row(id, entry, "removed");
        row.digest.clear();
        row.error.clear();
        store_.record_kit_state(row);
        spdlog::info("kit {} removed: {} queued messages will not be sent", id, n);
      }
    } catch (const std::exception& e) {
      spdlog::error("recording kit states failed: {}", e.what());
    }
  }

  // Runs on the catalog strand after a reload: a partner whose file was deleted (not broken:
  // that one waits) or who was suspended since the last snapshot has its queued mail expired in
  // one statement. Rows already leased are settled by their dispatcher (decide()), as are those
  // of a partner removed while no daemon ran.
  void expire_removed_partners(const Snapshot& previous) {
    const auto snapshot = snapshots_.get();
    for (const auto& [id, before] : previous.partners.partners) {
      if (!before.active) continue;
      const Partner* now = snapshot->partner(id);
      if (now != nullptr && now->active) continue;
      if (now == nullptr && snapshot->partners.broken.count(id) != 0) continue;
      const std::string why = now == nullptr ? "removed" : "suspended";
      try {
        const auto n = store_.expire_partner(id, "partner " + why, system_now());
        count_expired(n);
        spdlog::info("partner {} {}: {} queued messages will not be sent", id, why, n);
      } catch (const std::exception& e) {
        // Their dispatcher settles them one by one instead when it claims them.
        spdlog::error("partner {} {}: expiring its queued messages failed: {}", id, why, e.what());
      }
    }
  }

  void count_expired(std::size_t n) {
    if (n > 0) metrics_.add("messages_total", metrics::label_set({{"state", "expired"}}), n);
  }

  // The row `channeld kits` shows for a kit entry: the live version if any, else the version
  // found in the folder.
  static store::KitStateRow kit_state_row(const std::string& id, const KitEntry& entry,
                                          std::string_view state) {
    store::KitStateRow row;
    row.kit_id = id;
    row.version = entry.live ? entry.live->kit.version : entry.version_seen;
    row.digest = entry.live ? entry.live->kit.digest : "";
    row.state = std::string(state);
    row.error = entry.error;
    row.updated_at = system_now();
    return row;
  }

  // The snapshot read the file (its bad rows and a refused file are among the problems
  // logged); what was read is added to the store, which never forgets a suppression.
  void import_suppressions() {
    const auto snapshot = snapshots_.get();
    if (!snapshot->sending_held().empty()) spdlog::error("{}", snapshot->sending_held());
    try {
      for (const auto& row : snapshot->suppressions)
        store_.suppress(row.email, row.partner_id, row.reason);
    } catch (const std::exception& e) {
      spdlog::error("importing suppressions failed: {}", e.what());
    }
  }

  void plan() {
    asio::post(catalog_strand_, [this] { plan_now(); });
  }

  // Runs on the catalog strand.
  void plan_now() {
    const auto snapshot = snapshots_.get();
    auto next_scan = snapshot->config.delivery.scan_interval;
    try {
      auto result = planner_.run(*snapshot, system_now());
      if (store_.refresh_outbox_statistics(result.enqueued)) {
        spdlog::debug("outbox statistics refreshed after {} messages were queued", result.enqueued);
      }
      const auto proofs = proof_planner_.run(*snapshot, system_now());
      if (result.enqueued > 0 || proofs.enqueued > 0) dispatcher_->poke();
      if (proofs.next_due && (!result.next_due || *proofs.next_due < *result.next_due))
        result.next_due = proofs.next_due;
      mark_done_kits(*snapshot, result);
      settle_claims(*snapshot);
      if (result.next_due) {
        auto until = *result.next_due - system_now() + std::chrono::seconds(1);
        if (until < next_scan) next_scan = std::chrono::duration_cast<std::chrono::seconds>(until);
      }
    } catch (const std::exception& e) {
      spdlog::error("planning due steps failed: {}", e.what());
    }
    asio::post(io_, [this, next_scan] {
      planned_once_ = true;
      if (stopping_) return;
      scan_timer_.expires_after(next_scan);
      scan_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) plan();
      });
    });
  }

  // Runs on the catalog strand, after each plan: new claim files in, then every claim decided
  // again, so late results or a supplied invoice supersede a decision within a scan interval.
  void settle_claims(const Snapshot& snapshot) {
    try {
      const auto intake = take_in_claims(store_, snapshot.config.paths.claims, system_now());
      for (const auto& p : intake.problems) spdlog::warn("claims: {}", p);
      if (intake.files > 0) {
        spdlog::info("claims: {} files, {} claims added, {} refused", intake.files, intake.added,
                     intake.refused);
      }
      if (auto added = reconcile_claims(store_, snapshot, system_now()); added > 0) {
        spdlog::info("claims: {} new decisions recorded", added);
      }
    } catch (const std::exception& e) {
      spdlog::error("reconciling claims failed: {}", e.what());
    }
  }

  // Runs on the catalog strand. A live kit is done once every step is due for every partner
  // and none of its messages is queued or leased.
  void mark_done_kits(const Snapshot& snapshot, const Planner::Result& planned) {
    for (const auto& [id, entry] : snapshot.kits) {
      if (entry.state != KitState::live || planned.kits_with_steps_ahead.count(id) != 0) continue;
      const std::string& digest = entry.live->kit.digest;
      if (done_kits_[id] == digest || store_.kit_has_unfinished(id)) continue;
      done_kits_[id] = digest;
      const store::KitStateRow row = kit_state_row(id, entry, to_string(KitState::done));
      store_.record_kit_state(row);
      spdlog::info("kit {} v{} is done: every message was sent or settled", id, row.version);
    }
  }

  // --until-idle: stop once the first plan ran, the dispatcher holds nothing, and the store
  // has nothing leased nor due within the idle horizon.
  void watch_for_idle() {
    idle_timer_.expires_after(std::chrono::milliseconds(200));
    idle_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec || stopping_) return;
      if (!planned_once_ || !dispatcher_->idle() || !event_feed_->idle()) return watch_for_idle();
      asio::post(pool_, [this] {
        bool idle = false;
        try {
          auto counts = store_.counts_by_state();
          auto next = store_.next_due();
          auto next_event = store::PartnerEvents(store_).next_due();
          if (next_event && (!next || *next_event < *next)) next = next_event;
          idle = counts["sending"] == 0 && (!next || *next > system_now() + options_.idle_horizon);
        } catch (const std::exception& e) {
          spdlog::error("idle check failed: {}", e.what());
        }
        asio::post(io_, [this, idle] {
          if (idle && dispatcher_->idle() && event_feed_->idle()) {
            spdlog::info("nothing due within {}s: stopping (--until-idle)",
                         options_.idle_horizon.count());
            stop();
          } else {
            watch_for_idle();
          }
        });
      });
    });
  }

  DaemonOptions options_;
  asio::io_context io_;
  // The connector and dispatcher get their own loop and thread: libcurl 7.88 waits for the
  // reply to the end of DATA inside curl_multi_socket_action (curl/curl#8555), so a slow relay
  // stalls that loop; signals, the kit watcher and the watchdog must keep turning meanwhile.
  asio::io_context delivery_io_;
  asio::executor_work_guard<asio::io_context::executor_type> delivery_guard_{
      delivery_io_.get_executor()};
  std::thread delivery_thread_;
  // Delivery, planning and the readiness check use store_; HTTP requests use api_store_, whose
  // sessions are separate and whose wait for one is bounded (database.api_sessions and
  // api_session_wait), so a burst of API calls cannot hold up delivery's database access.
  store::Store store_;
  store::Store api_store_;
  store::Engagement engagement_{api_store_};
  static constexpr int kPoolThreads = 2;
  asio::thread_pool pool_{kPoolThreads};
  asio::strand<asio::thread_pool::executor_type> catalog_strand_;
  asio::signal_set signals_;
  asio::steady_timer scan_timer_;
  asio::steady_timer idle_timer_;
  asio::steady_timer watchdog_timer_;
  std::chrono::microseconds watchdog_period_{0};
  std::atomic<bool> delivery_probe_ran_{true};
  std::atomic<bool> pool_probe_ran_{true};
  bool watchdog_stalled_ = false;  // main loop
  static constexpr std::chrono::seconds kReadinessInterval{2};
  asio::steady_timer readiness_timer_;
  Readiness readiness_{3 * kReadinessInterval};
  metrics::LogThrottle readiness_log_{std::chrono::minutes{1}};  // pool, one check at a time
#ifdef CHANNELD_FAULT_HOOKS
  asio::signal_set fault_signals_{io_, SIGUSR1};
#endif
  SnapshotHolder snapshots_;
  metrics::Registry metrics_;
  Planner planner_;
  ProofPlanner proof_planner_;  // catalog strand
  std::string owner_;
  std::string link_secret_;  // from the database; used when the config names no secret file
  std::unique_ptr<Journal> journal_;
  // Opens and clicks, durable on disk before they are answered (engagement_ must outlive it).
  std::unique_ptr<HitJournal> hits_;
  // At shutdown, after delivery's grace: what the database has not taken by then is replayed
  // at the next start (kept within kExitAfterGrace).
  static constexpr std::chrono::milliseconds kHitsGrace{1000};
  std::unique_ptr<deliver::EmailConnector> connector_;
  std::unique_ptr<deliver::WebhookConnector> webhooks_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<EventFeed> event_feed_;
  std::unique_ptr<catalog::FolderWatcher> watcher_;
  std::shared_ptr<api::Tracker> tracker_;  // clicks and opens, shared by the HTTP servers
  static constexpr int kLookupThreads = 2;
  std::unique_ptr<asio::thread_pool> lookups_;  // the public front's cache misses
  std::unique_ptr<api::HttpServer> http_;
  std::unique_ptr<api::PublicServer> public_;
  bool stopping_ = false;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> stop_work_;
  bool planned_once_ = false;
  std::map<std::string, std::string> done_kits_;  // kit id -> digest marked done (catalog strand)
  // What save_last_good() last wrote: kit id or "partner/<id>" -> digest (catalog strand).
  std::map<std::string, std::string> saved_;
};

}  // namespace

void log_database_notice(std::string_view severity, std::string_view text) {
  const auto level = severity == "WARNING"                        ? spdlog::level::warn
                     : severity == "NOTICE" || severity == "INFO" ? spdlog::level::info
                                                                  : spdlog::level::debug;
  spdlog::log(level, "PostgreSQL {}: {}", severity, text);
}

void setup_logging() {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("channeld", sink);
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  if (std::getenv("JOURNAL_STREAM") != nullptr) {
    formatter->add_flag<SyslogPriorityFlag>('*').set_pattern("%*%v");
  } else {
    formatter->set_pattern("%Y-%m-%d %H:%M:%S.%e %l %v");
  }
  logger->set_formatter(std::move(formatter));
  if (const char* level = std::getenv("CHANNELD_LOG_LEVEL"))
    logger->set_level(spdlog::level::from_str(level));
  spdlog::set_default_logger(logger);
  // PostgreSQL's notices into the same log, at their own level (libpq would print them raw).
  store::set_notice_sink(log_database_notice);
}

int run_daemon(const DaemonOptions& options) {
  Config config = catalog::load_config(options.config_path);
  Daemon daemon(options, std::move(config));
  return daemon.run();
}

}  // namespace channeld::app
