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
  const PythonPeer peer = spawn_python_peer(std::move(args));
  pid_ = peer.pid;
  stdin_fd_ = peer.stdin_fd;
  if (pid_ < 0) {
    missing_server("webhook receiver (cannot spawn /usr/bin/python3)");
    return;
  }
  port_ = peer.port;
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
  // A line without its newline is one the receiver is still writing: it is read next time.
  while (std::getline(in, line) && !in.eof()) {
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
