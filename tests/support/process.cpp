#include "support/process.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "support/support.hpp"

namespace channeld::testing {

Process::Process(std::vector<std::string> argv, std::filesystem::path log) : log_(std::move(log)) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    execv(args[0], args.data());
    _exit(127);
  }
  if (pid_ < 0) throw std::runtime_error("fork failed");
}

Process::~Process() {
  if (running()) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
  }
}

void Process::signal(int signo) { kill(pid_, signo); }

bool Process::running() {
  if (status_ != -1) return false;
  int st = 0;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = st;
    return false;
  }
  return r == 0;
}

int Process::wait(std::chrono::seconds limit) {
  bool exited = eventually([this] { return !running(); }, limit);
  if (!exited) {
    ADD_FAILURE() << "process " << pid_ << " still running after " << limit.count() << "s; log:\n"
                  << output();
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
  }
  if (WIFEXITED(status_)) return WEXITSTATUS(status_);
  if (WIFSIGNALED(status_)) return 128 + WTERMSIG(status_);
  return -1;
}

std::string Process::output() const {
  std::ifstream in(log_);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::pair<int, std::string> run_program(std::vector<std::string> argv, std::chrono::seconds limit) {
  TempDir dir;
  Process p(std::move(argv), dir / "out.log");
  int code = p.wait(limit);
  return {code, p.output()};
}

bool eventually(const std::function<bool()>& condition, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  auto pause = std::chrono::milliseconds(5);
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(pause);  // a poll interval, not a synchronisation guess
    pause = std::min(pause * 2, std::chrono::milliseconds(200));
  }
  return true;
}

}  // namespace channeld::testing
