// SmtpTestServer: a real SMTP server on 127.0.0.1 for integration tests, one per test. It runs
// tests/support/smtp_server.py (aiosmtpd, under /usr/bin/python3) as a child process, which
// keeps every accepted message in a maildir and can be told to refuse or defer mail; see the
// script for what each option does on the wire.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "support/support.hpp"

namespace channeld::testing {

class SmtpTestServer {
 public:
  struct Options {
    int port = 0;                            // 0 = an ephemeral port
    int tempfail_first = 0;                  // 451 to the first N messages, then accept
    std::string reject_rcpt;                 // 550 at RCPT TO for addresses containing this
    std::string reject_sender;               // 550 at MAIL FROM for senders containing this
    std::string reject_data;                 // 554 after DATA for messages containing this
    std::filesystem::path tempfail_file;     // 451 to every message while this file exists
    double data_delay_seconds = 0;           // wait before answering the end of DATA
    int drop_after = 0;                      // drop a connection after N accepted messages
    int reply_421_first = 0;                 // 421 (and close) to the first N MAIL FROM
  };

  struct Stats {
    int connections = 0;           // opened since start
    int max_open_connections = 0;  // the most open at once
    int max_open_transactions = 0; // the most messages between MAIL FROM and the DATA reply
    int accepted = 0;
    int refused = 0;
  };

  // Starts the server and waits until it listens. Without /usr/bin/python3 or aiosmtpd, calls
  // missing_server(), which skips or fails the test, and available() is false: return then.
  explicit SmtpTestServer(Options options);
  SmtpTestServer();
  ~SmtpTestServer();
  SmtpTestServer(const SmtpTestServer&) = delete;
  SmtpTestServer& operator=(const SmtpTestServer&) = delete;

  bool available() const { return port_ != 0; }
  int port() const { return port_; }
  std::string url() const { return "smtp://127.0.0.1:" + std::to_string(port_); }
  std::filesystem::path maildir() const { return dir_ / "maildir"; }
  // Accepted messages, byte for byte as the client sent them (dot-stuffing undone), in order.
  std::vector<std::string> messages() const;
  // Up to date with every reply the server has sent.
  Stats stats() const;

 private:
  TempDir dir_;
  pid_t pid_ = -1;
  int stdin_fd_ = -1;  // closing it tells the server to exit
  int port_ = 0;
};

}  // namespace channeld::testing
