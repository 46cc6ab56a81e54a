#include "api/http_server.hpp"

#include <httplib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <exception>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <tuple>

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

std::string describe(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown error";
  }
}

}  // namespace

Response json_error(int status, std::string_view message) {
  return Response{status, std::string(kJson), nlohmann::json{{"error", message}}.dump(), {}};
}

Routes::Routes(Readiness ready, metrics::Registry& metrics, DeliveryCounts delivery_counts)
    : ready_(std::move(ready)), metrics_(metrics), delivery_counts_(std::move(delivery_counts)) {}

Response Routes::handle(const Request& request) const {
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
  // Callbacks reach the database; whatever they throw is this request's failure, never the
  // worker thread's.
  try {
    return route->second(*this);
  } catch (...) {
    return json_error(500, describe(std::current_exception()));
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
    return json_error(503, "delivery counts unavailable: " + describe(std::current_exception()));
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

// ---- server -------------------------------------------------------------------------------

// httplib::Server::stop() does nothing until listen_after_bind() has marked the server running,
// and the destructor never closes a socket that was bound but not served. Closing the listening
// socket ourselves covers both: the accept loop checks the socket before each accept, and
// shutdown() wakes an accept already blocked.
class HttpServer::Listener : public httplib::Server {
 public:
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
};

namespace {

// Prometheus and probes make a handful of short requests; eight workers serve them while a
// slow database callback holds one, and bound what a flood of connections can cost.
constexpr std::size_t kWorkerThreads = 8;
constexpr std::chrono::seconds kReadTimeout{10};
constexpr std::chrono::seconds kWriteTimeout{10};
constexpr std::chrono::seconds kKeepAliveTimeout{5};
constexpr std::size_t kKeepAliveMaxRequests = 100;

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

HttpServer::HttpServer(const std::string& listen, Routes routes)
    : routes_(std::move(routes)), server_(std::make_unique<Listener>()) {
  const ListenAddress address = parse_listen(listen);

  server_->new_task_queue = [] { return new httplib::ThreadPool(kWorkerThreads); };
  server_->set_read_timeout(kReadTimeout);
  server_->set_write_timeout(kWriteTimeout);
  server_->set_keep_alive_timeout(kKeepAliveTimeout.count());
  server_->set_keep_alive_max_count(kKeepAliveMaxRequests);
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
    to_httplib(routes_.handle(from_httplib(req)), res);
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
        to_httplib(json_error(500, describe(error)), res);
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
