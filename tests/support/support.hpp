// Test support: real servers for integration tests, and scratch folders. Integration tests get
// PostgreSQL from CHANNELD_TEST_PG (a libpq conninfo to a cluster scripts/test.sh started);
// when it is unset they skip, unless CHANNELD_REQUIRE_SERVERS=1 (set by scripts/test.sh and CI),
// where a missing server is a failure, so CI can never pass by skipping.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

namespace channeld::testing {

// The repository root (for samples, templates, scripts).
std::filesystem::path source_dir();
// The built channeld binary.
std::filesystem::path channeld_binary();

// A fresh, empty database named `name` on the test cluster (dropped first if it exists), as a
// libpq conninfo. Returns "" and marks the test skipped (or failed, see above) without a cluster.
std::string fresh_database(const std::string& name);
// A database name from the running test's name: unique per test, valid as an identifier. ctest
// runs each test in a process of its own, in parallel, so a fixture that makes a database per
// test needs a name no other test uses.
std::string database_for_this_test(const std::string& prefix);

// A Python test peer (tests/support/*.py) started as `args` (args[0] the interpreter): its stdin
// is a pipe it watches, so it exits when this process closes or loses its end, and its first
// stdout line is "PORT n". pid is -1 when it could not be spawned; port is 0 when it exited
// without saying one. The caller closes stdin_fd and reaps pid.
struct PythonPeer {
  int pid = -1;
  int stdin_fd = -1;
  int port = 0;
};
PythonPeer spawn_python_peer(std::vector<std::string> args);

// Call at the top of a test needing a server it could not find: skips or fails, see above.
void missing_server(const std::string& what);

// A folder under the system temp dir, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& child) const { return path_ / child; }

 private:
  std::filesystem::path path_;
};

// A 127.0.0.1 port that listens and never answers: connections complete in the kernel's
// backlog and then hear nothing (a hung server, a half-dead proxy). Closed on destruction.
class SilentListener {
 public:
  SilentListener();
  ~SilentListener();
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

void write_file(const std::filesystem::path& path, const std::string& content);
std::string read_file(const std::filesystem::path& path);

}  // namespace channeld::testing
