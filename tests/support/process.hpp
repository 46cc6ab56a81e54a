// A child process for end-to-end tests: the real channeld binary (or any program), with its
// stdout and stderr captured to a file the test can read afterwards.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace channeld::testing {

class Process {
 public:
  // Starts `argv[0]` with `argv`; output goes to `log`.
  Process(std::vector<std::string> argv, std::filesystem::path log);
  ~Process();  // SIGKILLs the child if it is still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int signo);
  // Waits for exit; returns the exit code, or 128 + signal. Fails the test after `limit`.
  int wait(std::chrono::seconds limit = std::chrono::seconds(240));
  bool running();
  std::string output() const;

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  std::filesystem::path log_;
};

// Runs a program to completion and returns (exit code, output).
std::pair<int, std::string> run_program(std::vector<std::string> argv,
                                        std::chrono::seconds limit = std::chrono::seconds(120));

// Polls `condition` until it holds or `limit` passes (then returns false). For waiting on an
// observable state of another process (rows in a database, a file), never for a fixed time.
bool eventually(const std::function<bool()>& condition,
                std::chrono::seconds limit = std::chrono::seconds(120));

}  // namespace channeld::testing
