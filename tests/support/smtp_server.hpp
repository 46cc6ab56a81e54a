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
    bool pipelining = false;                 // advertise PIPELINING (RFC 2920) after EHLO
    int size_limit = 0;                      // > 0: advertise SIZE N; 552 5.3.4 above it, at
                                             // MAIL FROM (SIZE=) or after DATA
    // PEM files (make_self_signed_cert() in support/test_tls.hpp): STARTTLS is offered, or,
    // with implicit_tls, TLS from the first byte (connect with smtps_url()).
    std::filesystem::path tls_cert;
    std::filesystem::path tls_key;
    bool implicit_tls = false;
    // "user:password": AUTH (PLAIN or LOGIN) with it is required before MAIL FROM (530
    // otherwise, 535 for a wrong one), offered and accepted only over TLS unless auth_over_plain.
    std::string auth;
    bool auth_over_plain = false;
  };

  struct Stats {
    int connections = 0;           // opened since start
    int max_open_connections = 0;  // the most open at once
    int max_open_transactions = 0; // the most messages between MAIL FROM and the DATA reply
    int accepted = 0;
    int refused = 0;  // MAIL FROM, RCPT TO or end of DATA answered with a refusal
    // MAIL FROM commands whose RCPT TO and DATA had already arrived before the server replied
    // to the MAIL FROM: the client pipelined the transaction (counted whatever the replies).
    int pipelined_transactions = 0;
    int authenticated = 0;          // successful AUTH commands
    int tls_sessions = 0;           // connections that completed STARTTLS or implicit TLS
    long long last_mail_size = -1;  // SIZE= on the last MAIL FROM; -1 when it had none
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
  // For Options::implicit_tls. "localhost", the name in make_self_signed_cert()'s certificate, so
  // a client that verifies the host name can; the server listens on 127.0.0.1 and, where it can
  // have the same port, on ::1.
  std::string smtps_url() const { return "smtps://localhost:" + std::to_string(port_); }
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
