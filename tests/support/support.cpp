#include "support/support.hpp"

#include <soci/soci.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cerrno>
#include <cstdlib>
#include <functional>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

namespace channeld::testing {

std::filesystem::path source_dir() { return CHANNELD_SOURCE_DIR; }
std::filesystem::path channeld_binary() { return CHANNELD_BINARY; }

void missing_server(const std::string& what) {
  const char* require = std::getenv("CHANNELD_REQUIRE_SERVERS");
  if (require != nullptr && std::string(require) == "1") {
    FAIL() << what << " is required (CHANNELD_REQUIRE_SERVERS=1) but not available";
  }
  GTEST_SKIP() << what << " not available; run the suite through scripts/test.sh";
}

std::string fresh_database(const std::string& name) {
  const char* base = std::getenv("CHANNELD_TEST_PG");
  if (base == nullptr || *base == '\0') {
    missing_server("PostgreSQL (CHANNELD_TEST_PG)");
    return "";
  }
  {
    soci::session admin("postgresql", std::string(base));
    admin << "SET client_min_messages = warning";
    admin << "DROP DATABASE IF EXISTS " + name + " WITH (FORCE)";
    admin << "CREATE DATABASE " + name;
  }
  std::string conninfo = base;
  auto pos = conninfo.find("dbname=");
  if (pos != std::string::npos) {
    auto end = conninfo.find(' ', pos);
    conninfo.erase(pos, end == std::string::npos ? std::string::npos : end - pos);
  }
  return conninfo + " dbname=" + name;
}

namespace {

// Reads the child's first line ("PORT 12345"); a blocking read, finished by the line or by the
// child exiting. Returns 0 if there was no such line.
int read_port(int fd) {
  std::string line;
  char c = 0;
  while (line.size() < 64) {
    ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || c == '\n') break;
    line.push_back(c);
  }
  if (!line.starts_with("PORT ")) return 0;
  return std::atoi(line.c_str() + 5);
}

}  // namespace

PythonPeer spawn_python_peer(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  // O_CLOEXEC: only the dup2'd copies reach the child, so its stdin sees end of file as soon as
  // this process closes (or loses, by dying) its end.
  int to_child[2];
  int from_child[2];
  if (::pipe2(to_child, O_CLOEXEC) != 0 || ::pipe2(from_child, O_CLOEXEC) != 0) {
    throw std::runtime_error("test peer " + args.at(1) + ": pipe2 failed");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, to_child[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, from_child[1], STDOUT_FILENO);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(to_child[0]);
  ::close(from_child[1]);
  PythonPeer peer;
  peer.stdin_fd = to_child[1];
  if (rc == 0) {
    peer.pid = pid;
    peer.port = read_port(from_child[0]);
  }
  ::close(from_child[0]);
  return peer;
}

std::string database_for_this_test(const std::string& prefix) {
  std::string name = prefix + ::testing::UnitTest::GetInstance()->current_test_info()->name();
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  // PostgreSQL cuts names at 63 bytes: keep them unique with a hash of the whole name.
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016zx", std::hash<std::string>{}(name));
  return name.substr(0, 40) + "_" + hash;
}

TempDir::TempDir() {
  std::random_device rd;
  std::ostringstream name;
  name << "channeld-test-" << std::hex << rd() << rd();
  path_ = std::filesystem::temp_directory_path() / name.str();
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

SilentListener::SilentListener() {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof a;
  if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), length) != 0 ||
      ::listen(fd_, 16) != 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &length) != 0) {
    ADD_FAILURE() << "cannot listen on 127.0.0.1";
  }
  port_ = ntohs(a.sin_port);
}

SilentListener::~SilentListener() {
  if (fd_ >= 0) ::close(fd_);
}

void write_file(const std::filesystem::path& path, const std::string& content) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace channeld::testing
