// api::PublicServer on an ephemeral 127.0.0.1 port, in front of a real api::HttpServer: fast
// answers, the relay of everything else, and the limits that keep it from being starved. Clients
// are httplib::Client where it speaks the case, raw sockets where the bytes on the wire matter.
// No database: the upstream's routes are plain functions.
#include "api/public_server.hpp"

#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "model/model.hpp"
#include "support/raw_connection.hpp"

namespace channeld::api {
namespace {

using nlohmann::json;
using testing::RawConnection;
using namespace std::chrono_literals;

bool within(std::chrono::milliseconds limit, const std::function<bool()>& condition) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return condition();
}

std::string status_line(const std::string& reply) {
  return reply.substr(0, reply.find("\r\n"));
}

metrics::Registry& registry() {
  static metrics::Registry r;
  return r;
}

// The upstream: HttpServer with /echo (any method's request, described in JSON, 201 and an
// X-Echo header) and /slow/ (answers once the test lets it).
class Upstream {
 public:
  Upstream() : server_("127.0.0.1:0", routes()) { server_.start(); }
  ~Upstream() {
    release();
    server_.stop();
  }

  ListenAddress address() const { return {"127.0.0.1", server_.port()}; }
  void release() {
    {
      const std::lock_guard lock(mutex_);
      released_ = true;
    }
    changed_.notify_all();
  }
  int slow_waiting() const { return slow_waiting_; }

 private:
  Routes routes() {
    Routes r([] { return true; }, registry(), [] { return std::vector<store::DeliveryCount>{}; });
    const auto echo = [](const Request& request, const Principal*) {
      json query = json::object();
      for (const auto& [name, value] : request.query) query[name] = value;
      Response response{201, "application/json", "", {{"X-Echo", "yes"}}};
      response.body = json{
          {"method", request.method},
          {"path", request.path},
          {"query", query},
          {"body", request.body},
          {"forwarded_for",
           request.headers.count("x-forwarded-for")
               ? request.headers.at("x-forwarded-for")
               : ""}}.dump();
      return response;
    };
    r.add({
        Route{"GET", "/echo", {}, echo},
        Route{"POST", "/echo", {}, echo, HttpServer::kMaxBodyBytes},
        Route{"GET",
              "/slow/",
              {},
              [this](const Request&, const Principal*) {
                ++slow_waiting_;
                std::unique_lock lock(mutex_);
                changed_.wait(lock, [this] { return released_; });
                return Response{200, "text/plain", "slow", {}};
              }},
    });
    return r;
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  bool released_ = false;
  std::atomic<int> slow_waiting_{0};
  HttpServer server_;  // last: stopped before what its routes use is destroyed
};

// Replies the test holds back: /later's Reply is kept until the test gives the answer.
struct HeldReplies {
  std::mutex mutex;
  std::vector<Reply> replies;
  std::size_t size() {
    const std::lock_guard lock(mutex);
    return replies.size();
  }
  Reply take() {
    const std::lock_guard lock(mutex);
    Reply reply = std::move(replies.front());
    replies.erase(replies.begin());
    return reply;
  }
};

// /fast answers at once ("fast <q>"), /later when the test says, /throw throws; anything else is
// declined and relayed.
FastHandler fast_handler(HeldReplies& held) {
  return [&held](const Request& request, Reply reply) {
    if (request.path == "/fast") {
      const auto q = request.query.find("q");
      reply(Response{200,
                     "text/plain",
                     "fast " + (q == request.query.end() ? "" : q->second),
                     {{"X-Fast", "1"}}});
      return true;
    }
    if (request.path == "/later") {
      const std::lock_guard lock(held.mutex);
      held.replies.push_back(std::move(reply));
      return true;
    }
    if (request.path == "/later-tagged") {  // the Reply adds " <q>" to the body it is given
      const auto q = request.query.find("q");
      const std::string tag = q == request.query.end() ? "" : q->second;
      const std::lock_guard lock(held.mutex);
      held.replies.push_back([reply = std::move(reply), tag](Response response) {
        response.body += " " + tag;
        reply(std::move(response));
      });
      return true;
    }
    if (request.path == "/split") {
      reply(
          Response{302, "text/plain", "", {{"Location", "https://a.example/\r\nSet-Cookie: x=1"}}});
      return true;
    }
    if (request.path == "/throw") throw std::runtime_error("the handler failed");
    return false;
  };
}

class PublicServerTest : public ::testing::Test {
 protected:
  explicit PublicServerTest(PublicLimits limits = {})
      : server_(std::make_unique<PublicServer>("127.0.0.1:0", upstream_.address(), limits,
                                               fast_handler(held_))) {
    server_->start();
  }

  httplib::Client client() {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_connection_timeout(5s);
    c.set_read_timeout(5s);
    return c;
  }
  int port() const { return server_->port(); }

  Upstream upstream_;
  HeldReplies held_;
  std::unique_ptr<PublicServer> server_;  // last: stopped before the replies and upstream go
};

// ---- fast answers ------------------------------------------------------------------------

TEST_F(PublicServerTest, AFastHandlerAnswersWithItsStatusHeadersAndBody) {
  auto result = client().Get("/fast?q=caf%C3%A9%20au%20lait");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->body, "fast café au lait");
  EXPECT_EQ(result->get_header_value("X-Fast"), "1");
  EXPECT_EQ(result->get_header_value("Content-Length"), "18");
}

TEST_F(PublicServerTest, TheRequestCarriesTheDecodedPathQueryAndLowerCasedHeaders) {
  std::promise<Request> seen;
  PublicServer server("127.0.0.1:0", upstream_.address(), {},
                      [&seen](const Request& request, Reply reply) {
                        seen.set_value(request);
                        reply(Response{204, "", "", {}});
                        return true;
                      });
  server.start();
  RawConnection raw(server.port());
  ASSERT_TRUE(
      raw.send("POST /c/a%2Fb?x=1&x=2&y=a+b HTTP/1.1\r\nHost: h\r\nX-Mixed-Case: V\r\n"
               "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 19\r\n\r\n"
               "List-Unsubscribe=On"));
  const auto reply = raw.read_reply();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status(), 204);
  EXPECT_EQ(reply->head.find("Content-Length"), std::string::npos) << "RFC 9110 8.6: not in a 204";
  const Request request = seen.get_future().get();
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.path, "/c/a/b");
  EXPECT_EQ(request.query.at("x"), "1");
  EXPECT_EQ(request.query.at("y"), "a b");
  EXPECT_EQ(request.query.at("List-Unsubscribe"), "On");
  EXPECT_EQ(request.headers.at("x-mixed-case"), "V");
  EXPECT_EQ(request.body, "List-Unsubscribe=On");
}

TEST_F(PublicServerTest, AReplyGivenLaterFromAnotherThreadReachesItsClient) {
  auto answer = std::async(std::launch::async, [this] { return client().Get("/later"); });
  ASSERT_TRUE(within(5s, [&] { return held_.size() == 1; }));
  EXPECT_EQ(answer.wait_for(0s), std::future_status::timeout) << "answered before the Reply";
  std::thread([reply = held_.take()] { reply(Response{202, "text/plain", "later", {}}); }).join();
  auto result = answer.get();
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 202);
  EXPECT_EQ(result->body, "later");
}

// The hit journal answers a whole batch at once from its own thread: every Reply of the run must
// reach its own client, whichever thread gave it.
TEST_F(PublicServerTest, ManyRepliesGivenAtOnceFromTwoThreadsEachReachTheirOwnClient) {
  constexpr int kClients = 24;
  std::vector<std::future<httplib::Result>> answers;
  for (int i = 0; i < kClients; ++i) {
    answers.push_back(std::async(std::launch::async, [this, i] {
      return client().Get("/later-tagged?q=" + std::to_string(i));
    }));
  }
  ASSERT_TRUE(within(5s, [&] { return held_.size() == kClients; }));
  std::vector<Reply> replies;
  for (int i = 0; i < kClients; ++i) replies.push_back(held_.take());
  const auto answer_half = [&replies](int first) {
    for (int i = first; i < kClients; i += 2) replies[i](Response{200, "text/plain", "later", {}});
  };
  std::thread even(answer_half, 0), odd(answer_half, 1);
  even.join();
  odd.join();
  for (int i = 0; i < kClients; ++i) {
    auto result = answers[i].get();
    ASSERT_TRUE(result) << i << ": " << httplib::to_string(result.error());
    EXPECT_EQ(result->status, 200);
    EXPECT_EQ(result->body, "later " + std::to_string(i));
  }
}

// A Location from a kit link that decoded to a line break must not split the response.
TEST_F(PublicServerTest, AHeaderValueWithALineBreakIsNeverSentAndGets500) {
  RawConnection raw(port());
  ASSERT_TRUE(raw.send("GET /split HTTP/1.1\r\nHost: h\r\n\r\n"));
  const auto reply = raw.read_reply();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status(), 500);
  EXPECT_EQ(reply->head.find("Set-Cookie"), std::string::npos) << reply->head;
  EXPECT_EQ(reply->head.find("Location"), std::string::npos) << reply->head;
}

TEST_F(PublicServerTest, AHandlerThatThrowsGetsAJson500AndTheConnectionLives) {
  RawConnection raw(port());
  ASSERT_TRUE(
      raw.send("GET /throw HTTP/1.1\r\nHost: h\r\n\r\nGET /fast?q=1 HTTP/1.1\r\nHost: h\r\n\r\n"));
  const auto failed = raw.read_reply();
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->status(), 500);
  EXPECT_EQ(json::parse(failed->body)["error"], "the handler failed");
  const auto next = raw.read_reply();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->body, "fast 1");
}

TEST_F(PublicServerTest, HeadIsAnsweredWithTheLengthButWithoutABody) {
  RawConnection raw(port());
  ASSERT_TRUE(raw.send("HEAD /fast?q=abc HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"));
  const std::string reply = raw.read_all();
  EXPECT_EQ(status_line(reply), "HTTP/1.1 200 OK");
  EXPECT_NE(reply.find("\r\nContent-Length: 8\r\n"), std::string::npos) << reply;
  EXPECT_EQ(reply.substr(reply.find("\r\n\r\n") + 4), "") << "a body after the head";
}

TEST_F(PublicServerTest, KeepAliveAnswersPipelinedRequestsInOrderOnOneSocket) {
  RawConnection raw(port());
  std::string requests;
  for (int i = 0; i < 6; ++i) {
    // Fast, relayed and held-back answers interleaved: each must wait for the one before.
    const std::string target = i % 3 == 0   ? "/fast?q=" + std::to_string(i)
                               : i % 3 == 1 ? "/echo?i=" + std::to_string(i)
                                            : "/later";
    requests += "GET " + target + " HTTP/1.1\r\nHost: h\r\n\r\n";
  }
  ASSERT_TRUE(raw.send(requests));
  for (int i = 0; i < 6; ++i) {
    SCOPED_TRACE(i);
    if (i % 3 == 2) {
      ASSERT_TRUE(within(5s, [&] { return held_.size() == 1; }));
      held_.take()(Response{200, "text/plain", "later " + std::to_string(i), {}});
    }
    const auto reply = raw.read_reply();
    ASSERT_TRUE(reply);
    EXPECT_FALSE(reply->has("Connection: close"));
    if (i % 3 == 0) {
      EXPECT_EQ(reply->body, "fast " + std::to_string(i));
    } else if (i % 3 == 1) {
      EXPECT_EQ(json::parse(reply->body)["query"]["i"], std::to_string(i));
    } else {
      EXPECT_EQ(reply->body, "later " + std::to_string(i));
    }
  }
}

TEST_F(PublicServerTest, ConnectionCloseIsHonouredAfterTheResponse) {
  RawConnection raw(port());
  ASSERT_TRUE(raw.send("GET /fast?q=x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"));
  const std::string reply = raw.read_all();  // returns only when the server closes
  EXPECT_NE(reply.find("\r\nConnection: close\r\n"), std::string::npos) << reply;
  EXPECT_EQ(reply.substr(reply.find("\r\n\r\n") + 4), "fast x");
}

TEST_F(PublicServerTest, Http10IsClosedAfterOneResponseUnlessItAsksForKeepAlive) {
  {
    RawConnection raw(port());
    ASSERT_TRUE(raw.send("GET /fast?q=a HTTP/1.0\r\n\r\n"));
    const std::string reply = raw.read_all();
    EXPECT_NE(reply.find("\r\nConnection: close\r\n"), std::string::npos) << reply;
    EXPECT_EQ(reply.substr(reply.find("\r\n\r\n") + 4), "fast a");
  }
  RawConnection raw(port());
  ASSERT_TRUE(raw.send("GET /fast?q=b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  const auto first = raw.read_reply();
  ASSERT_TRUE(first);
  EXPECT_TRUE(first->has("Connection: keep-alive")) << first->head;
  ASSERT_TRUE(raw.send("GET /fast?q=c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  const auto second = raw.read_reply();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->body, "fast c");
}

TEST_F(PublicServerTest, AClientExpecting100ContinueIsToldToSendItsBody) {
  RawConnection raw(port());
  ASSERT_TRUE(
      raw.send("POST /echo HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
               "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\n"));
  const auto go_on = raw.read_reply();
  ASSERT_TRUE(go_on);
  EXPECT_EQ(go_on->status(), 100);
  ASSERT_TRUE(raw.send("hello"));
  const auto reply = raw.read_reply();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status(), 201);
  EXPECT_EQ(json::parse(reply->body)["body"], "hello");
}

// ---- relay -------------------------------------------------------------------------------

TEST_F(PublicServerTest, ADeclinedPostReachesTheUpstreamAndItsAnswerComesBackWhole) {
  auto result = client().Post("/echo?kit=spring%20launch", {{"X-Forwarded-For", "6.6.6.6"}},
                              "{\"lead\": 1}", "application/json");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 201);
  EXPECT_EQ(result->get_header_value("X-Echo"), "yes");
  EXPECT_EQ(result->get_header_value("Content-Type"), "application/json");
  const json echo = json::parse(result->body);
  EXPECT_EQ(echo["method"], "POST");
  EXPECT_EQ(echo["path"], "/echo");
  EXPECT_EQ(echo["query"]["kit"], "spring launch");
  EXPECT_EQ(echo["body"], "{\"lead\": 1}");
  EXPECT_EQ(echo["forwarded_for"], "127.0.0.1") << "the client's own claim must not pass";
}

TEST_F(PublicServerTest, ALargePostBodyIsRelayedIntact) {
  std::string body(300 * 1024, 'x');
  for (std::size_t i = 0; i < body.size(); i += 1000) body[i] = static_cast<char>('a' + i % 26);
  auto result = client().Post("/echo", body, "text/plain");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 201);
  const auto echoed = json::parse(result->body)["body"].get<std::string>();
  EXPECT_EQ(echoed.size(), body.size());
  EXPECT_TRUE(echoed == body) << "the body changed on its way";
}

TEST_F(PublicServerTest, TheUpstreamsErrorsComeBackAsTheyAre) {
  auto missing = client().Get("/v1/nothing-here");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(json::parse(missing->body)["error"], "no such endpoint: /v1/nothing-here");
  auto health = client().Head("/healthz");  // the upstream's own, relayed
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->body, "");
}

TEST(PublicServerRelay, AnUpstreamThatIsDownGivesAJson502) {
  int closed_port = 0;
  {
    HttpServer gone("127.0.0.1:0", Routes([] { return true; }, registry(),
                                          [] { return std::vector<store::DeliveryCount>{}; }));
    closed_port = gone.port();
  }
  PublicServer server("127.0.0.1:0", {"127.0.0.1", closed_port}, {},
                      [](const Request&, Reply) { return false; });
  server.start();
  httplib::Client c("127.0.0.1", server.port());
  c.set_read_timeout(5s);
  auto result = c.Get("/v1/results");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 502);
  EXPECT_EQ(result->get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(json::parse(result->body)["error"].get<std::string>().rfind("upstream unavailable", 0),
            0u)
      << result->body;
}

TEST(PublicServerRelay, AnUpstreamThatTakesTooLongGivesAJson504) {
  Upstream upstream;
  PublicLimits limits;
  limits.upstream_timeout = 300ms;
  PublicServer server("127.0.0.1:0", upstream.address(), limits,
                      [](const Request&, Reply) { return false; });
  server.start();
  httplib::Client c("127.0.0.1", server.port());
  c.set_read_timeout(5s);
  auto result = c.Get("/slow/1");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 504);
  EXPECT_EQ(json::parse(result->body)["error"], "upstream did not answer within 300 ms");
  EXPECT_EQ(upstream.slow_waiting(), 1) << "the request reached the upstream";
}

TEST(PublicServerRelay, AFastHandlerThatNeverRepliesGivesAJson504AndALateReplyDoesNothing) {
  Upstream upstream;
  HeldReplies held;
  PublicLimits limits;
  limits.reply_timeout = 300ms;
  PublicServer server("127.0.0.1:0", upstream.address(), limits, fast_handler(held));
  server.start();
  RawConnection raw(server.port());
  ASSERT_TRUE(raw.send("GET /later HTTP/1.1\r\nHost: h\r\n\r\n"));
  const auto timed_out = raw.read_reply();
  ASSERT_TRUE(timed_out);
  EXPECT_EQ(timed_out->status(), 504);
  EXPECT_EQ(json::parse(timed_out->body)["error"], "no answer within 300 ms");
  held.take()(Response{200, "text/plain", "too late", {}});
  // The connection goes on with the next request; the late answer never reaches it.
  ASSERT_TRUE(raw.send("GET /fast?q=next HTTP/1.1\r\nHost: h\r\n\r\n"));
  const auto next = raw.read_reply();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->body, "fast next");
}

// ---- bad requests --------------------------------------------------------------------------

TEST_F(PublicServerTest, HeadersOverTheCapGet431AndTheConnectionCloses) {
  RawConnection raw(port());
  ASSERT_TRUE(
      raw.send("GET /fast HTTP/1.1\r\nHost: h\r\nX-Big: " + std::string(20'000, 'a') + "\r\n\r\n"));
  const std::string reply = raw.read_all();
  EXPECT_EQ(status_line(reply), "HTTP/1.1 431 Request Header Fields Too Large");
  EXPECT_NE(reply.find("request headers exceed 16384 bytes"), std::string::npos) << reply;
  EXPECT_NE(reply.find("\r\nConnection: close\r\n"), std::string::npos);
}

TEST_F(PublicServerTest, ABodyOverTheCapGets413BeforeItIsSent) {
  RawConnection raw(port());
  ASSERT_TRUE(raw.send("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 2097152\r\n\r\n"));
  const std::string reply = raw.read_all();
  EXPECT_EQ(status_line(reply), "HTTP/1.1 413 Payload Too Large");
  EXPECT_NE(reply.find("request body exceeds 1048576 bytes"), std::string::npos) << reply;
}

TEST_F(PublicServerTest, AChunkedBodyOverTheCapGets413) {
  RawConnection raw(port());
  std::string request = "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string chunk(64 * 1024, 'x');
  for (int i = 0; i < 20; ++i) request += "10000\r\n" + chunk + "\r\n";
  request += "0\r\n\r\n";
  raw.send(request);  // the server may stop reading before all of it is sent
  EXPECT_EQ(status_line(raw.read_all()), "HTTP/1.1 413 Payload Too Large");
}

TEST_F(PublicServerTest, AMalformedRequestGets400AndTheConnectionCloses) {
  RawConnection raw(port());
  ASSERT_TRUE(raw.send("GET /fast HTTP/1.1\r\nHost h\r\n\r\n"));
  const std::string reply = raw.read_all();
  EXPECT_EQ(status_line(reply), "HTTP/1.1 400 Bad Request");
  EXPECT_NE(reply.find("malformed request"), std::string::npos) << reply;
}

// ---- limits --------------------------------------------------------------------------------

PublicLimits short_limits() {
  PublicLimits limits;
  limits.header_timeout = 300ms;
  limits.keep_alive_timeout = 300ms;
  return limits;
}

TEST(PublicServerLimits, ASlowlorisClientIsDroppedAtTheHeaderTimeout) {
  Upstream upstream;
  PublicServer server("127.0.0.1:0", upstream.address(), short_limits(),
                      [](const Request&, Reply) { return false; });
  server.start();
  RawConnection slow(server.port());
  ASSERT_TRUE(slow.send("GET /healthz HTTP/1.1\r\nHost: h\r\n"));
  std::atomic<bool> done{false};
  std::atomic<bool> cut_off{false};
  std::thread trickle([&] {
    for (int i = 0; !done && slow.send("X-Slow-" + std::to_string(i) + ": 1\r\n"); ++i)
      std::this_thread::sleep_for(50ms);
    cut_off = true;
  });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(within(5s, [&] { return cut_off || slow.closed_by_server(); }));
  done = true;
  trickle.join();
  // Still sending every 50 ms, so only the head's deadline explains the close.
  EXPECT_GE(std::chrono::steady_clock::now() - start, 250ms);
}

TEST(PublicServerLimits, AnIdleKeepAliveConnectionIsClosedAfterItsTimeout) {
  Upstream upstream;
  HeldReplies held;
  PublicServer server("127.0.0.1:0", upstream.address(), short_limits(), fast_handler(held));
  server.start();
  RawConnection raw(server.port());
  ASSERT_TRUE(raw.send("GET /fast HTTP/1.1\r\nHost: h\r\n\r\n"));
  ASSERT_TRUE(raw.read_reply());
  EXPECT_FALSE(raw.closed_by_server());
  EXPECT_TRUE(within(5s, [&] { return raw.closed_by_server(); }));
}

TEST(PublicServerLimits, TheLastRequestAllowedOnAConnectionIsAnsweredWithClose) {
  Upstream upstream;
  HeldReplies held;
  PublicLimits limits;
  limits.keep_alive_max_requests = 2;
  PublicServer server("127.0.0.1:0", upstream.address(), limits, fast_handler(held));
  server.start();
  RawConnection raw(server.port());
  ASSERT_TRUE(
      raw.send("GET /fast HTTP/1.1\r\nHost: h\r\n\r\nGET /fast HTTP/1.1\r\nHost: h\r\n\r\n"));
  const auto first = raw.read_reply();
  ASSERT_TRUE(first);
  EXPECT_FALSE(first->has("Connection: close"));
  const auto second = raw.read_reply();
  ASSERT_TRUE(second);
  EXPECT_TRUE(second->has("Connection: close"));
  EXPECT_TRUE(within(5s, [&] { return raw.closed_by_server(); }));
}

TEST(PublicServerLimits, ConnectionsOverTheCapGet503AtOnceAndTheOthersAreStillServed) {
  Upstream upstream;
  HeldReplies held;
  PublicLimits limits;
  limits.max_connections = 4;
  limits.header_timeout = 60s;  // so only the cap can explain a close
  PublicServer server("127.0.0.1:0", upstream.address(), limits, fast_handler(held));
  server.start();
  std::vector<std::unique_ptr<RawConnection>> open;
  for (int i = 0; i < 4; ++i) open.push_back(std::make_unique<RawConnection>(server.port()));
  // The server counts a connection once it has accepted it: the first request on each proves it.
  for (auto& raw : open) {
    ASSERT_TRUE(raw->send("GET /fast HTTP/1.1\r\nHost: h\r\n\r\n"));
    ASSERT_TRUE(raw->read_reply());
  }
  const auto start = std::chrono::steady_clock::now();
  RawConnection extra(server.port());
  const std::string refused = extra.read_all();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  EXPECT_EQ(status_line(refused), "HTTP/1.1 503 Service Unavailable");

  ASSERT_TRUE(open.front()->send("GET /fast?q=still HTTP/1.1\r\nHost: h\r\n\r\n"));
  const auto reply = open.front()->read_reply();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->body, "fast still");
}

TEST(PublicServerLimits, AFastRequestAnswersWithinASecondBeside500IdleConnectionsAndASlowloris) {
#if defined(__SANITIZE_THREAD__)
  // As in HttpServerUnderLoad: a wall-clock bound measures ThreadSanitizer, not the server.
  GTEST_SKIP() << "a one-second bound is not meaningful under ThreadSanitizer";
#endif
  // 500 client sockets and 500 server sockets in one process.
  rlimit files{};
  ::getrlimit(RLIMIT_NOFILE, &files);
  if (files.rlim_cur < 2048 && files.rlim_max >= 2048) {
    files.rlim_cur = 2048;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  Upstream upstream;
  HeldReplies held;
  PublicServer server("127.0.0.1:0", upstream.address(), {}, fast_handler(held));  // defaults
  server.start();
  std::vector<std::unique_ptr<RawConnection>> idle;
  for (int i = 0; i < 500; ++i) {
    idle.push_back(std::make_unique<RawConnection>(server.port()));
    ASSERT_TRUE(idle.back()->connected()) << "connection " << i;
  }
  RawConnection slow(server.port());
  ASSERT_TRUE(slow.send("GET /fast HTTP/1.1\r\nHost: h\r\nX-Slow: 1\r\n"));
  for (int round = 0; round < 3; ++round) {
    const auto start = std::chrono::steady_clock::now();
    auto result = httplib::Client("127.0.0.1", server.port()).Get("/fast?q=probe");
    ASSERT_TRUE(result) << httplib::to_string(result.error());
    EXPECT_EQ(result->body, "fast probe");
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  }
  EXPECT_FALSE(idle.back()->closed_by_server()) << "under the cap, nobody is evicted";
}

// ---- life cycle ----------------------------------------------------------------------------

TEST(PublicServerLifeCycle, StopClosesOpenConnectionsAndALateReplyDoesNothing) {
  Upstream upstream;
  HeldReplies held;
  auto server = std::make_unique<PublicServer>("127.0.0.1:0", upstream.address(), PublicLimits{},
                                               fast_handler(held));
  server->start();
  RawConnection idle(server->port());
  RawConnection waiting(server->port());
  ASSERT_TRUE(waiting.send("GET /later HTTP/1.1\r\nHost: h\r\n\r\n"));
  ASSERT_TRUE(within(5s, [&] { return held.size() == 1; }));
  const auto start = std::chrono::steady_clock::now();
  server->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  EXPECT_TRUE(idle.closed_by_server());
  EXPECT_TRUE(waiting.closed_by_server());
  held.take()(Response{200, "text/plain", "too late", {}});  // after stop
  server->stop();                                            // idempotent
  server.reset();
}

TEST(PublicServerLifeCycle, AReplyOutlivingTheServerDoesNothing) {
  Upstream upstream;
  HeldReplies held;
  // Shared with the handler the server keeps: its count tells whether the server's state is gone.
  auto handler_alive = std::make_shared<int>(0);
  auto server = std::make_unique<PublicServer>(
      "127.0.0.1:0", upstream.address(), PublicLimits{},
      [handler_alive, fast = fast_handler(held)](const Request& request, Reply reply) {
        return fast(request, std::move(reply));
      });
  server->start();
  RawConnection waiting(server->port());
  ASSERT_TRUE(waiting.send("GET /later HTTP/1.1\r\nHost: h\r\n\r\n"));
  ASSERT_TRUE(within(5s, [&] { return held.size() == 1; }));
  Reply reply = held.take();
  server.reset();
  reply(Response{200, "text/plain", "too late", {}});
  EXPECT_TRUE(waiting.closed_by_server());
  reply = nullptr;
  EXPECT_EQ(handler_alive.use_count(), 1)
      << "the server's state is freed with the last Reply, not kept by what a late one queued";
}

TEST(PublicServerLifeCycle, AMalformedListenAddressIsAnInputErrorNamingTheKey) {
  try {
    PublicServer server("127.0.0.1", {"127.0.0.1", 1}, {},
                        [](const Request&, Reply) { return false; });
    FAIL() << "accepted an address without a port";
  } catch (const InputError& e) {
    EXPECT_EQ(e.where(), "http.public_listen");
    EXPECT_NE(std::string(e.what()).find("has no port"), std::string::npos) << e.what();
  }
}

TEST(PublicServerLifeCycle, ABusyPortFailsAtConstructionNamingTheKey) {
  PublicServer first("127.0.0.1:0", {"127.0.0.1", 1}, {},
                     [](const Request&, Reply) { return false; });
  try {
    PublicServer second("127.0.0.1:" + std::to_string(first.port()), {"127.0.0.1", 1}, {},
                        [](const Request&, Reply) { return false; });
    FAIL() << "bound a port already listened on";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("http.public_listen: cannot listen on 127.0.0.1:", 0), 0u)
        << e.what();
  }
}

}  // namespace
}  // namespace channeld::api
