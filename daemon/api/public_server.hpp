// api/public_server: the event-driven front of channeld's public port. It serves the hot public
// paths (clicks, opens, health) itself, through a FastHandler the app gives it, and relays every
// request the handler declines to the cpp-httplib HttpServer on a loopback port, so one public
// port serves everything while the hot paths never pay for a thread per connection.
//
// HTTP/1.1 parsing is Boost.Beast's (Boost's own parser, header-only, already a dependency
// through Boost), over Boost.Asio sockets.
//
// Threads: one I/O thread of its own runs every connection, every relay to the upstream and
// every FastHandler call; all of the server's state belongs to it. A Reply may be called from
// any thread: it posts the response to the I/O thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "api/http_server.hpp"
#include "api/message.hpp"

namespace channeld::api {

// Hands a response back to the connection that asked: call exactly once, from any thread. A
// Reply for a connection that has closed meanwhile (client gone, server stopped) does nothing.
using Reply = std::function<void(Response)>;

// Serves a request itself (returns true, and calls reply now or later, from any thread) or
// declines it (returns false, reply untouched): declined requests are relayed upstream. Runs on
// the server's I/O thread, so it must not block: anything that waits goes elsewhere and replies.
// The Request is filled as HttpServer fills it (method, decoded path, query with the fields of a
// form-urlencoded body, lower-cased headers, body) except `form`: multipart bodies are not
// parsed here, so a handler that needs them declines and lets HttpServer answer. A HEAD request
// reaches the handler as "HEAD": answer it as GET, and the server sends the head alone.
using FastHandler = std::function<bool(const Request&, Reply)>;

// What one client may hold. Connections cost a socket and a few KB here, not a thread, so the cap
// is higher than HttpLimits'; past it a newcomer gets a 503 and is closed at once.
struct PublicLimits {
  std::size_t max_connections = 4096;
  // A request's head (request line and headers) must arrive in full within this time of the
  // connection opening; its body within body_timeout of the head.
  std::chrono::milliseconds header_timeout{5'000};
  std::chrono::milliseconds body_timeout{10'000};
  // After a response, the next request's head must arrive in full within this time, or the
  // connection is closed. After this many requests the connection is closed.
  std::chrono::milliseconds keep_alive_timeout{5'000};
  std::size_t keep_alive_max_requests = 1000;
  // Request line and headers beyond this get 431; a body beyond max_body_bytes gets 413.
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_body_bytes = HttpServer::kMaxBodyBytes;
  // A relayed request must be answered in full by the upstream within this time, or 504.
  std::chrono::milliseconds upstream_timeout{30'000};
  // A FastHandler that took a request must call its Reply within this time, or the client gets
  // 504 (and the late Reply does nothing).
  std::chrono::milliseconds reply_timeout{30'000};
  // The response to one request must be written within this time, or the connection is closed.
  std::chrono::milliseconds write_timeout{10'000};
};

// HTTP/1.1 and 1.0 with bounded keep-alive; one request at a time per connection, so answers go
// out in the order of the requests. Every response carries Content-Length (but a 204 or 304, which
// has no body) and the server's own Connection header; TCP_NODELAY is set on every socket.
class PublicServer {
 public:
  // Binds now, like HttpServer: InputError for a malformed address, std::runtime_error naming
  // http.public_listen if the bind fails. Port 0 binds an ephemeral port; port() tells which.
  // `upstream` is where declined requests go (the HttpServer: 127.0.0.1:<its port>); its host is
  // resolved now.
  PublicServer(const std::string& listen, ListenAddress upstream, PublicLimits limits,
               FastHandler fast);
  ~PublicServer();  // stop()
  PublicServer(const PublicServer&) = delete;
  PublicServer& operator=(const PublicServer&) = delete;

  int port() const;

  // Starts serving on an I/O thread of its own. Call once.
  void start();
  // Closes the listener and every connection (a relay in flight is abandoned, a Reply still to
  // come does nothing) and joins the I/O thread. Idempotent; safe without start().
  void stop();

  class Impl;  // the I/O thread's state, in public_server.cpp

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace channeld::api
