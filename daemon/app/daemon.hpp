// app/daemon: the running channeld: wires config, catalog, store, planner, dispatcher, kit
// watcher and HTTP server together and owns their threads:
//   - the main thread runs the main io_context: signals, the kit watcher, the watchdog and
//     the planner's timers;
//   - the delivery thread runs a second io_context: the SMTP connector (curl multi) and the
//     dispatcher's state;
//   - a small thread pool runs every database call, file load and render;
//   - the HTTP server runs on its own threads (cpp-httplib).
// Lifecycle: SIGHUP reloads config, partners and kits; SIGTERM/SIGINT stop claiming, drain or
// release in-flight work and exit 0 within the shutdown grace period. Under systemd it sends
// READY=1, STOPPING=1 and WATCHDOG=1 (from a timer on the io_context, so a stuck loop stops
// the pings and systemd restarts us).
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "model/model.hpp"

namespace channeld::app {

struct DaemonOptions {
  std::string config_path;
  // Exit once nothing is due within the idle horizon (quick start, tests, benchmarks), after
  // printing a delivery summary.
  bool until_idle = false;
  std::chrono::seconds idle_horizon{120};
  // Lease owner name; default host:pid:random.
  std::string owner;
};

// Runs until stopped; returns the process exit code. Throws InputError for bad config (exit 2).
int run_daemon(const DaemonOptions& options);

// Logging: journald-friendly (syslog priority prefixes, no timestamps) when stderr is the
// journal, a plain timestamped format otherwise.
void setup_logging();
// A notice or warning of PostgreSQL's, logged at its level (setup_logging routes them here).
void log_database_notice(std::string_view severity, std::string_view text);

}  // namespace channeld::app
