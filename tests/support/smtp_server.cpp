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
  add("--ehlo-size", options.size_limit > 0 ? std::to_string(options.size_limit) : "");
  add("--tls-cert", options.tls_cert.string());
  add("--tls-key", options.tls_key.string());
  add("--auth", options.auth);
  auto flag = [&args](const char* name, bool on) {
    if (on) args.push_back(name);
  };
  flag("--pipelining", options.pipelining);
  flag("--implicit-tls", options.implicit_tls);
  flag("--auth-over-plain", options.auth_over_plain);
  const PythonPeer peer = spawn_python_peer(std::move(args));
  pid_ = peer.pid;
  stdin_fd_ = peer.stdin_fd;
  if (pid_ < 0) {
    missing_server("SMTP test server (cannot spawn /usr/bin/python3)");
    return;
  }
  port_ = peer.port;
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
  s.pipelined_transactions = json.at("pipelined_transactions").get<int>();
  s.authenticated = json.at("authenticated").get<int>();
  s.tls_sessions = json.at("tls_sessions").get<int>();
  s.last_mail_size = json.at("last_mail_size").get<long long>();
  return s;
}

}  // namespace channeld::testing
