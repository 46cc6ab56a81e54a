#include "support/webhook_receiver.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

extern char** environ;

namespace channeld::testing {
namespace {

constexpr const char* kPython = "/usr/bin/python3";

// A header the request lacked is null in the log.
std::string text(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || !it->is_string() ? std::string() : it->get<std::string>();
}

// The child's first line, "PORT 12345"; 0 if it exited without one.
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

WebhookReceiver::WebhookReceiver(Options options) {
  if (::access(kPython, X_OK) != 0) {
    missing_server("webhook receiver (/usr/bin/python3)");
    return;
  }
  std::string answers;
  for (int a : options.answers) answers += (answers.empty() ? "" : ",") + std::to_string(a);
  std::vector<std::string> args = {
      kPython,     (source_dir() / "tests/support/webhook_receiver.py").string(),
      "--secret",  options.secret,
      "--log",     log().string(),
      "--answers", answers};
  if (!options.location.empty()) args.insert(args.end(), {"--location", options.location});
  if (!options.retry_after.empty()) {
    args.insert(args.end(), {"--retry-after", options.retry_after});
  }
  write_file(log(), "");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  // O_CLOEXEC: only the dup2'd copies reach the child, so its stdin sees end of file as soon as
  // this process closes (or loses, by dying) its end.
  int to_child[2];
  int from_child[2];
  if (::pipe2(to_child, O_CLOEXEC) != 0 || ::pipe2(from_child, O_CLOEXEC) != 0) {
    throw std::runtime_error("webhook receiver: pipe2 failed");
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
    missing_server("webhook receiver (cannot spawn /usr/bin/python3)");
    return;
  }
  port_ = read_port(from_child[0]);
  ::close(from_child[0]);
  if (port_ == 0) missing_server("webhook receiver (tests/support/webhook_receiver.py)");
}

WebhookReceiver::~WebhookReceiver() {
  if (stdin_fd_ >= 0) ::close(stdin_fd_);
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

std::vector<WebhookReceiver::Request> WebhookReceiver::requests() const {
  std::vector<Request> out;
  std::ifstream in(log());
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line);
    Request r;
    r.id = text(j, "id");
    r.timestamp = text(j, "timestamp");
    r.signature = text(j, "signature");
    r.signature_ok = j.at("signature_ok").get<bool>();
    r.why = text(j, "why");
    r.content_type = text(j, "content_type");
    r.body = text(j, "body");
    r.answer = j.at("answer").get<int>();
    r.path = text(j, "path");
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace channeld::testing
