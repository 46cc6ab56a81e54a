// deliver/connector: how bytes leave channeld. A connector takes a rendered message and calls
// back exactly once with a verdict. Connectors own their sockets and curl handles; what a
// server's answer means is decided by the pure functions in deliver/verdict.hpp.
//
// Threads: send() and the completion callbacks run on the Asio io_context thread the connector
// was built with. Callers on other threads post to that io_context first. A connector is
// destroyed on that thread (a completion callback may destroy it) or after the io_context has
// stopped, and before the io_context itself; destroying it drops the callbacks of transfers
// still running without calling them, so call cancel_all() first to hear about every message.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "deliver/verdict.hpp"

namespace channeld::deliver {

struct OutgoingEmail {
  std::int64_t id = 0;  // outbox row id, echoed in the result
  std::string envelope_from;
  std::string recipient;
  std::string partner_id;  // for the outbox-folder layout
  std::string file_stem;   // for the outbox-folder layout: "<kit>-<step>-<email>"
  std::string mime;        // complete message, CRLF line ends
  std::string html;        // optional: written beside the .eml by the folder connector
  // A send that has not started by then is returned unsent (Verdict::unsent) instead: past it,
  // the row's lease may have ended and another daemon may send it too.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
};

struct SendResult {
  std::int64_t id = 0;
  Verdict verdict = Verdict::sent;
  long server_code = 0;  // SMTP reply code, 0 if none
  std::string detail;    // server reply or curl error text
  std::chrono::microseconds latency{0};
};

class EmailConnector {
 public:
  using Done = std::function<void(SendResult)>;
  virtual ~EmailConnector() = default;
  // Starts sending; `done` is called once, on the io_context thread, never from inside send().
  virtual void send(OutgoingEmail email, Done done) = 0;
  // Messages sent and not yet reported through `done`.
  virtual std::size_t in_flight() const = 0;
  // How many messages it works on at once. Callers keep about this many queued beyond it, no
  // more: a message waiting inside a connector cannot be paced, released or re-checked.
  virtual std::size_t parallelism() const = 0;
  // Aborts every transfer still running; each one's `done` gets Verdict::retry, from inside
  // cancel_all().
  virtual void cancel_all() = 0;
  // Whether OutgoingEmail::html is used. Only the folder connector writes it; others are spared
  // a second copy of every message body while it waits to be sent.
  virtual bool wants_html() const { return false; }
};

struct SmtpSettings {
  std::string url;  // smtp://host:port (STARTTLS when offered) or smtps://host:port
  std::string username;
  std::string password;      // read from smtp.password_file by the caller; never logged
  int max_connections = 16;  // transfers at once; connections are reused between messages
  std::chrono::seconds timeout{60};
  bool require_tls = false;  // smtp:// with a username: refuse to send AUTH in clear
};

// SMTP with max_connections conversations really at once, whatever the relay's latency: each
// connection is a coroutine on `io` (deliver/asio_smtp.cpp), so none waits for another's reply.
// Sends are handed to an idle connection; sends beyond max_connections wait in order, and each
// one's deadline is checked when its transfer starts. Connections are reused between messages;
// with the relay's PIPELINING, MAIL, RCPT and DATA go out in one write. STARTTLS when offered
// (required when a username is set), smtps:// for TLS from the first byte, certificates checked
// against the system's trust store and the URL's host name; AUTH PLAIN or LOGIN. A connection
// the relay dropped while idle, or a 421, is retried once on a fresh one. A send is over within
// `timeout` of its start, answered or not. Why not libcurl: docs/architecture.md. Throws
// std::runtime_error for a URL it cannot use (checked when the configuration loads).
// (In the channeld::smtp_client target, see deliver/CMakeLists.txt.)
std::unique_ptr<EmailConnector> make_smtp_connector(boost::asio::io_context& io,
                                                    SmtpSettings settings);

// SMTP through libcurl's multi-socket API, driven by `io` (no thread per message). At most
// max_connections transfers, each on a connection kept open and reused; sends beyond that wait
// in order. One libcurl limitation makes this serial at the relay's pace: its SMTP "done" phase
// waits for the reply to the final "." by blocking (curl issue #8555, "More non-blocking" in
// curl's TODO), so each message holds the io_context thread until the relay answers. Kept as
// the bench's bare libcurl baseline (bench/bare_curl_smtp.cpp).
std::unique_ptr<EmailConnector> make_curl_multi_smtp_connector(boost::asio::io_context& io,
                                                               SmtpSettings settings);

// Writes each message as <dir>/<partner_id>/<file_stem>.eml (and .html) instead of sending:
// the `paths.outbox` mode, for previews and the quick start. Files are written inside send()
// (blocking the io_context briefly), through a temporary name and a rename; the result is
// posted. A file error is Verdict::retry.
std::unique_ptr<EmailConnector> make_folder_connector(boost::asio::io_context& io, std::string dir);

}  // namespace channeld::deliver
