#include "app/daemon.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <thread>

#include "api/engagement_routes.hpp"
#include "api/http_server.hpp"
#include "app/dispatcher.hpp"
#include "app/planner.hpp"
#include "app/snapshot.hpp"
#include "app/tracking.hpp"
#include "catalog/catalog.hpp"
#include "catalog/watcher.hpp"
#include "deliver/connector.hpp"
#include "metrics/metrics.hpp"
#include "store/engagement.hpp"
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

SysTime system_now() {
  return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
}

std::string default_owner() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::random_device rd;
  return std::string(host) + ":" + std::to_string(getpid()) + ":" + std::to_string(rd() % 100000);
}

void print_summary(store::Store& store, const Config& config) {
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
  if (!config.paths.outbox.empty())
    std::printf("Messages were written to %s/<partner>/ as .eml and .html files.\n",
                config.paths.outbox.c_str());
  else
    std::printf("Messages were sent through %s.\n", config.smtp.url.c_str());
  std::fflush(stdout);
}

// Everything one running daemon owns. Members are declared in the order they must be torn
// down in reverse: the pool joins before the store it uses is destroyed.
class Daemon {
 public:
  Daemon(const DaemonOptions& options, Config config)
      : options_(options),
        store_(config.database_url, 4),
        catalog_strand_(asio::make_strand(pool_)),
        signals_(io_, SIGTERM, SIGINT, SIGHUP),
        scan_timer_(io_),
        idle_timer_(io_),
        watchdog_timer_(io_),
        planner_(store_),
        owner_(options.owner.empty() ? default_owner() : options.owner) {
    auto applied = store_.migrate();
    if (!applied.empty()) spdlog::info("database: applied {} migrations", applied.size());
    std::vector<std::string> problems;
    link_secret_ = store_.link_secret();
    snapshots_.publish(load_snapshot(config, nullptr, system_now(), link_secret_, problems));
    for (const auto& p : problems) spdlog::warn("{}", p);
    announce_kits(nullptr);
    import_suppressions();
    connector_ = make_connector(config);
    dispatcher_ = std::make_unique<Dispatcher>(delivery_io_, pool_, store_, snapshots_,
                                               *connector_, metrics_, system_now, owner_);
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
    watcher_ = std::make_unique<catalog::FolderWatcher>(
        io_, std::vector<std::string>{config.paths.campaigns, config.paths.partners},
        std::chrono::milliseconds(500), [this] { reload(false); });
    wait_for_signal();
    start_watchdog();
    delivery_thread_ = std::thread([this] { delivery_io_.run(); });
    dispatcher_->start();
    plan();
    if (options_.until_idle) watch_for_idle();
    sd_notify(0, "READY=1");
    spdlog::info("channeld {} running as {}: {} kits, {} partners", CHANNELD_VERSION, owner_,
                 snapshot->kits.size(), snapshot->partners.partners.size());
    io_.run();
    delivery_guard_.reset();
    delivery_thread_.join();
    pool_.join();
    if (http_) http_->stop();
    if (options_.until_idle) print_summary(store_, snapshots_.get()->config);
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
    auto ready = [this] {
      try {
        return store_.ping() && store_.schema_version() == store::Store::latest_schema_version();
      } catch (const std::exception&) {
        return false;
      }
    };
    api::Routes routes(ready, metrics_, [this] { return store_.delivery_counts(); });
    routes.set_token_lookup([this](const std::string& hash) -> std::optional<api::StoredToken> {
      auto found = engagement_.token_by_hash(hash);
      if (!found) return std::nullopt;
      return api::StoredToken{found->first, found->second};
    });
    api::EngagementDeps deps;
    deps.store = &engagement_;
    deps.settings = [this] {
      const auto snapshot = snapshots_.get();
      return api::EngagementSettings{snapshot->link_secret,
                                     snapshot->config.leads.attribution_window,
                                     snapshot->config.mdf.currency};
    };
    deps.link = [this](const store::MessageRef& message, const render::ClickTarget& target) {
      return tracked_link(*snapshots_.get(), message, target, system_now());
    };
    deps.partner_name = [this](const std::string& id) {
      const Partner* partner = snapshots_.get()->partner(id);
      if (partner == nullptr) return id;
      return partner->branding.sender_name.empty() ? partner->name
                                                   : partner->branding.sender_name;
    };
    deps.clock = system_now;
    routes.add(api::engagement_routes(std::move(deps)));
    metrics_.describe("messages_total", "Delivery outcomes recorded by this process, by state");
    metrics_.describe("messages_reclaimed_total",
                      "Messages re-sent after another process's lease expired mid-send "
                      "(possible duplicates)");
    metrics_.gauge("outbox_messages", "Outbox rows by state", [this] {
      std::vector<std::pair<std::string, double>> out;
      try {
        for (const auto& [state, n] : store_.counts_by_state())
          out.emplace_back(metrics::label_set({{"state", state}}), static_cast<double>(n));
      } catch (const std::exception&) {
      }
      return out;
    });
    metrics_.gauge("kits", "Kits by state", [this] {
      std::map<std::string, double> by_state;
      for (const auto& [id, entry] : snapshots_.get()->kits) by_state[std::string(to_string(entry.state))] += 1;
      std::vector<std::pair<std::string, double>> out;
      for (const auto& [state, n] : by_state) out.emplace_back(metrics::label_set({{"state", state}}), n);
      return out;
    });
    http_ = std::make_unique<api::HttpServer>(config.http.listen, std::move(routes));
    http_->start();
    spdlog::info("http: listening on port {} ({})", http_->port(), config.http.listen);
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
    scan_timer_.cancel();
    idle_timer_.cancel();
    if (watcher_) watcher_->stop();
    // The dispatcher calls back on the delivery thread once everything it leased is recorded
    // or released; the rest of the shutdown happens here, on the main loop.
    dispatcher_->stop(snapshots_.get()->config.delivery.shutdown_grace, [this] {
      asio::post(io_, [this] {
        signals_.cancel();
        watchdog_timer_.cancel();
        // Let catalog work already queued finish, then let io_.run() return.
        asio::post(catalog_strand_, [this] { asio::post(io_, [this] { io_.stop(); }); });
      });
    });
  }

  void start_watchdog() {
    std::uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0) return;
    watchdog_period_ = std::chrono::microseconds(usec / 4);
    ping_watchdog();
  }
  void ping_watchdog() {
    sd_notify(0, "WATCHDOG=1");
    watchdog_timer_.expires_after(watchdog_period_);
    watchdog_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) ping_watchdog();
    });
  }

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
      announce_kits(previous.get());
      import_suppressions();
      plan_now();
    });
  }

  static void warn_restart_only_changes(const Config& before, const Config& after) {
    if (before.database_url != after.database_url || before.http.listen != after.http.listen ||
        before.smtp.url != after.smtp.url || before.paths.outbox != after.paths.outbox)
      spdlog::warn("database.url, http.listen, smtp.url and paths.outbox take effect at restart");
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

  void import_suppressions() {
    const auto snapshot = snapshots_.get();
    const std::string path = snapshot->config.paths.partners + "/suppressions.csv";
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return;
    std::vector<catalog::Problem> problems;
    try {
      auto rows = catalog::load_suppressions(path, problems);
      for (const auto& row : rows) store_.suppress(row.email, row.partner_id, row.reason);
    } catch (const std::exception& e) {
      spdlog::error("importing {} failed: {}", path, e.what());
    }
    for (const auto& p : problems) spdlog::warn("{}", p.text());
  }

  void plan() { asio::post(catalog_strand_, [this] { plan_now(); }); }

  // Runs on the catalog strand.
  void plan_now() {
    const auto snapshot = snapshots_.get();
    auto next_scan = snapshot->config.delivery.scan_interval;
    try {
      auto result = planner_.run(*snapshot, system_now());
      if (result.enqueued > 0) dispatcher_->poke();
      mark_done_kits(*snapshot, result);
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
      if (!planned_once_ || !dispatcher_->idle()) return watch_for_idle();
      asio::post(pool_, [this] {
        bool idle = false;
        try {
          auto counts = store_.counts_by_state();
          auto next = store_.next_due();
          idle = counts["sending"] == 0 &&
                 (!next || *next > system_now() + options_.idle_horizon);
        } catch (const std::exception& e) {
          spdlog::error("idle check failed: {}", e.what());
        }
        asio::post(io_, [this, idle] {
          if (idle && dispatcher_->idle()) {
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
  store::Store store_;
  store::Engagement engagement_{store_};
  asio::thread_pool pool_{2};
  asio::strand<asio::thread_pool::executor_type> catalog_strand_;
  asio::signal_set signals_;
  asio::steady_timer scan_timer_;
  asio::steady_timer idle_timer_;
  asio::steady_timer watchdog_timer_;
  std::chrono::microseconds watchdog_period_{0};
  SnapshotHolder snapshots_;
  metrics::Registry metrics_;
  Planner planner_;
  std::string owner_;
  std::string link_secret_;  // from the database; used when the config names no secret file
  std::unique_ptr<deliver::EmailConnector> connector_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<catalog::FolderWatcher> watcher_;
  std::unique_ptr<api::HttpServer> http_;
  bool stopping_ = false;
  bool planned_once_ = false;
  std::map<std::string, std::string> done_kits_;  // kit id -> digest marked done (catalog strand)
};

}  // namespace

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
}

int run_daemon(const DaemonOptions& options) {
  Config config = catalog::load_config(options.config_path);
  Daemon daemon(options, std::move(config));
  return daemon.run();
}

}  // namespace channeld::app
