#include "api/http_server.hpp"

#include <httplib.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <list>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <variant>

#include "model/model.hpp"

namespace channeld::api {

// ---- routes -------------------------------------------------------------------------------

namespace {

constexpr std::string_view kJson = "application/json";
constexpr std::string_view kPrometheusText = "text/plain; version=0.0.4; charset=utf-8";
constexpr std::string_view kReadOnlyMethods = "GET, HEAD";

Response text(int status, std::string body) {
  return Response{status, "text/plain; charset=utf-8", std::move(body), {}};
}

}  // namespace

Routes::Routes(Readiness ready, metrics::Registry& metrics, DeliveryCounts delivery_counts)
    : ready_(std::move(ready)), metrics_(metrics), delivery_counts_(std::move(delivery_counts)) {}

void Routes::add(std::vector<Route> table) {
  for (auto& route : table) routes_.push_back(std::move(route));
}

Response Routes::dispatch(const Route& route, const Request& request) const {
  if (request.body.size() > route.max_body) {
    return json_error(
        413, "request body exceeds " + std::to_string(route.max_body) + " bytes for " + route.path);
  }
  std::optional<Principal> principal;
  if (!route.roles.empty()) {
    auto who = authenticate(request, tokens_);
    if (auto* refused = std::get_if<Response>(&who)) return std::move(*refused);
    principal = std::get<Principal>(std::move(who));
    if (auto refused = require(*principal, route.roles)) return std::move(*refused);
  }
  try {
    return route.handler(request, principal ? &*principal : nullptr);
  } catch (...) {
    return failure_response(std::current_exception());
  }
}

Response Routes::handle(const Request& request) const {
  std::vector<const Route*> matching;
  for (const auto& route : routes_) {
    const bool prefix = !route.path.empty() && route.path.back() == '/';
    if (prefix ? request.path.rfind(route.path, 0) == 0 && request.path.size() > route.path.size()
               : request.path == route.path) {
      matching.push_back(&route);
    }
  }
  if (!matching.empty()) {
    const std::string method = request.method == "HEAD" ? "GET" : request.method;
    std::string allow;
    for (const Route* route : matching) {
      if (route->method == method) return dispatch(*route, request);
      allow += (allow.empty() ? "" : ", ") + route->method;
      if (route->method == "GET") allow += ", HEAD";
    }
    Response refused = json_error(
        405, "method " + request.method + " is not allowed on " + request.path + "; use " + allow);
    refused.headers.emplace("Allow", allow);
    return refused;
  }

  using Handler = Response (*)(const Routes&);
  static const std::map<std::string, Handler, std::less<>> kReadOnly{
      {"/healthz", [](const Routes&) { return text(200, "ok"); }},
      {"/readyz", [](const Routes& r) { return r.readyz(); }},
      {"/metrics",
       [](const Routes& r) {
         return Response{200, std::string(kPrometheusText), r.metrics_.render(), {}};
       }},
      {"/v1/deliveries", [](const Routes& r) { return r.deliveries(); }},
  };

  const auto route = kReadOnly.find(request.path);
  if (route == kReadOnly.end()) return json_error(404, "no such endpoint: " + request.path);
  if (request.method != "GET" && request.method != "HEAD") {
    Response refused = json_error(
        405, "method " + request.method + " is not allowed on " + request.path + "; use GET");
    refused.headers.emplace("Allow", kReadOnlyMethods);
    return refused;
  }
  if (request.path.rfind("/v1/", 0) == 0) {
    // Counts span every partner: an operator's and finance's view, never a partner's.
    auto who = authenticate(request, tokens_);
    if (auto* refused = std::get_if<Response>(&who)) return std::move(*refused);
    if (auto refused = require(std::get<Principal>(who), {Role::admin, Role::finance}))
      return std::move(*refused);
  }
  // Callbacks reach the database; whatever they throw is this request's failure, never the
  // worker thread's.
  try {
    return route->second(*this);
  } catch (...) {
    return failure_response(std::current_exception());
  }
}

Response Routes::readyz() const {
  std::string reason = "the database is unreachable or its migrations are not applied";
  try {
    if (ready_()) return text(200, "ready");
  } catch (...) {
    reason = describe(std::current_exception());
  }
  return json_error(503, "not ready: " + reason);
}

Response Routes::deliveries() const {
  std::vector<store::DeliveryCount> counts;
  try {
    counts = delivery_counts_();
  } catch (...) {
    Response unavailable =
        failure_response(std::current_exception(), "delivery counts unavailable");
    unavailable.status = 503;
    return unavailable;
  }
  std::sort(counts.begin(), counts.end(), [](const auto& a, const auto& b) {
    return std::tie(a.kit_id, a.partner_id, a.state) < std::tie(b.kit_id, b.partner_id, b.state);
  });

  // ordered_json keeps "kit_id" and "partner_id" ahead of the counts, which follow by state
  // name. A state with no messages is absent rather than 0: the store decides which exist.
  nlohmann::ordered_json kits = nlohmann::ordered_json::array();
  for (const auto& row : counts) {
    if (kits.empty() || kits.back()["kit_id"] != row.kit_id) {
      kits.push_back({{"kit_id", row.kit_id}, {"partners", nlohmann::ordered_json::array()}});
    }
    auto& partners = kits.back()["partners"];
    if (partners.empty() || partners.back()["partner_id"] != row.partner_id) {
      partners.push_back({{"partner_id", row.partner_id}});
    }
    partners.back()[row.state] = partners.back().value(row.state, std::int64_t{0}) + row.count;
  }
  return Response{200, std::string(kJson), nlohmann::ordered_json{{"kits", kits}}.dump(), {}};
}

// ---- listen address -----------------------------------------------------------------------

ListenAddress parse_listen(std::string_view text) {
  const auto bad = [&](const std::string& why) {
    return InputError("http.listen",
                      "\"" + std::string(text) + "\" " + why +
                          " (expected host:port, e.g. 127.0.0.1:8025 or [::1]:8025)");
  };
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) throw bad("has no port");
  std::string_view host = text.substr(0, colon);
  const std::string_view port_text = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    throw bad("has an IPv6 address without brackets");
  }
  if (host.empty()) throw bad("has no host");

  int port = -1;
  const auto [end, error] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || error != std::errc{} || end != port_text.data() + port_text.size() ||
      port < 0 || port > 65535) {
    throw bad("has a port that is not a number from 0 to 65535");
  }
  return ListenAddress{std::string(host), port};
}

// ---- connections ------------------------------------------------------------------------

// httplib 0.11 serves connections from a fixed pool of worker threads, each connection holding
// its worker until the client goes away or a read times out: a few hundred idle connections
// (a load balancer, a port scanner) starve /healthz, and a client that trickles its headers a
// byte at a time holds a worker for as long as it likes. So HttpServer gives httplib a task
// queue that runs each connection on a thread of its own (Connections), and serves the
// connection itself (Listener::process_and_close_socket) through a stream with deadlines,
// calling httplib only to parse and answer each request.

namespace {

using Clock = std::chrono::steady_clock;

// Connections the accept loop must refuse outright (a thread could not be had): served on the
// accept thread itself, where process_and_close_socket only answers 503 and closes.
thread_local bool t_refuse_inline = false;

int poll_budget(Clock::time_point deadline, std::chrono::milliseconds cap) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp(left, std::chrono::milliseconds{0}, cap).count());
}

// Waits until `sock` is ready for `events` or `deadline` passes; a closed or reset socket
// counts as ready (the next read or write reports it).
bool wait_ready(int sock, short events, Clock::time_point deadline, std::chrono::milliseconds cap) {
  for (;;) {
    const int budget = poll_budget(deadline, cap);
    if (budget <= 0) return false;
    pollfd p{sock, events, 0};
    const int n = ::poll(&p, 1, budget);
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

void address_of(int sock, bool peer, std::string& ip, int& port) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  auto* raw = reinterpret_cast<sockaddr*>(&address);
  if ((peer ? ::getpeername(sock, raw, &length) : ::getsockname(sock, raw, &length)) != 0) return;
  char host[NI_MAXHOST];
  char service[NI_MAXSERV];
  if (::getnameinfo(raw, length, host, sizeof host, service, sizeof service,
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
    ip = host;
    port = std::atoi(service);
  }
}

// One connection's socket as httplib sees it. Every read and write waits at most io_timeout
// for progress and never past the current deadline, which the serving loop moves per request.
// Reads are buffered: httplib reads request lines a byte at a time.
class DeadlineStream final : public httplib::Stream {
 public:
  DeadlineStream(int sock, std::chrono::milliseconds io_timeout)
      : sock_(sock), io_timeout_(io_timeout) {}

  void set_deadline(Clock::time_point deadline) { deadline_ = deadline; }
  // True once a request's first bytes (or the client's close) arrived within `wait`.
  bool wait_for_request(std::chrono::milliseconds wait) const {
    return buffered() > 0 || wait_ready(sock_, POLLIN, Clock::now() + wait, wait);
  }

  bool is_readable() const override {
    return buffered() > 0 || wait_ready(sock_, POLLIN, deadline_, io_timeout_);
  }
  bool is_writable() const override { return wait_ready(sock_, POLLOUT, deadline_, io_timeout_); }

  ssize_t read(char* ptr, size_t size) override {
    if (buffered() == 0) {
      if (!is_readable()) return -1;
      ssize_t n;
      do {
        n = ::recv(sock_, buffer_, sizeof buffer_, 0);
      } while (n < 0 && errno == EINTR);
      if (n <= 0) return n;
      begin_ = 0;
      end_ = static_cast<std::size_t>(n);
    }
    const std::size_t n = std::min(size, buffered());
    std::memcpy(ptr, buffer_ + begin_, n);
    begin_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    ssize_t n;
    do {
      n = ::send(sock_, ptr, size, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    address_of(sock_, true, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    address_of(sock_, false, ip, port);
  }
  socket_t socket() const override { return sock_; }

 private:
  std::size_t buffered() const { return end_ - begin_; }

  int sock_;
  std::chrono::milliseconds io_timeout_;
  Clock::time_point deadline_ = Clock::now();
  char buffer_[4096];
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

// Best effort, never blocking: the client learns why before the close.
void refuse(int sock) {
  static constexpr std::string_view kBusy =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
      "Content-Length: 34\r\nConnection: close\r\n\r\n{\"error\": \"too many connections\"}\n";
  [[maybe_unused]] const ssize_t sent =
      ::send(sock, kBusy.data(), kBusy.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
}

}  // namespace

// The connections being served and their threads. Admission happens on the connection's own
// thread; eviction is a shutdown() of another connection's socket, through a duplicate
// descriptor the table owns, so a descriptor number reused after a close is never touched.
class HttpServer::Connections {
 public:
  struct Entry {
    int watch = -1;  // dup() of the connection's socket, for shutdown() only
    Clock::time_point waiting_since;
    bool in_handler = false;
    bool evicted = false;
  };

  // What httplib's accept loop hands each accepted connection to.
  class Queue final : public httplib::TaskQueue {
   public:
    explicit Queue(Connections& connections) : connections_(connections) {}
    void enqueue(std::function<void()> fn) override { connections_.spawn(std::move(fn)); }
    void shutdown() override { connections_.shutdown(); }

   private:
    Connections& connections_;
  };

  explicit Connections(const HttpLimits& limits) : limits_(limits) {}

  // On the accept thread: runs `serve` on a thread of its own, or inline (refusing the
  // connection) if even the refusals have used up their threads.
  void spawn(std::function<void()> serve) {
    std::unique_lock lock(mutex_);
    join_finished();
    if (threads_.size() >= 2 * limits_.max_connections) {
      lock.unlock();
      t_refuse_inline = true;
      serve();
      t_refuse_inline = false;
      return;
    }
    std::thread thread([this, serve = std::move(serve)] {
      try {
        serve();
      } catch (...) {
        // A request's failure ends its connection; process_and_close_socket closes the socket.
      }
      const std::lock_guard done(mutex_);
      finished_.push_back(std::this_thread::get_id());
      changed_.notify_all();
    });
    threads_.emplace(thread.get_id(), std::move(thread));
  }

  // On the connection's thread. Makes room by evicting the connection that has waited longest
  // for its client; nullptr (refuse) if all are inside handlers or the server is stopping.
  Entry* admit(int sock) {
    const std::lock_guard lock(mutex_);
    if (stopping_) return nullptr;
    std::size_t live = 0;
    Entry* oldest = nullptr;
    for (auto& e : entries_) {
      if (e.evicted) continue;
      ++live;
      if (!e.in_handler && (oldest == nullptr || e.waiting_since < oldest->waiting_since))
        oldest = &e;
    }
    if (live >= limits_.max_connections) {
      if (oldest == nullptr) return nullptr;
      evict(*oldest);
    }
    Entry& entry = entries_.emplace_back();
    entry.watch = ::dup(sock);
    entry.waiting_since = Clock::now();
    return &entry;
  }

  void leave(Entry* entry) {
    const std::lock_guard lock(mutex_);
    if (entry->watch >= 0) ::close(entry->watch);
    entries_.remove_if([entry](const Entry& e) { return &e == entry; });
  }

  void set_in_handler(Entry* entry, bool in_handler) {
    const std::lock_guard lock(mutex_);
    entry->in_handler = in_handler;
    entry->waiting_since = Clock::now();
  }

  // The accept loop ended: refuse newcomers, close every connection waiting for its client,
  // let handlers finish, and join every thread.
  void shutdown() {
    std::unique_lock lock(mutex_);
    stopping_ = true;
    for (auto& e : entries_)
      if (!e.in_handler) evict(e);
    changed_.wait(lock, [this] { return finished_.size() == threads_.size(); });
    join_finished();
  }

  // A connection finishing its current request checks this before waiting for another.
  bool stopping() {
    const std::lock_guard lock(mutex_);
    return stopping_;
  }

 private:
  void evict(Entry& e) {
    e.evicted = true;
    if (e.watch >= 0) ::shutdown(e.watch, SHUT_RDWR);
  }

  // REQUIRES: mutex_ held. A finished thread has only its return left, so the join is short.
  void join_finished() {
    for (const auto id : finished_) {
      auto thread = threads_.find(id);
      if (thread == threads_.end()) continue;
      thread->second.join();
      threads_.erase(thread);
    }
    finished_.clear();
  }

  const HttpLimits limits_;
  std::mutex mutex_;  // guards everything below
  std::condition_variable changed_;
  std::list<Entry> entries_;  // a list: Entry pointers stay valid while others come and go
  std::map<std::thread::id, std::thread> threads_;
  std::vector<std::thread::id> finished_;
  bool stopping_ = false;
};

// ---- server -------------------------------------------------------------------------------

// httplib::Server::stop() does nothing until listen_after_bind() has marked the server running,
// and the destructor never closes a socket that was bound but not served. Closing the listening
// socket ourselves covers both: the accept loop checks the socket before each accept, and
// shutdown() wakes an accept already blocked.
class HttpServer::Listener : public httplib::Server {
 public:
  explicit Listener(const HttpLimits& limits) : limits_(limits), connections_(limits) {
    new_task_queue = [this] { return new Connections::Queue(connections_); };
    // Only for the Keep-Alive header httplib writes: the serving loop below enforces both.
    set_keep_alive_timeout(std::max<time_t>(
        1, std::chrono::duration_cast<std::chrono::seconds>(limits.keep_alive_timeout).count()));
    set_keep_alive_max_count(limits.keep_alive_max_requests);
  }

  // httplib listens with a backlog of 5: a burst of connections (a mail client opening tracking
  // pixels, many probes at once) overflows it and each extra client waits a second for its SYN
  // to be retransmitted. Linux takes a second listen() on a listening socket as a new backlog.
  bool widen_backlog() { return ::listen(svr_sock_, SOMAXCONN) == 0; }

  void close_listening_socket() {
    const socket_t sock = svr_sock_.exchange(INVALID_SOCKET);
    if (sock != INVALID_SOCKET) {
      ::shutdown(sock, SHUT_RDWR);
      ::close(sock);
    }
  }

  // Around every call into Routes, on the connection's thread: a connection inside a handler
  // is never evicted, and its response gets a fresh deadline.
  static void handler_started() {
    if (t_serving.entry != nullptr)
      t_serving.owner->connections_.set_in_handler(t_serving.entry, true);
  }
  static void handler_finished() {
    if (t_serving.entry == nullptr) return;
    t_serving.owner->connections_.set_in_handler(t_serving.entry, false);
    t_serving.stream->set_deadline(Clock::now() + t_serving.owner->limits_.request_deadline);
  }

 private:
  struct Serving {
    Listener* owner = nullptr;
    Connections::Entry* entry = nullptr;
    DeadlineStream* stream = nullptr;
  };
  static thread_local Serving t_serving;

  // Replaces httplib's keep-alive loop (which waits without deadlines) with one that bounds
  // each request in time; httplib still parses and answers each request.
  bool process_and_close_socket(socket_t sock) override {
    Connections::Entry* entry = t_refuse_inline ? nullptr : connections_.admit(sock);
    if (entry == nullptr) {
      refuse(sock);
      return false;
    }
    // httplib writes a response's head and body in separate writes: with Nagle's algorithm the
    // body waits for the client's delayed ACK of the head, 40 ms on Linux, on every keep-alive
    // request (bench/click.sh measured /healthz at a 44 ms median before this).
    const int on = 1;
    ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    DeadlineStream stream(sock, limits_.io_timeout);
    t_serving = Serving{this, entry, &stream};
    bool ok = true;
    for (std::size_t served = 0; served < limits_.keep_alive_max_requests; ++served) {
      if (svr_sock_ == INVALID_SOCKET || connections_.stopping()) break;
      if (!stream.wait_for_request(served == 0 ? limits_.request_deadline
                                               : limits_.keep_alive_timeout))
        break;
      stream.set_deadline(Clock::now() + limits_.request_deadline);
      bool closed = false;
      const bool last = served + 1 == limits_.keep_alive_max_requests;
      ok = process_request(stream, last, closed, nullptr);
      if (!ok || closed) break;
    }
    t_serving = Serving{};
    connections_.leave(entry);
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
    return ok;
  }

  const HttpLimits limits_;
  Connections connections_;
};

thread_local HttpServer::Listener::Serving HttpServer::Listener::t_serving;

namespace {

Request from_httplib(const httplib::Request& in) {
  Request out;
  out.method = in.method;
  out.path = in.path;
  for (const auto& [name, value] : in.params) out.query.emplace(name, value);
  for (const auto& [name, value] : in.headers) {
    std::string lower = name;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    out.headers.emplace(std::move(lower), value);
  }
  out.body = in.body;
  for (const auto& [name, field] : in.files) out.form.emplace(name, field.content);
  return out;
}

void to_httplib(const Response& in, httplib::Response& out) {
  out.status = in.status;
  for (const auto& [name, value] : in.headers) out.set_header(name, value);
  out.set_content(in.body, in.content_type.c_str());
}

// Errors httplib raises before a request reaches Routes (oversized or malformed requests) get
// the same JSON shape as the rest of the API.
std::string transport_error(int status) {
  switch (status) {
    case 413:
      return "request body exceeds " + std::to_string(HttpServer::kMaxBodyBytes) + " bytes";
    case 400:
      return "malformed request";
    case 414:
      return "request target too long";
    default:
      return "request failed with status " + std::to_string(status);
  }
}

}  // namespace

HttpServer::HttpServer(const std::string& listen, Routes routes, HttpLimits limits)
    : routes_(std::move(routes)), server_(std::make_unique<Listener>(limits)) {
  const ListenAddress address = parse_listen(listen);

  server_->set_payload_max_length(kMaxBodyBytes);
  // httplib's default sets SO_REUSEPORT, which lets a second daemon bind the same address and
  // silently take half the requests. SO_REUSEADDR alone still allows a quick restart past
  // TIME_WAIT, while a live listener makes the bind fail.
  server_->set_socket_options([](socket_t sock) {
    const int on = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  });

  // Routing is Routes' job: httplib hands every path and method to it, so 404 and 405 are
  // decided in one place. Bodies are read (up to the limit) before the handler runs.
  const httplib::Server::Handler dispatch = [this](const httplib::Request& req,
                                                   httplib::Response& res) {
    Listener::handler_started();
    try {
      to_httplib(routes_.handle(from_httplib(req)), res);
    } catch (...) {
      Listener::handler_finished();
      throw;
    }
    Listener::handler_finished();
  };
  const std::string any_path = ".*";
  server_->Get(any_path, dispatch);
  server_->Post(any_path, dispatch);
  server_->Put(any_path, dispatch);
  server_->Patch(any_path, dispatch);
  server_->Delete(any_path, dispatch);
  server_->Options(any_path, dispatch);
  // A request with neither Content-Length nor Transfer-Encoding has no body (RFC 9112, 6.3),
  // but httplib 0.11 reads a POST like that until the peer closes, so `curl -X POST` would hang
  // for the read timeout. Such requests are answered here, before httplib tries to read.
  server_->set_pre_routing_handler([dispatch](const httplib::Request& req, httplib::Response& res) {
    if (req.has_header("Content-Length") || req.has_header("Transfer-Encoding")) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    dispatch(req, res);
    return httplib::Server::HandlerResponse::Handled;
  });
  server_->set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;  // Routes'
        to_httplib(json_error(res.status, transport_error(res.status)), res);
        return httplib::Server::HandlerResponse::Handled;
      }));
  server_->set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr error) {
        to_httplib(failure_response(error), res);
      });

  errno = 0;
  if (address.port == 0) {
    port_ = server_->bind_to_any_port(address.host);
  } else {
    port_ = server_->bind_to_port(address.host, address.port) ? address.port : -1;
  }
  if (port_ < 0) {
    // httplib reports only failure; errno still holds the bind() error when there was one
    // (getaddrinfo failures leave it at 0).
    const int error = errno;
    throw std::runtime_error("http.listen: cannot listen on " + listen + ": " +
                             (error != 0 ? std::strerror(error) : "host not found"));
  }
  if (!server_->widen_backlog()) {
    const int error = errno;
    server_->close_listening_socket();  // no destructor runs for a throwing constructor
    throw std::runtime_error("http.listen: cannot listen on " + listen + ": " +
                             std::strerror(error));
  }
}

HttpServer::~HttpServer() {
  stop();
}

void HttpServer::start() {
  if (listener_.joinable()) throw std::logic_error("HttpServer::start called twice");
  // listen_after_bind() returns when stop() closes the socket; it then drains the worker pool,
  // so the join in stop() also waits for requests in flight.
  listener_ = std::thread([this] { server_->listen_after_bind(); });
}

void HttpServer::stop() {
  server_->close_listening_socket();
  if (listener_.joinable()) listener_.join();
}

}  // namespace channeld::api
