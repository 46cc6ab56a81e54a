// deliver's connectors against real peers: the SMTP connector talks to a real SMTP server on
// 127.0.0.1 (tests/support/smtp_server.py), the folder connector to the file system. Each test
// runs the io_context on its own thread until every callback has fired.

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "deliver/connector.hpp"
#include "support/smtp_server.hpp"
#include "support/support.hpp"
#include "support/test_tls.hpp"

namespace channeld::deliver {
namespace {

using namespace std::chrono_literals;
using channeld::testing::SmtpTestServer;
using channeld::testing::TempDir;

// A message of about `size` bytes with CRLF line ends, unique to `n`. It has the lines SMTP
// transparency must carry through: one starting with a dot, one that is only a dot.
std::string message(int n, std::size_t size = 2000) {
  std::string id = std::to_string(n);
  std::string m = "From: Acme IT Solutions <partners@mkt.vendor.example>\r\n"
                  "To: <contact" + id + "@example.com>\r\n"
                  "Subject: Your cloud move, part " + id + "\r\n"
                  "Message-ID: <" + id + ".test@mkt.vendor.example>\r\n"
                  "MIME-Version: 1.0\r\n"
                  "Content-Type: text/plain; charset=utf-8\r\n"
                  "Content-Transfer-Encoding: 8bit\r\n"
                  "\r\n"
                  "Hello contact " + id + ", caf\xc3\xa9 time.\r\n"
                  ".a line that starts with a dot\r\n"
                  ".\r\n";
  while (m.size() < size) m += "The quick brown fox jumps over the lazy dog, message " + id + ".\r\n";
  return m;
}

OutgoingEmail email(int n, const std::string& recipient = "") {
  OutgoingEmail e;
  e.id = n;
  e.envelope_from = "bounces@mkt.vendor.example";
  e.recipient = recipient.empty() ? "contact" + std::to_string(n) + "@example.com" : recipient;
  e.partner_id = "acme-it";
  e.file_stem = "q4-cloud-announce-" + e.recipient;
  e.mime = message(n);
  return e;
}

SmtpSettings settings(const std::string& url, int max_connections = 4) {
  SmtpSettings s;
  s.url = url;
  s.max_connections = max_connections;
  s.timeout = 30s;
  return s;
}

// Collects SendResults by id and runs the io_context until it has `expected` of them. A wait
// that sees no event for 30 s fails the test instead of hanging it (a watchdog, not a sleep).
class Outcomes {
 public:
  EmailConnector::Done recorder() {
    return [this](SendResult r) { results_[r.id].push_back(std::move(r)); };
  }
  bool run_until(boost::asio::io_context& io, std::size_t expected) {
    while (count() < expected) {
      if (io.run_one_for(30s) == 0) {
        ADD_FAILURE() << "no progress for 30 s with " << count() << " of " << expected
                      << " results";
        return false;
      }
    }
    return true;
  }
  std::size_t count() const {
    std::size_t n = 0;
    for (const auto& [id, rs] : results_) n += rs.size();
    return n;
  }
  // The single result for `id` (every message is reported exactly once).
  const SendResult& at(std::int64_t id) const {
    auto it = results_.find(id);
    if (it == results_.end() || it->second.size() != 1) {
      throw std::runtime_error("not exactly one result for message " + std::to_string(id));
    }
    return it->second.front();
  }

 private:
  std::map<std::int64_t, std::vector<SendResult>> results_;
};

// A 127.0.0.1 port where nothing listens: bound but not listening, so connecting is refused,
// and held until the test ends so no other process can take it.
class RefusingPort {
 public:
  RefusingPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    auto* any = reinterpret_cast<sockaddr*>(&addr);
    if (fd_ < 0 || ::bind(fd_, any, len) != 0 || ::getsockname(fd_, any, &len) != 0) {
      throw std::runtime_error("cannot bind a port on 127.0.0.1");
    }
    port_ = ntohs(addr.sin_port);
  }
  ~RefusingPort() { ::close(fd_); }
  RefusingPort(const RefusingPort&) = delete;
  RefusingPort& operator=(const RefusingPort&) = delete;
  std::string url() const { return "smtp://127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// ---- SMTP --------------------------------------------------------------------------------

TEST(SmtpConnector, DeliversEveryMessageByteForByteOverFewReusedConnections) {
  SmtpTestServer server;
  if (!server.available()) return;
  boost::asio::io_context io;
  constexpr int kConnections = 4;
  constexpr int kMessages = 200;
  auto connector = make_smtp_connector(io, settings(server.url(), kConnections));
  Outcomes outcomes;
  std::vector<std::string> sent;
  for (int i = 1; i <= kMessages; ++i) {
    OutgoingEmail e = email(i);
    sent.push_back(e.mime);
    connector->send(std::move(e), outcomes.recorder());
  }
  EXPECT_EQ(connector->in_flight(), std::size_t{kMessages});
  ASSERT_TRUE(outcomes.run_until(io, kMessages));

  for (int i = 1; i <= kMessages; ++i) {
    const SendResult& r = outcomes.at(i);
    EXPECT_EQ(r.verdict, Verdict::sent) << i << ": " << r.detail;
    EXPECT_EQ(r.server_code, 250);
    EXPECT_TRUE(r.detail.starts_with("250 ")) << r.detail;
    EXPECT_GT(r.latency, 0us);
  }
  EXPECT_EQ(connector->in_flight(), 0u);
  std::vector<std::string> received = server.messages();
  std::sort(sent.begin(), sent.end());
  std::sort(received.begin(), received.end());
  EXPECT_TRUE(received == sent) << "received " << received.size() << " messages, "
                                << "not byte-equal to the " << sent.size() << " sent";
  auto stats = server.stats();
  EXPECT_LE(stats.max_open_connections, kConnections);
  EXPECT_LE(stats.connections, kConnections) << "connections were not reused";
  EXPECT_EQ(stats.accepted, kMessages);
}

TEST(SmtpConnector, KeepsUsingItsConnectionsAfterABurstIsDone) {
  SmtpTestServer server;
  if (!server.available()) return;
  boost::asio::io_context io;
  auto connector = make_smtp_connector(io, settings(server.url(), 2));
  Outcomes outcomes;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 5; ++i) connector->send(email(round * 10 + i), outcomes.recorder());
    ASSERT_TRUE(outcomes.run_until(io, static_cast<std::size_t>(5 * (round + 1))));
  }
  EXPECT_EQ(server.stats().accepted, 15);
  EXPECT_LE(server.stats().connections, 2);
}

TEST(SmtpConnector, RecipientRefusedAtRcptToIsAHardBounce) {
  SmtpTestServer::Options options;
  options.reject_rcpt = "nobody";
  SmtpTestServer server(options);
  if (!server.available()) return;
  boost::asio::io_context io;
  auto connector = make_smtp_connector(io, settings(server.url()));
  Outcomes outcomes;
  connector->send(email(1, "nobody@example.com"), outcomes.recorder());
  connector->send(email(2, "somebody@example.com"), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 2));

  const SendResult& bounced = outcomes.at(1);
  EXPECT_EQ(bounced.verdict, Verdict::hard_bounce) << bounced.detail;
  EXPECT_EQ(bounced.server_code, 550);
  EXPECT_NE(bounced.detail.find("550 5.1.1 <nobody@example.com>"), std::string::npos)
      << bounced.detail;
  EXPECT_EQ(outcomes.at(2).verdict, Verdict::sent) << "a bounce must not spoil the connection";
  EXPECT_EQ(server.messages().size(), 1u);
}

TEST(SmtpConnector, SenderRefusedAtMailFromFailsWithoutBouncingTheRecipient) {
  SmtpTestServer::Options options;
  options.reject_sender = "bounces@";
  SmtpTestServer server(options);
  if (!server.available()) return;
  boost::asio::io_context io;
  auto connector = make_smtp_connector(io, settings(server.url()));
  Outcomes outcomes;
  connector->send(email(1), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 1));
  EXPECT_EQ(outcomes.at(1).verdict, Verdict::failed) << outcomes.at(1).detail;
  EXPECT_EQ(outcomes.at(1).server_code, 550);
}

TEST(SmtpConnector, ContentRefusedAfterDataFails) {
  SmtpTestServer::Options options;
  options.reject_data = "part 1\r\n";
  SmtpTestServer server(options);
  if (!server.available()) return;
  boost::asio::io_context io;
  auto connector = make_smtp_connector(io, settings(server.url()));
  Outcomes outcomes;
  connector->send(email(1), outcomes.recorder());
  connector->send(email(2), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 2));
  EXPECT_EQ(outcomes.at(1).verdict, Verdict::failed) << outcomes.at(1).detail;
  EXPECT_EQ(outcomes.at(1).server_code, 554);
  EXPECT_NE(outcomes.at(1).detail.find("554 5.6.0"), std::string::npos) << outcomes.at(1).detail;
  EXPECT_EQ(outcomes.at(2).verdict, Verdict::sent) << outcomes.at(2).detail;
}

TEST(SmtpConnector, TemporaryFailureIsARetryAndTheNextAttemptGoesThrough) {
  SmtpTestServer::Options options;
  options.tempfail_first = 1;
  SmtpTestServer server(options);
  if (!server.available()) return;
  boost::asio::io_context io;
  auto connector = make_smtp_connector(io, settings(server.url(), 1));
  Outcomes outcomes;
  connector->send(email(1), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 1));
  EXPECT_EQ(outcomes.at(1).verdict, Verdict::retry) << outcomes.at(1).detail;
  EXPECT_EQ(outcomes.at(1).server_code, 451);
  EXPECT_NE(outcomes.at(1).detail.find("451 4.3.0"), std::string::npos) << outcomes.at(1).detail;

  connector->send(email(2), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 2));
  EXPECT_EQ(outcomes.at(2).verdict, Verdict::sent) << outcomes.at(2).detail;
  EXPECT_EQ(server.messages().size(), 1u);
}

TEST(SmtpConnector, RetriesForAsLongAsTheServerDefers) {
  TempDir dir;
  SmtpTestServer::Options options;
  options.tempfail_file = dir / "defer";
  SmtpTestServer server(options);
  if (!server.available()) return;
  boost::asio::io_context io;
  auto connector = make_smtp_connector(io, settings(server.url(), 2));
  Outcomes outcomes;

  channeld::testing::write_file(options.tempfail_file, "");
  for (int i = 1; i <= 3; ++i) connector->send(email(i), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 3));
  std::filesystem::remove(options.tempfail_file);
  connector->send(email(4), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 4));

  for (int i = 1; i <= 3; ++i) EXPECT_EQ(outcomes.at(i).verdict, Verdict::retry) << i;
  EXPECT_EQ(outcomes.at(4).verdict, Verdict::sent) << outcomes.at(4).detail;
}

TEST(SmtpConnector, ServerDownIsARetryForEveryMessage) {
  RefusingPort port;
  boost::asio::io_context io;
  auto connector = make_smtp_connector(io, settings(port.url(), 2));
  Outcomes outcomes;
  for (int i = 1; i <= 10; ++i) connector->send(email(i), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 10));
  for (int i = 1; i <= 10; ++i) {
    EXPECT_EQ(outcomes.at(i).verdict, Verdict::retry) << outcomes.at(i).detail;
    EXPECT_EQ(outcomes.at(i).server_code, 0);
  }
  EXPECT_NE(outcomes.at(1).detail.find("Connection refused"), std::string::npos)
      << outcomes.at(1).detail;
  EXPECT_EQ(connector->in_flight(), 0u);
}

TEST(SmtpConnector, CancelAllReportsEveryMessageAsNotSentAndStaysUsable) {
  SmtpTestServer::Options options;
  options.data_delay_seconds = 1;
  SmtpTestServer server(options);
  if (!server.available()) return;
  boost::asio::io_context io;
  auto connector = make_smtp_connector(io, settings(server.url(), 2));
  Outcomes outcomes;
  for (int i = 1; i <= 6; ++i) connector->send(email(i), outcomes.recorder());
  io.poll();                // two transfers handed to their connections, four waiting
  connector->cancel_all();
  EXPECT_EQ(outcomes.count(), 6u);
  // Started ones are a retry (the server may have seen them); waiting ones never started.
  for (int i = 1; i <= 2; ++i) EXPECT_EQ(outcomes.at(i).verdict, Verdict::retry) << i;
  for (int i = 3; i <= 6; ++i) EXPECT_EQ(outcomes.at(i).verdict, Verdict::unsent) << i;
  EXPECT_EQ(connector->in_flight(), 0u);

  connector->send(email(7), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 7));
  EXPECT_EQ(outcomes.at(7).verdict, Verdict::sent) << outcomes.at(7).detail;
}

// A cancelled message has been reported as not sent and may be claimed again: the reused
// connection it was cut from must not earn it the retry on a fresh one a dropped connection gets.
TEST(SmtpConnector, ACancelledMessageIsNotSentAgainOnAFreshConnection) {
  SmtpTestServer server;
  if (!server.available()) return;
  boost::asio::io_context io;
  auto connector = make_smtp_connector(io, settings(server.url(), 1));
  Outcomes outcomes;
  connector->send(email(1), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 1));
  ASSERT_EQ(outcomes.at(1).verdict, Verdict::sent) << outcomes.at(1).detail;

  connector->send(email(2), outcomes.recorder());
  io.poll();  // message 2 starts on the reused connection and waits for the server
  ASSERT_EQ(outcomes.count(), 1u) << "message 2 finished before it could be cancelled";
  connector->cancel_all();
  ASSERT_EQ(outcomes.count(), 2u);
  EXPECT_EQ(outcomes.at(2).verdict, Verdict::retry) << outcomes.at(2).detail;

  connector->send(email(3), outcomes.recorder());  // waits for the slot message 2 held
  ASSERT_TRUE(outcomes.run_until(io, 3));
  EXPECT_EQ(outcomes.at(3).verdict, Verdict::sent) << outcomes.at(3).detail;
  EXPECT_EQ(server.stats().accepted, 2);  // 1 and 3; a resent 2 would make it 3
}

TEST(SmtpConnector, SixteenConnectionsHoldSixteenMessagesOpenAtOnceAgainstASlowRelay) {
  SmtpTestServer::Options options;
  options.data_delay_seconds = 0.2;  // the relay answers the end of DATA after 200 ms
  SmtpTestServer server(options);
  if (!server.available()) return;
  boost::asio::io_context io;
  auto connector = make_smtp_connector(io, settings(server.url(), 16));
  Outcomes outcomes;
  for (int i = 1; i <= 48; ++i) connector->send(email(i), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 48));
  for (int i = 1; i <= 48; ++i) EXPECT_EQ(outcomes.at(i).verdict, Verdict::sent) << i;
  // What the server saw, not a timing: sixteen transactions between MAIL FROM and the reply
  // to their end of DATA at the same moment.
  EXPECT_EQ(server.stats().max_open_transactions, 16);
  EXPECT_LE(server.stats().connections, 16);
}

TEST(SmtpConnector, AConnectionTheRelayDroppedIsRetriedOnAFreshOne) {
  SmtpTestServer::Options options;
  options.drop_after = 1;  // each connection carries one message, then is dropped
  SmtpTestServer server(options);
  if (!server.available()) return;
  boost::asio::io_context io;
  auto connector = make_smtp_connector(io, settings(server.url(), 1));
  Outcomes outcomes;
  for (int i = 1; i <= 3; ++i) connector->send(email(i), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 3));
  for (int i = 1; i <= 3; ++i) EXPECT_EQ(outcomes.at(i).verdict, Verdict::sent) << outcomes.at(i).detail;
  EXPECT_EQ(server.stats().accepted, 3);
  EXPECT_EQ(server.stats().connections, 3);
}

TEST(SmtpConnector, A421IsRetriedOnAFreshConnection) {
  SmtpTestServer::Options options;
  options.reply_421_first = 1;
  SmtpTestServer server(options);
  if (!server.available()) return;
  boost::asio::io_context io;
  auto connector = make_smtp_connector(io, settings(server.url(), 1));
  Outcomes outcomes;
  connector->send(email(1), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 1));
  EXPECT_EQ(outcomes.at(1).verdict, Verdict::sent) << outcomes.at(1).detail;
  EXPECT_EQ(server.stats().connections, 2);
  EXPECT_EQ(server.messages().size(), 1u);
}

TEST(SmtpConnector, AMessageWhoseDeadlinePassedWhileItWaitedIsReturnedUnsent) {
  SmtpTestServer::Options options;
  options.data_delay_seconds = 1;
  SmtpTestServer server(options);
  if (!server.available()) return;
  boost::asio::io_context io;
  auto connector = make_smtp_connector(io, settings(server.url(), 1));
  Outcomes outcomes;
  // One connection: the second message can only start after the first one's second-long reply,
  // past its deadline.
  const auto deadline = std::chrono::steady_clock::now() + 300ms;
  for (int i = 1; i <= 2; ++i) {
    OutgoingEmail e = email(i);
    e.deadline = deadline;
    connector->send(std::move(e), outcomes.recorder());
  }
  OutgoingEmail late = email(3);
  late.deadline = std::chrono::steady_clock::now() - 1ms;
  connector->send(std::move(late), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 3));
  EXPECT_EQ(outcomes.at(1).verdict, Verdict::sent) << outcomes.at(1).detail;
  EXPECT_EQ(outcomes.at(2).verdict, Verdict::unsent) << outcomes.at(2).detail;
  EXPECT_EQ(outcomes.at(3).verdict, Verdict::unsent) << outcomes.at(3).detail;
  EXPECT_EQ(server.messages().size(), 1u) << "nothing goes out after its deadline";
}

TEST(SmtpConnector, MayBeDestroyedFromItsOwnCallback) {
  SmtpTestServer server;
  if (!server.available()) return;
  boost::asio::io_context io;
  auto connector = make_smtp_connector(io, settings(server.url(), 2));
  int reported = 0;
  for (int i = 1; i <= 4; ++i) {
    connector->send(email(i), [&](SendResult) {
      ++reported;
      connector.reset();
    });
  }
  while (connector && io.run_one_for(30s) > 0) {
  }
  EXPECT_EQ(connector, nullptr);
  EXPECT_EQ(reported, 1);
  io.poll();  // what the connector left queued must find it gone and do nothing
  EXPECT_EQ(reported, 1);
}

// ---- PIPELINING, TLS, AUTH, SIZE ------------------------------------------------------------

TEST(SmtpConnector, PipelinesMailRcptAndDataWhenTheRelayOffersIt) {
  SmtpTestServer::Options options;
  options.pipelining = true;
  SmtpTestServer server(options);
  if (!server.available()) return;
  boost::asio::io_context io;
  auto connector = make_smtp_connector(io, settings(server.url(), 2));
  Outcomes outcomes;
  for (int i = 1; i <= 20; ++i) connector->send(email(i), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 20));
  for (int i = 1; i <= 20; ++i) EXPECT_EQ(outcomes.at(i).verdict, Verdict::sent) << i;
  // The server had RCPT TO and DATA in hand before it answered each MAIL FROM.
  EXPECT_EQ(server.stats().pipelined_transactions, 20);
  std::vector<std::string> bodies = server.messages();
  ASSERT_EQ(bodies.size(), 20u);
  std::sort(bodies.begin(), bodies.end());
  std::vector<std::string> expected;
  for (int i = 1; i <= 20; ++i) expected.push_back(message(i));
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(bodies, expected);
}

TEST(SmtpConnector, APipelinedRefusalCostsOnlyItsMessageAndTheConnectionGoesOn) {
  SmtpTestServer::Options options;
  options.pipelining = true;
  options.reject_rcpt = "nobody@";
  options.reject_sender = "refused-sender@";
  SmtpTestServer server(options);
  if (!server.available()) return;
  boost::asio::io_context io;
  auto connector = make_smtp_connector(io, settings(server.url(), 1));
  Outcomes outcomes;
  OutgoingEmail bad_sender = email(2);
  bad_sender.envelope_from = "refused-sender@mkt.vendor.example";
  connector->send(email(1, "nobody@example.com"), outcomes.recorder());
  connector->send(std::move(bad_sender), outcomes.recorder());
  connector->send(email(3), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 3));
  EXPECT_EQ(outcomes.at(1).verdict, Verdict::hard_bounce) << outcomes.at(1).detail;
  EXPECT_EQ(outcomes.at(1).server_code, 550);
  EXPECT_EQ(outcomes.at(2).verdict, Verdict::failed) << outcomes.at(2).detail;
  EXPECT_EQ(outcomes.at(2).server_code, 550);
  EXPECT_NE(outcomes.at(2).detail.find("MAIL FROM refused: 550"), std::string::npos)
      << outcomes.at(2).detail;
  EXPECT_EQ(outcomes.at(3).verdict, Verdict::sent) << outcomes.at(3).detail;
  EXPECT_EQ(server.stats().accepted, 1);
  EXPECT_EQ(server.stats().connections, 1);  // refusals do not cost the connection
}

// Points OpenSSL's default trust store (what the connector loads) at one file for the scope.
class TrustedCertificate {
 public:
  explicit TrustedCertificate(const std::filesystem::path& cert) {
    ::setenv("SSL_CERT_FILE", cert.c_str(), 1);
  }
  ~TrustedCertificate() { ::unsetenv("SSL_CERT_FILE"); }
  TrustedCertificate(const TrustedCertificate&) = delete;
  TrustedCertificate& operator=(const TrustedCertificate&) = delete;
};

// A relay offering STARTTLS with `cert` and requiring AUTH as mailer / s3cret.
SmtpTestServer::Options tls_relay(const channeld::testing::SelfSignedCert& cert) {
  SmtpTestServer::Options options;
  options.tls_cert = cert.cert;
  options.tls_key = cert.key;
  options.auth = "mailer:s3cret";
  return options;
}

SmtpSettings with_login(SmtpSettings s, const std::string& password = "s3cret") {
  s.username = "mailer";
  s.password = password;
  s.require_tls = true;
  return s;
}

TEST(SmtpConnector, UpgradesWithStartTlsVerifiesTheRelayAndLogsIn) {
  TempDir dir;
  auto cert = channeld::testing::make_self_signed_cert(dir.path());
  if (!cert.available()) return;
  SmtpTestServer::Options options = tls_relay(cert);
  options.pipelining = true;
  SmtpTestServer server(options);
  if (!server.available()) return;
  TrustedCertificate trust(cert.cert);
  boost::asio::io_context io;
  const std::string url = "smtp://localhost:" + std::to_string(server.port());
  auto connector = make_smtp_connector(io, with_login(settings(url, 2)));
  Outcomes outcomes;
  for (int i = 1; i <= 6; ++i) connector->send(email(i), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 6));
  for (int i = 1; i <= 6; ++i)
    EXPECT_EQ(outcomes.at(i).verdict, Verdict::sent) << outcomes.at(i).detail;
  const auto stats = server.stats();
  EXPECT_EQ(stats.accepted, 6);
  EXPECT_EQ(stats.tls_sessions, stats.connections);
  EXPECT_EQ(stats.authenticated, stats.connections);  // once per connection, not per message
  EXPECT_EQ(stats.pipelined_transactions, 6);
}

TEST(SmtpConnector, SpeaksTlsFromTheFirstByteToAnSmtpsUrl) {
  TempDir dir;
  auto cert = channeld::testing::make_self_signed_cert(dir.path());
  if (!cert.available()) return;
  SmtpTestServer::Options options = tls_relay(cert);
  options.auth.clear();
  options.implicit_tls = true;
  SmtpTestServer server(options);
  if (!server.available()) return;
  TrustedCertificate trust(cert.cert);
  boost::asio::io_context io;
  auto connector = make_smtp_connector(io, settings(server.smtps_url(), 1));
  Outcomes outcomes;
  connector->send(email(1), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 1));
  EXPECT_EQ(outcomes.at(1).verdict, Verdict::sent) << outcomes.at(1).detail;
  EXPECT_EQ(server.stats().tls_sessions, 1);
  ASSERT_EQ(server.messages().size(), 1u);
  EXPECT_EQ(server.messages().front(), message(1));
}

TEST(SmtpConnector, ARelayWhoseCertificateIsNotTrustedGetsNothing) {
  TempDir dir;
  auto cert = channeld::testing::make_self_signed_cert(dir.path());
  if (!cert.available()) return;
  SmtpTestServer server(tls_relay(cert));
  if (!server.available()) return;
  boost::asio::io_context io;  // no TrustedCertificate: the system's store knows no such CA
  const std::string url = "smtp://localhost:" + std::to_string(server.port());
  auto connector = make_smtp_connector(io, with_login(settings(url, 1)));
  Outcomes outcomes;
  connector->send(email(1), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 1));
  EXPECT_EQ(outcomes.at(1).verdict, Verdict::retry) << outcomes.at(1).detail;
  EXPECT_NE(outcomes.at(1).detail.find("STARTTLS"), std::string::npos) << outcomes.at(1).detail;
  EXPECT_EQ(server.stats().authenticated, 0);
  EXPECT_EQ(server.stats().accepted, 0);
}

TEST(SmtpConnector, AWrongPasswordIsARetryNotAFailure) {
  TempDir dir;
  auto cert = channeld::testing::make_self_signed_cert(dir.path());
  if (!cert.available()) return;
  SmtpTestServer server(tls_relay(cert));
  if (!server.available()) return;
  TrustedCertificate trust(cert.cert);
  boost::asio::io_context io;
  const std::string url = "smtp://localhost:" + std::to_string(server.port());
  auto connector = make_smtp_connector(io, with_login(settings(url, 1), "wrong"));
  Outcomes outcomes;
  connector->send(email(1), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 1));
  EXPECT_EQ(outcomes.at(1).verdict, Verdict::retry) << outcomes.at(1).detail;
  EXPECT_EQ(outcomes.at(1).server_code, 535);
  EXPECT_EQ(server.stats().accepted, 0);
}

TEST(SmtpConnector, NeverSendsCredentialsToARelayWithoutStartTls) {
  SmtpTestServer::Options options;
  options.auth = "mailer:s3cret";
  options.auth_over_plain = true;  // the relay would take them in clear
  SmtpTestServer server(options);
  if (!server.available()) return;
  boost::asio::io_context io;
  auto connector = make_smtp_connector(io, with_login(settings(server.url(), 1)));
  Outcomes outcomes;
  connector->send(email(1), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 1));
  EXPECT_EQ(outcomes.at(1).verdict, Verdict::retry) << outcomes.at(1).detail;
  EXPECT_NE(outcomes.at(1).detail.find("does not offer STARTTLS"), std::string::npos)
      << outcomes.at(1).detail;
  EXPECT_EQ(server.stats().authenticated, 0);
  EXPECT_EQ(server.stats().accepted, 0);
}

TEST(SmtpConnector, DeclaresTheSizeAndKeepsAnOversizedMessageToItself) {
  SmtpTestServer::Options options;
  options.size_limit = 6000;
  SmtpTestServer server(options);
  if (!server.available()) return;
  boost::asio::io_context io;
  auto connector = make_smtp_connector(io, settings(server.url(), 1));
  Outcomes outcomes;
  OutgoingEmail big = email(2);
  big.mime = message(2, 9000);
  connector->send(email(1), outcomes.recorder());
  connector->send(std::move(big), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 2));
  EXPECT_EQ(outcomes.at(1).verdict, Verdict::sent) << outcomes.at(1).detail;
  EXPECT_EQ(outcomes.at(2).verdict, Verdict::failed) << outcomes.at(2).detail;
  EXPECT_NE(outcomes.at(2).detail.find("SIZE limit of 6000"), std::string::npos)
      << outcomes.at(2).detail;
  const auto stats = server.stats();
  // SIZE= is the message as it goes on the wire: dot-stuffed, with its terminator.
  EXPECT_GE(stats.last_mail_size, static_cast<long long>(message(1).size()));
  EXPECT_LT(stats.last_mail_size, static_cast<long long>(message(1).size()) + 16);
  EXPECT_EQ(stats.accepted, 1);
  EXPECT_EQ(stats.refused, 0);  // the big one never reached the relay
}

TEST(SmtpConnector, ARelayThatDoesNotAnswerInTimeIsARetry) {
  SmtpTestServer::Options options;
  options.data_delay_seconds = 5;  // far past the 1 s timeout
  SmtpTestServer server(options);
  if (!server.available()) return;
  boost::asio::io_context io;
  SmtpSettings s = settings(server.url(), 1);
  s.timeout = 1s;
  auto connector = make_smtp_connector(io, s);
  Outcomes outcomes;
  connector->send(email(1), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 1));
  EXPECT_EQ(outcomes.at(1).verdict, Verdict::retry) << outcomes.at(1).detail;
  EXPECT_NE(outcomes.at(1).detail.find("no answer within 1s"), std::string::npos)
      << outcomes.at(1).detail;
  EXPECT_LT(outcomes.at(1).latency, 3s);  // ended by the timeout, not by the relay's answer
}

// ---- folder ------------------------------------------------------------------------------

TEST(FolderConnector, WritesTheMessageAndItsHtmlUnderThePartnerFolder) {
  TempDir dir;
  boost::asio::io_context io;
  auto connector = make_folder_connector(io, dir.path().string());
  Outcomes outcomes;
  OutgoingEmail e = email(1, "pat@example.com");
  e.html = "<p>Hello Pat</p>";
  connector->send(e, outcomes.recorder());
  EXPECT_EQ(outcomes.count(), 0u) << "the callback ran inside send()";
  EXPECT_EQ(connector->in_flight(), 1u);
  ASSERT_TRUE(outcomes.run_until(io, 1));

  EXPECT_EQ(outcomes.at(1).verdict, Verdict::sent) << outcomes.at(1).detail;
  auto folder = dir.path() / "acme-it";
  EXPECT_EQ(channeld::testing::read_file(folder / "q4-cloud-announce-pat@example.com.eml"), e.mime);
  EXPECT_EQ(channeld::testing::read_file(folder / "q4-cloud-announce-pat@example.com.html"),
            e.html);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(folder),
                          std::filesystem::directory_iterator()),
            2)
      << "temporary files were left behind";
  EXPECT_EQ(connector->in_flight(), 0u);
}

TEST(FolderConnector, WritesNoHtmlFileForATextOnlyMessage) {
  TempDir dir;
  boost::asio::io_context io;
  auto connector = make_folder_connector(io, dir.path().string());
  Outcomes outcomes;
  connector->send(email(1, "pat@example.com"), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 1));
  EXPECT_TRUE(std::filesystem::exists(dir / "acme-it/q4-cloud-announce-pat@example.com.eml"));
  EXPECT_FALSE(std::filesystem::exists(dir / "acme-it/q4-cloud-announce-pat@example.com.html"));
}

TEST(FolderConnector, KeepsASlashInTheAddressInsideThePartnerFolder) {
  TempDir dir;
  boost::asio::io_context io;
  auto connector = make_folder_connector(io, dir.path().string());
  Outcomes outcomes;
  connector->send(email(1, "a/../../b@example.com"), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 1));
  EXPECT_EQ(outcomes.at(1).verdict, Verdict::sent) << outcomes.at(1).detail;
  EXPECT_TRUE(std::filesystem::exists(dir / "acme-it/q4-cloud-announce-a_.._.._b@example.com.eml"));
}

TEST(FolderConnector, AFileErrorIsARetry) {
  TempDir dir;
  channeld::testing::write_file(dir / "not-a-folder", "");
  boost::asio::io_context io;
  auto connector = make_folder_connector(io, (dir / "not-a-folder").string());
  Outcomes outcomes;
  connector->send(email(1), outcomes.recorder());
  ASSERT_TRUE(outcomes.run_until(io, 1));
  EXPECT_EQ(outcomes.at(1).verdict, Verdict::retry);
  EXPECT_NE(outcomes.at(1).detail.find("not-a-folder"), std::string::npos) << outcomes.at(1).detail;
}

}  // namespace
}  // namespace channeld::deliver
