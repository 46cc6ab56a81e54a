// make_smtp_connector: SMTP on Boost.Asio, every connection on the caller's io_context.
//
// Why not libcurl, which served until now: libcurl 7.88 waits for the reply to the end of DATA
// inside curl_multi_socket_action (curl/curl#8555), so parallel conversations needed a thread
// per connection, and each of those threads woke for every reply, four or more per message.
// Here a connection is a coroutine on one event loop: N conversations really run at once
// whatever the relay's latency, several replies are collected per wakeup, and with PIPELINING
// (RFC 2920) MAIL, RCPT and DATA share one round trip. docs/architecture.md has the numbers.
//
// Each connection (Session) carries one message at a time and is reused for the next; a message
// is handed to an idle session by the connector, whose state (slots, waiting sends, callbacks)
// lives on the io_context's thread like any connector's. A session's coroutine keeps it alive
// (shared_ptr) while it runs, so destroying the connector only closes sockets: the coroutines
// then end on their own without touching it (`alive`).
//
// Timeouts: a send must be over within smtp.timeout of its start (the dispatcher's lease is
// sized on that). One sweep timer checks the busy sessions' deadlines every 100 ms and closes
// the socket of any that is past, which ends its pending read or write; a timer per reply
// would re-arm the reactor's timerfd several times per message.

#include <openssl/ssl.h>
#include <unistd.h>

#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without including it

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"  // see webhook_connector.cpp
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#pragma GCC diagnostic pop

#include <algorithm>
#include <array>
#include <deque>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "deliver/connector.hpp"
#include "deliver/smtp_protocol.hpp"
#include "render/mime.hpp"

namespace channeld::deliver {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;
using smtp::Stage;

// A relay that has not accepted the connection by then is down; failing fast hands the message
// back to the dispatcher's retry backoff instead of holding a connection.
constexpr std::chrono::seconds kConnectTimeout{10};
constexpr std::chrono::milliseconds kSweepPeriod{100};
// No SMTP reply is longer; a peer that sends more without a line end is not an SMTP server.
constexpr std::size_t kMaxReplyBytes = 64 * 1024;

// What every session of one connector shares. Sessions hold it by shared_ptr, so a coroutine
// that outlives the connector still has its TLS context.
struct Shared {
  smtp::Endpoint endpoint;
  std::string helo_domain;
  std::string username;
  std::string password;  // never logged
  std::chrono::seconds timeout{60};
  bool require_tls = false;
  asio::ssl::context tls{asio::ssl::context::tls_client};

  ~Shared() { std::fill(password.begin(), password.end(), '\0'); }
};

// How one attempt at a message ended.
struct Outcome {
  Verdict verdict = Verdict::retry;
  Stage stage = Stage::connect;
  int code = 0;                    // the deciding reply's code, 0 if none came
  std::string detail;              // the reply line, or what went wrong on the connection
  bool connection_failed = false;  // no reply: reset, closed, timed out, protocol error
};

// An outcome decided here, with no reply to quote: a relay that lacks what the message or the
// configuration needs.
Outcome unable(Stage stage, Verdict verdict, std::string detail) {
  Outcome o;
  o.stage = stage;
  o.verdict = verdict;
  o.detail = std::move(detail);
  return o;
}

Outcome refused(Stage stage, const smtp::Reply& reply) {
  Outcome o;
  o.stage = stage;
  o.code = reply.code;
  o.verdict = smtp::verdict_for(stage, reply.code);
  o.detail = std::string(smtp::to_string(stage)) + " refused: " + reply.last_line;
  return o;
}

class Session {
 public:
  Session(asio::io_context& io, std::shared_ptr<Shared> shared)
      : shared_(std::move(shared)), socket_(io), resolver_(io) {}

  // One message, with one more try on a fresh connection when a reused one turns out to be
  // closed, or the relay says 421 (closing): neither says anything about the message.
  asio::awaitable<SendResult> deliver(const OutgoingEmail& email) {
    const auto started = SteadyClock::now();
    deadline_ = started + shared_->timeout;
    aborted_ = false;
    const bool reused = open_;
    Outcome outcome = co_await attempt(email);
    // Not after abort(): the message has been reported as not sent, and may be claimed again.
    if (outcome.verdict != Verdict::sent && !aborted_ &&
        (outcome.code == 421 || (reused && outcome.connection_failed && !timed_out_))) {
      close();
      if (SteadyClock::now() > email.deadline) {
        outcome.verdict = Verdict::unsent;
        outcome.detail = "not started again: its deadline passed (" + outcome.detail + ")";
      } else {
        outcome = co_await attempt(email);
      }
    }
    deadline_ = SteadyClock::time_point::max();

    SendResult result;
    result.id = email.id;
    result.verdict = outcome.verdict;
    result.server_code = outcome.code;
    result.detail = std::move(outcome.detail);
    result.latency =
        std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - started);
    co_return result;
  }

  // Ends whatever the session waits for, now (cancel_all, the connector going away), without
  // the retry on a fresh connection a dropped one would get.
  void abort() {
    aborted_ = true;
    close();
  }

  // Called by the connector's sweep.
  void expire_if_late(SteadyClock::time_point now) {
    if (now < deadline_) return;
    timed_out_ = true;
    close();
  }

 private:
  asio::awaitable<Outcome> attempt(const OutgoingEmail& email) {
    timed_out_ = false;
    if (!open_) {
      std::optional<Outcome> failure = co_await open();
      if (failure) {
        close();
        co_return *failure;
      }
    }
    Outcome outcome = co_await transaction(email);
    if (outcome.connection_failed || outcome.code == 421) close();
    co_return outcome;
  }

  // Connects, reads the greeting, says EHLO, upgrades to TLS and logs in as configured. Each
  // step of it returns why it failed, or nothing.
  //
  // (Style note for this class: every co_await is a statement of its own, its result in a
  // named variable, and no temporary is bound to a coroutine's reference parameter (command()
  // takes its line by value). GCC 12 has open bugs with co_await inside conditions and with
  // such temporaries: the first version of this class crashed on one.)
  asio::awaitable<std::optional<Outcome>> open() {
    const Shared& s = *shared_;
    tls_.reset();  // nothing of the last connection's is still running: this coroutine ran it
    boost::system::error_code ec;
    const auto message_deadline = deadline_;
    deadline_ = std::min(deadline_, SteadyClock::now() + kConnectTimeout);
    auto endpoints = co_await resolver_.async_resolve(
        s.endpoint.host, s.endpoint.port, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return connection_error(Stage::connect, ec);
    co_await asio::async_connect(socket_, endpoints, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return connection_error(Stage::connect, ec);
    socket_.set_option(tcp::no_delay(true), ec);
    if (s.endpoint.implicit_tls) {
      std::optional<Outcome> handshake = co_await start_tls();
      if (handshake) co_return handshake;
    }
    deadline_ = message_deadline;

    smtp::Reply greeting;
    bool ok = co_await read(greeting);
    if (!ok) co_return connection_error(Stage::greeting, ec_);
    if (greeting.code != 220) co_return refused(Stage::greeting, greeting);
    std::optional<Outcome> step = co_await hello();
    if (step) co_return step;

    if (!tls_ && extensions_.starttls) {
      smtp::Reply reply;
      ok = co_await command("STARTTLS\r\n", reply);
      if (!ok) co_return connection_error(Stage::starttls, ec_);
      if (reply.code != 220) co_return refused(Stage::starttls, reply);
      // Anything that came in clear after the 220 was not sent through TLS and may have been
      // injected on the way (the STARTTLS command injection of CVE-2011-0411 and kin): it must
      // never be read as a reply from behind the handshake.
      in_.clear();
      in_start_ = 0;
      step = co_await start_tls();
      if (step) co_return step;
      step = co_await hello();  // RFC 3207 4.2: what the server offers may change under TLS
      if (step) co_return step;
    }
    if (!tls_ && s.require_tls) {
      co_return unable(Stage::starttls, Verdict::retry,
                       "the relay does not offer STARTTLS, and smtp.username is set: "
                       "credentials are never sent in clear");
    }
    if (!s.username.empty()) {
      step = co_await login();
      if (step) co_return step;
    }
    open_ = true;
    co_return std::nullopt;
  }

  asio::awaitable<std::optional<Outcome>> hello() {
    const std::string& domain = shared_->helo_domain;
    smtp::Reply reply;
    bool ok = co_await command("EHLO " + domain + "\r\n", reply);
    if (!ok) co_return connection_error(Stage::hello, ec_);
    if (reply.code == 250) {
      extensions_ = smtp::parse_ehlo(reply);
      co_return std::nullopt;
    }
    // RFC 5321 3.2: a server that does not know EHLO gets HELO, and no extensions are used.
    if (reply.code != 500 && reply.code != 502) co_return refused(Stage::hello, reply);
    ok = co_await command("HELO " + domain + "\r\n", reply);
    if (!ok) co_return connection_error(Stage::hello, ec_);
    if (reply.code != 250) co_return refused(Stage::hello, reply);
    extensions_ = smtp::Extensions{};
    co_return std::nullopt;
  }

  asio::awaitable<std::optional<Outcome>> start_tls() {
    const smtp::Endpoint& e = shared_->endpoint;
    tls_ = std::make_unique<asio::ssl::stream<tcp::socket&>>(socket_, shared_->tls);
    tls_->set_verify_mode(asio::ssl::verify_peer);
    tls_->set_verify_callback(asio::ssl::host_name_verification(e.host));
    boost::system::error_code ec;
    asio::ip::make_address(e.host, ec);
    // SNI, for relays that serve several names; never for an address literal (RFC 6066 3).
    // (SSL_set_tlsext_host_name, spelled out: the macro's C cast trips -Wold-style-cast.)
    if (ec) {
      SSL_ctrl(tls_->native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
               const_cast<char*>(e.host.c_str()));
    }
    ec = {};
    co_await tls_->async_handshake(asio::ssl::stream_base::client,
                                   asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return connection_error(Stage::starttls, ec);
    co_return std::nullopt;
  }

  // AUTH PLAIN (one round trip) when offered, else AUTH LOGIN.
  asio::awaitable<std::optional<Outcome>> login() {
    const Shared& s = *shared_;
    smtp::Reply reply;
    bool ok = false;
    if (extensions_.auth_plain) {
      std::string credentials;
      credentials.append(1, '\0').append(s.username).append(1, '\0').append(s.password);
      std::string line = "AUTH PLAIN " + render::mime::base64(credentials, false) + "\r\n";
      std::fill(credentials.begin(), credentials.end(), '\0');
      ok = co_await write(line);
      std::fill(line.begin(), line.end(), '\0');
      if (ok) ok = co_await read(reply);
      if (!ok) co_return connection_error(Stage::auth, ec_);
    } else if (extensions_.auth_login) {
      ok = co_await command("AUTH LOGIN\r\n", reply);
      if (!ok) co_return connection_error(Stage::auth, ec_);
      if (reply.code != 334) co_return refused(Stage::auth, reply);
      ok = co_await command(render::mime::base64(s.username, false) + "\r\n", reply);
      if (!ok) co_return connection_error(Stage::auth, ec_);
      if (reply.code != 334) co_return refused(Stage::auth, reply);
      std::string line = render::mime::base64(s.password, false) + "\r\n";
      ok = co_await write(line);
      std::fill(line.begin(), line.end(), '\0');
      if (ok) ok = co_await read(reply);
      if (!ok) co_return connection_error(Stage::auth, ec_);
    } else {
      co_return unable(
          Stage::auth, Verdict::retry,
          "smtp.username is set but the relay offers neither AUTH PLAIN nor AUTH LOGIN");
    }
    if (reply.code != 235) co_return refused(Stage::auth, reply);
    co_return std::nullopt;
  }

  // MAIL, RCPT, DATA and the message. With PIPELINING the three commands (and an RSET owed by
  // the last transaction) go out in one write and their replies are read together.
  asio::awaitable<Outcome> transaction(const OutgoingEmail& email) {
    const bool utf8 =
        smtp::has_eight_bit(email.envelope_from) || smtp::has_eight_bit(email.recipient);
    if (utf8 && !extensions_.smtputf8) {
      co_return unable(Stage::mail, Verdict::failed,
                       "the relay does not offer SMTPUTF8, which a non-ASCII address needs");
    }
    const std::string body = smtp::dot_stuff(email.mime);
    if (extensions_.size_limit.value_or(0) > 0 && body.size() > *extensions_.size_limit) {
      co_return unable(Stage::mail, Verdict::failed,
                       "the message's " + std::to_string(body.size()) +
                           " bytes are over the relay's SIZE limit of " +
                           std::to_string(*extensions_.size_limit));
    }
    const std::string mail = smtp::mail_command(email.envelope_from, body.size(),
                                                smtp::has_eight_bit(email.mime), utf8, extensions_);
    const std::string rcpt = "RCPT TO:<" + email.recipient + ">\r\n";
    const bool rset = rset_owed_;

    smtp::Reply rset_reply, mail_reply, rcpt_reply, data_reply;
    rset_owed_ = true;  // until the end of data is answered, the transaction may be open
    bool ok = true;
    if (extensions_.pipelining) {
      std::string batch;
      batch.reserve(mail.size() + rcpt.size() + 14);
      if (rset) batch += "RSET\r\n";
      batch.append(mail).append(rcpt).append("DATA\r\n");
      ok = co_await write(batch);
      if (!ok) co_return connection_error(Stage::mail, ec_);
      // A 421 ends the conversation: the server closes without answering the rest.
      if (rset) {
        ok = co_await read(rset_reply);
        if (!ok) co_return connection_error(Stage::mail, ec_);
        if (rset_reply.code == 421) co_return refused(Stage::mail, rset_reply);
      }
      ok = co_await read(mail_reply);
      if (!ok) co_return connection_error(Stage::mail, ec_);
      if (mail_reply.code == 421) co_return refused(Stage::mail, mail_reply);
      ok = co_await read(rcpt_reply);
      if (!ok) co_return connection_error(Stage::rcpt, ec_);
      if (rcpt_reply.code == 421) co_return refused(Stage::rcpt, rcpt_reply);
      ok = co_await read(data_reply);
      if (!ok) co_return connection_error(Stage::data, ec_);
    } else {
      if (rset) {
        ok = co_await command("RSET\r\n", rset_reply);
        if (!ok) co_return connection_error(Stage::mail, ec_);
      }
      if (!rset || rset_reply.code == 250) {
        ok = co_await command(mail, mail_reply);
        if (!ok) co_return connection_error(Stage::mail, ec_);
      }
      if (mail_reply.code == 250) {
        ok = co_await command(rcpt, rcpt_reply);
        if (!ok) co_return connection_error(Stage::rcpt, ec_);
      }
      if (rcpt_reply.code == 250) {
        ok = co_await command("DATA\r\n", data_reply);
        if (!ok) co_return connection_error(Stage::data, ec_);
      }
    }
    if (rset && rset_reply.code != 250) co_return drop(refused(Stage::mail, rset_reply));
    if (mail_reply.code != 250 || rcpt_reply.code != 250) {
      const bool at_mail = mail_reply.code != 250;
      Outcome o = refused(at_mail ? Stage::mail : Stage::rcpt, at_mail ? mail_reply : rcpt_reply);
      // A server must refuse DATA when no recipient was accepted (RFC 2920 3.1); one that
      // did not now waits for a message we will not send.
      if (data_reply.code == 354) co_return drop(std::move(o));
      co_return o;
    }
    if (data_reply.code != 354) co_return refused(Stage::data, data_reply);

    smtp::Reply final_reply;
    ok = co_await write(body);
    if (!ok) co_return connection_error(Stage::message, ec_);
    ok = co_await read(final_reply);
    if (!ok) co_return connection_error(Stage::message, ec_);
    rset_owed_ = false;  // the transaction is over, whatever the answer
    if (final_reply.code != 250) co_return refused(Stage::message, final_reply);
    Outcome sent;
    sent.verdict = Verdict::sent;
    sent.stage = Stage::message;
    sent.code = final_reply.code;
    sent.detail = final_reply.last_line;  // "250 2.0.0 Ok: queued as 4Fx1", for tracing
    co_return sent;
  }

  // An outcome after which the connection cannot be trusted to be in step.
  Outcome drop(Outcome o) {
    close();
    return o;
  }

  Outcome connection_error(Stage stage, boost::system::error_code ec) const {
    Outcome o;
    o.stage = stage;
    o.connection_failed = true;
    const std::string where = shared_->endpoint.host + ":" + shared_->endpoint.port;
    if (timed_out_) {
      const auto limit =
          stage == Stage::connect ? std::min(shared_->timeout, kConnectTimeout) : shared_->timeout;
      o.detail = std::string(smtp::to_string(stage)) + " at " + where + ": no answer within " +
                 std::to_string(limit.count()) + "s";
    } else if (!protocol_error_.empty()) {
      o.detail = std::string(smtp::to_string(stage)) + " at " + where +
                 ": not an SMTP reply: " + protocol_error_;
    } else {
      o.detail = std::string(smtp::to_string(stage)) + " at " + where + ": " + ec.message();
    }
    return o;
  }

  asio::awaitable<bool> command(std::string line, smtp::Reply& reply) {
    bool ok = co_await write(line);
    if (ok) ok = co_await read(reply);
    co_return ok;
  }

  asio::awaitable<bool> write(std::string_view bytes) {
    boost::system::error_code ec;
    if (tls_) {
      co_await asio::async_write(*tls_, asio::buffer(bytes),
                                 asio::redirect_error(asio::use_awaitable, ec));
    } else {
      co_await asio::async_write(socket_, asio::buffer(bytes),
                                 asio::redirect_error(asio::use_awaitable, ec));
    }
    ec_ = ec;
    co_return !ec;
  }

  // The next whole reply, from what is buffered or from the connection.
  asio::awaitable<bool> read(smtp::Reply& reply) {
    for (;;) {
      std::size_t consumed = 0;
      if (auto parsed = smtp::parse_reply(std::string_view(in_).substr(in_start_), consumed)) {
        in_start_ += consumed;
        if (in_start_ == in_.size()) {
          in_.clear();
          in_start_ = 0;
        }
        if (parsed->code == 0) {
          protocol_error_ = parsed->last_line.substr(0, 200);
          ec_ = asio::error::make_error_code(asio::error::misc_errors::eof);
          co_return false;
        }
        reply = std::move(*parsed);
        co_return true;
      }
      if (in_.size() - in_start_ > kMaxReplyBytes) {
        protocol_error_ = "a reply line of more than 64 KiB";
        ec_ = asio::error::make_error_code(asio::error::misc_errors::eof);
        co_return false;
      }
      in_.erase(0, in_start_);
      in_start_ = 0;
      const std::size_t had = in_.size();
      in_.resize(had + 4096);
      boost::system::error_code ec;
      std::size_t n = 0;
      if (tls_) {
        n = co_await tls_->async_read_some(asio::buffer(in_.data() + had, 4096),
                                           asio::redirect_error(asio::use_awaitable, ec));
      } else {
        n = co_await socket_.async_read_some(asio::buffer(in_.data() + had, 4096),
                                             asio::redirect_error(asio::use_awaitable, ec));
      }
      in_.resize(had + n);
      if (ec) {
        ec_ = ec;
        co_return false;
      }
    }
  }

  void close() {
    boost::system::error_code ignored;
    socket_.close(ignored);
    resolver_.cancel();
    open_ = false;
    rset_owed_ = false;
    in_.clear();
    in_start_ = 0;
    protocol_error_.clear();
    // tls_ stays until the next connection replaces it: a read or write still unwinding may
    // refer to it.
  }

  std::shared_ptr<Shared> shared_;
  tcp::socket socket_;
  tcp::resolver resolver_;
  std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls_;
  smtp::Extensions extensions_;
  bool open_ = false;       // greeted, upgraded and logged in: ready for a transaction
  bool rset_owed_ = false;  // the last transaction ended before its end-of-data reply
  std::string in_;          // bytes read and not yet parsed, from in_start_
  std::size_t in_start_ = 0;
  boost::system::error_code ec_;  // the last read's or write's error
  std::string protocol_error_;
  bool timed_out_ = false;
  bool aborted_ = false;
  SteadyClock::time_point deadline_ = SteadyClock::time_point::max();
};

class AsioSmtp final : public EmailConnector {
 public:
  AsioSmtp(asio::io_context& io, SmtpSettings settings) : io_(io), sweep_(io) {
    auto shared = std::make_shared<Shared>();
    shared->endpoint = smtp::parse_url(settings.url);
    shared->helo_domain = shared->endpoint.helo_domain;
    if (shared->helo_domain.empty()) {
      std::array<char, 256> name{};
      if (::gethostname(name.data(), name.size() - 1) == 0 && name[0] != '\0')
        shared->helo_domain = name.data();
      else
        shared->helo_domain = "localhost";
    }
    shared->username = settings.username;
    shared->password = settings.password;
    std::fill(settings.password.begin(), settings.password.end(), '\0');
    shared->timeout = settings.timeout;
    shared->require_tls = settings.require_tls;
    shared->tls.set_default_verify_paths();
    shared->tls.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                            asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                            asio::ssl::context::no_tlsv1_1);
    shared_ = shared;
    const int connections = std::max(1, settings.max_connections);
    for (int i = 0; i < connections; ++i) {
      Slot slot;
      slot.session = std::make_shared<Session>(io_, shared_);
      slots_.push_back(std::move(slot));
      idle_.push_back(slots_.size() - 1);
    }
    std::reverse(idle_.begin(), idle_.end());  // the first slots are used first
  }

  ~AsioSmtp() override {
    alive_.reset();
    for (auto& slot : slots_) slot.session->abort();
  }

  AsioSmtp(const AsioSmtp&) = delete;
  AsioSmtp& operator=(const AsioSmtp&) = delete;

  void send(OutgoingEmail email, Done done) override {
    waiting_.push_back({std::move(email), std::move(done)});
    // `done` must not run inside send(): a message already past its deadline is posted back.
    asio::post(io_, [this, alive = std::weak_ptr<int>(alive_)] {
      if (!alive.expired()) start_waiting();
    });
  }

  std::size_t in_flight() const override { return reported_by_sessions_ + waiting_.size(); }
  std::size_t parallelism() const override { return slots_.size(); }

  void cancel_all() override {
    std::vector<std::pair<Done, SendResult>> cancelled;
    for (auto& slot : slots_) {
      if (!slot.done) continue;
      SendResult result;
      result.id = slot.id;
      result.verdict = Verdict::retry;
      result.detail = "cancelled before the server accepted it";
      cancelled.emplace_back(std::move(slot.done), std::move(result));
      slot.done = nullptr;
      --reported_by_sessions_;
      // The slot stays busy until its coroutine has unwound; its result is then dropped.
      slot.session->abort();
    }
    for (auto& w : waiting_)
      cancelled.emplace_back(std::move(w.done), unsent(w.email.id, "not started: cancelled"));
    waiting_.clear();
    std::weak_ptr<int> alive = alive_;
    for (auto& [done, result] : cancelled) {
      done(std::move(result));
      if (alive.expired()) return;
    }
  }

 private:
  struct Slot {
    std::shared_ptr<Session> session;
    bool busy = false;
    std::int64_t id = 0;  // the message it carries
    Done done;            // empty once reported or cancelled
  };
  struct Waiting {
    OutgoingEmail email;
    Done done;
  };

  static SendResult unsent(std::int64_t id, std::string detail) {
    SendResult result;
    result.id = id;
    result.verdict = Verdict::unsent;
    result.detail = std::move(detail);
    return result;
  }

  void start_waiting() {
    std::weak_ptr<int> alive = alive_;
    while (!waiting_.empty()) {
      if (SteadyClock::now() > waiting_.front().email.deadline) {
        Waiting late = std::move(waiting_.front());
        waiting_.pop_front();
        late.done(unsent(late.email.id, "not started: its deadline passed while it waited"));
        if (alive.expired()) return;
        continue;
      }
      if (idle_.empty()) return;
      Waiting next = std::move(waiting_.front());
      waiting_.pop_front();
      const std::size_t index = idle_.back();
      idle_.pop_back();
      Slot& slot = slots_[index];
      slot.busy = true;
      slot.id = next.email.id;
      slot.done = std::move(next.done);
      ++reported_by_sessions_;
      asio::co_spawn(io_, run(slot.session, std::move(next.email), index, alive_, this),
                     asio::detached);
      arm_sweep();
    }
  }

  // The coroutine for one message. Its parameters live in its frame, so the session outlives
  // the connector if it must; `owner` is used only while `alive` holds.
  static asio::awaitable<void> run(std::shared_ptr<Session> session, OutgoingEmail email,
                                   std::size_t index, std::weak_ptr<int> alive, AsioSmtp* owner) {
    SendResult result;
    try {
      result = co_await session->deliver(email);
    } catch (const std::exception& e) {  // out of memory, in practice
      session->abort();
      result = SendResult{};
      result.id = email.id;
      result.verdict = Verdict::retry;
      result.detail = std::string("smtp client error: ") + e.what();
    }
    if (alive.expired()) co_return;
    owner->finished(index, std::move(result));
  }

  void finished(std::size_t index, SendResult result) {
    Slot& slot = slots_[index];
    slot.busy = false;
    Done done = std::move(slot.done);
    slot.done = nullptr;
    idle_.push_back(index);
    if (done) {
      --reported_by_sessions_;
      std::weak_ptr<int> alive = alive_;
      done(std::move(result));  // journals the verdict before this connection's next message
      if (alive.expired()) return;
    }
    start_waiting();
  }

  void arm_sweep() {
    if (sweep_armed_) return;
    sweep_armed_ = true;
    sweep_.expires_after(kSweepPeriod);
    sweep_.async_wait([this, alive = std::weak_ptr<int>(alive_)](boost::system::error_code) {
      if (alive.expired()) return;
      sweep_armed_ = false;
      const auto now = SteadyClock::now();
      bool any_busy = false;
      for (auto& slot : slots_) {
        if (!slot.busy) continue;
        any_busy = true;
        slot.session->expire_if_late(now);
      }
      if (any_busy) arm_sweep();
    });
  }

  asio::io_context& io_;
  std::shared_ptr<Shared> shared_;
  std::vector<Slot> slots_;
  std::vector<std::size_t> idle_;
  std::deque<Waiting> waiting_;
  std::size_t reported_by_sessions_ = 0;  // handed to a session, `done` not yet called
  asio::steady_timer sweep_;
  bool sweep_armed_ = false;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace

std::unique_ptr<EmailConnector> make_smtp_connector(boost::asio::io_context& io,
                                                    SmtpSettings settings) {
  return std::make_unique<AsioSmtp>(io, std::move(settings));
}

}  // namespace channeld::deliver
