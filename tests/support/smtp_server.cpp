#include "support/smtp_server.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <nlohmann/json.hpp>

extern char** environ;

namespace channeld::testing {

namespace {

constexpr const char* kPython = "/usr/bin/python3";

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

SmtpTestServer::SmtpTestServer(Options options) {
  if (::access(kPython, X_OK) != 0) {
    missing_server("SMTP test server (/usr/bin/python3)");
    return;
  }
  std::filesystem::create_directories(maildir());
  std::vector<std::string> args = {kPython,
                                   (source_dir() / "tests/support/smtp_server.py").string(),
                                   "--maildir", maildir().string(),
                                   "--stats", (dir_ / "stats.json").string()};
  auto add = [&args](const char* flag, const std::string& value) {
    if (value.empty()) return;
    args.push_back(flag);
    args.push_back(value);
  };
  add("--port", options.port > 0 ? std::to_string(options.port) : "");
  add("--tempfail-first", options.tempfail_first > 0 ? std::to_string(options.tempfail_first) : "");
  add("--reject-rcpt", options.reject_rcpt);
  add("--reject-sender", options.reject_sender);
  add("--reject-data", options.reject_data);
  add("--tempfail-file", options.tempfail_file.string());
  add("--data-delay", options.data_delay_seconds > 0 ? std::to_string(options.data_delay_seconds) : "");
  add("--drop-after", options.drop_after > 0 ? std::to_string(options.drop_after) : "");
  add("--reply-421-first",
      options.reply_421_first > 0 ? std::to_string(options.reply_421_first) : "");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  // O_CLOEXEC: only the dup2'd copies reach the child, so its stdin sees end of file as soon as
  // this process closes (or loses, by dying) its end.
  int to_child[2];
  int from_child[2];
  if (::pipe2(to_child, O_CLOEXEC) != 0 || ::pipe2(from_child, O_CLOEXEC) != 0) {
    throw std::runtime_error("smtp test server: pipe2 failed");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, to_child[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, from_child[1], STDOUT_FILENO);
  int rc = ::posix_spawn(&pid_, kPython, &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(to_child[0]);
  ::close(from_child[1]);
  stdin_fd_ = to_child[1];
  if (rc != 0) {
    pid_ = -1;
    ::close(from_child[0]);
    missing_server("SMTP test server (cannot spawn /usr/bin/python3)");
    return;
  }
  port_ = read_port(from_child[0]);
  ::close(from_child[0]);
  if (port_ == 0) {
    // The script exits early without aiosmtpd, saying so on stderr (which the test shows).
    missing_server("SMTP test server (/usr/bin/python3 with aiosmtpd)");
  }
}

SmtpTestServer::SmtpTestServer() : SmtpTestServer(Options{}) {}

SmtpTestServer::~SmtpTestServer() {
  if (stdin_fd_ >= 0) ::close(stdin_fd_);
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

std::vector<std::string> SmtpTestServer::messages() const {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(maildir())) {
    if (entry.path().extension() == ".eml") files.push_back(entry.path());
  }
  // Names are zero-padded sequence numbers: sorting them sorts by arrival.
  std::sort(files.begin(), files.end());
  std::vector<std::string> contents;
  contents.reserve(files.size());
  for (const auto& f : files) contents.push_back(read_file(f));
  return contents;
}

SmtpTestServer::Stats SmtpTestServer::stats() const {
  auto json = nlohmann::json::parse(read_file(dir_ / "stats.json"));
  Stats s;
  s.connections = json.at("connections").get<int>();
  s.max_open_connections = json.at("max_open_connections").get<int>();
  s.max_open_transactions = json.value("max_open_transactions", 0);
  s.accepted = json.at("accepted").get<int>();
  s.refused = json.at("refused").get<int>();
  return s;
}

}  // namespace channeld::testing
