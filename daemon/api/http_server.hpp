// api: channeld's HTTP endpoints on `http.listen`. Two pieces, kept apart as in the Asio HTTP
// server example: `Routes` is a plain function from Request to Response (routing, status codes,
// JSON bodies) that never touches a socket, and `HttpServer` moves requests between cpp-httplib
// and Routes (sockets, timeouts, body limits, worker threads).
//
// It may call metrics and the callbacks it is given; it never calls the database itself: the app
// passes callbacks that do, and decides which thread pays for them.
//
// Threads: HttpServer runs httplib's accept loop on a thread of its own and serves each
// connection on a thread of its own, up to HttpLimits::max_connections, so a slow client or a
// slow database callback never runs on the Asio I/O thread that drives SMTP, and idle clients
// cannot starve the others (see HttpLimits). Routes is called concurrently from those threads:
// it holds no mutable state, and its callbacks must be thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "api/auth.hpp"
#include "api/message.hpp"
#include "metrics/metrics.hpp"
#include "store/store.hpp"

namespace channeld::api {

// One endpoint beyond the built-in ones (tracking, unsubscribe, results, leads, MDF claims and
// reports). Handlers run on HTTP worker threads, concurrently: they must be thread-safe.
struct Route {
  std::string method;  // "GET" (also answers HEAD) or "POST"
  std::string path;    // exact, or a prefix when it ends in '/' ("/u/" matches "/u/<token>")
  // Empty: no token needed. Otherwise the request needs a token with one of these roles (401
  // without one, 403 with another role) and the handler gets its Principal.
  std::vector<Role> roles;
  std::function<Response(const Request&, const Principal*)> handler;
  std::size_t max_body = 64 * 1024;  // larger bodies get 413 before the handler runs
};

class Routes {
 public:
  // True when the database is reachable and its schema is current. May block on the database;
  // a throw counts as not ready, with the exception's text as the reason.
  using Readiness = std::function<bool()>;
  // Delivery counts per (kit, partner, state), straight from the store.
  using DeliveryCounts = std::function<std::vector<store::DeliveryCount>()>;

  Routes(Readiness ready, metrics::Registry& metrics, DeliveryCounts delivery_counts);

  // Adds endpoints, matched before the built-in ones. Call before the server starts.
  void add(std::vector<Route> table);
  // How API tokens are checked. Without it every endpoint that needs a token answers 401.
  void set_token_lookup(TokenLookup lookup) { tokens_ = std::move(lookup); }

  // GET (or HEAD) /healthz, /readyz, /metrics and /v1/deliveries (admin or finance token), then
  // the added routes; anything else is a JSON 404, or 405 with an Allow header for a known
  // path and another method.
  Response handle(const Request& request) const;

 private:
  Response readyz() const;
  Response deliveries() const;
  Response dispatch(const Route& route, const Request& request) const;

  Readiness ready_;
  metrics::Registry& metrics_;
  DeliveryCounts delivery_counts_;
  TokenLookup tokens_;
  std::vector<Route> routes_;
};

// `http.listen` split into its parts: "127.0.0.1:8025", "[::1]:8025", "localhost:0".
struct ListenAddress {
  std::string host;
  int port = 0;
};
// Throws InputError naming http.listen unless `text` is host:port with a port in 0..65535.
ListenAddress parse_listen(std::string_view text);

// What one client may hold, so that idle connections, slowloris clients and connection floods
// cannot keep /healthz and /metrics from answering.
struct HttpLimits {
  // Connections served at once, each on its own thread. When one more arrives, the connection
  // that has waited longest for its client (idle keep-alive, or a request still trickling in)
  // is closed to make room; if every connection is inside a handler, the newcomer gets a 503
  // and is closed at once.
  std::size_t max_connections = 256;
  // A request (line, headers and body) must arrive in full within this time of the connection
  // opening or of the previous response; the response must be written within it too.
  std::chrono::milliseconds request_deadline{10'000};
  // Any single read or write that makes no progress for this long ends the connection.
  std::chrono::milliseconds io_timeout{5'000};
  // An idle keep-alive connection is closed after this long, or after this many requests.
  std::chrono::milliseconds keep_alive_timeout{5'000};
  std::size_t keep_alive_max_requests = 100;
};

class HttpServer {
 public:
  static constexpr std::size_t kMaxBodyBytes = 1024 * 1024;  // larger bodies get 413

  // Binds now, so a bad or busy address fails at start-up rather than on a background thread:
  // InputError for a malformed address, std::runtime_error naming http.listen if the bind fails.
  // Port 0 binds an ephemeral port; port() tells which.
  HttpServer(const std::string& listen, Routes routes, HttpLimits limits = {});
  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }

  // Starts accepting on a thread of its own. Call once.
  void start();
  // Closes the listening socket and every connection waiting for its client, lets requests in
  // flight finish, and joins. Idempotent; safe without start().
  void stop();

 private:
  class Listener;     // httplib::Server, serving each connection under HttpLimits
  class Connections;  // the connections being served, their threads, and admission

  Routes routes_;
  std::unique_ptr<Listener> server_;
  int port_ = 0;
  std::thread listener_;  // runs httplib's accept loop
};

}  // namespace channeld::api
