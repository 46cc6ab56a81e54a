// api/public_server: the Beast connections, the relay to HttpServer and the accept loop.
#include "api/public_server.hpp"

#include <spdlog/spdlog.h>

#include <pthread.h>

#include <array>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <exception>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "model/model.hpp"

namespace channeld::api {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr std::string_view kListenKey = "http.public_listen";
// What the upstream may answer with: /metrics and /v1/results can be large, but not unbounded.
constexpr std::uint64_t kMaxUpstreamBody = 64 * 1024 * 1024;
constexpr std::uint32_t kMaxUpstreamHeader = 64 * 1024;
// How long a connection closed for a bad request keeps reading (and discarding) what its client
// still sends: closing with unread data resets the connection, and the client would lose the
// error response it has not read yet.
constexpr std::chrono::seconds kLinger{1};

std::string_view sv(beast::string_view s) {
  return {s.data(), s.size()};
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// As httplib decodes: %XX sequences (a malformed one stays as it is), and '+' as a space in
// query strings only.
std::string percent_decode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%' && i + 2 < text.size()) {
      const int high = hex_digit(text[i + 1]);
      const int low = hex_digit(text[i + 2]);
      if (high >= 0 && low >= 0) {
        out.push_back(static_cast<char>(high * 16 + low));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_is_space && c == '+' ? ' ' : c);
  }
  return out;
}

// "a=1&b=x+y" into `fields`; the first value of a repeated name wins, as in HttpServer.
void parse_fields(std::string_view text, std::map<std::string, std::string>& fields) {
  while (!text.empty()) {
    const auto amp = text.find('&');
    const std::string_view pair = text.substr(0, amp);
    text = amp == std::string_view::npos ? std::string_view{} : text.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    std::string name = percent_decode(pair.substr(0, eq), true);
    std::string value =
        eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1), true);
    fields.emplace(std::move(name), std::move(value));
  }
}

bool starts_with_ignoring_case(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() &&
         beast::iequals(beast::string_view(text.data(), prefix.size()),
                        beast::string_view(prefix.data(), prefix.size()));
}

// Headers that describe one hop (RFC 9110 7.6.1), or that the server writes itself.
bool hop_by_hop(const http::fields::value_type& field) {
  switch (field.name()) {
    case http::field::connection:
    case http::field::keep_alive:
    case http::field::proxy_connection:
    case http::field::transfer_encoding:
    case http::field::content_length:
    case http::field::te:
    case http::field::trailer:
    case http::field::upgrade:
      return true;
    default:
      return false;
  }
}

void append_number(std::string& out, std::uint64_t n) {
  char digits[24];
  const auto end = std::to_chars(digits, digits + sizeof digits, n).ptr;
  out.append(digits, end);
}

void append_header(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

std::string_view reason_for(int status) {
  const std::string_view reason = sv(http::obsolete_reason(static_cast<http::status>(status)));
  return reason == "<unknown-status>" ? std::string_view("Status") : reason;
}

// Best effort, never blocking: the client learns why before the close.
void refuse(tcp::socket& socket) {
  static constexpr std::string_view kBusy =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
      "Content-Length: 34\r\nConnection: close\r\n\r\n{\"error\": \"too many connections\"}\n";
  beast::error_code ignored;
  socket.non_blocking(true, ignored);
  socket.send(asio::buffer(kBusy.data(), kBusy.size()), 0, ignored);
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
}

}  // namespace

// ---- server state --------------------------------------------------------------------------

namespace {
class Connection;
}  // namespace

// Everything here belongs to the I/O thread, except what is set before start() and then only
// read (limits, fast, upstream, port), `thread` (the owner's) and `stopped`.
class PublicServer::Impl : public std::enable_shared_from_this<PublicServer::Impl> {
 public:
  Impl(PublicLimits limits_in, FastHandler fast_in)
      : limits(limits_in), fast(std::move(fast_in)), acceptor(io), accept_retry(io) {}

  void accept();
  void shutdown();
  // A Reply from another thread: queued, and one handler posted per run of replies (a hit
  // journal batch answers hundreds at once) rather than one post, allocation and wake-up each.
  void reply_from_elsewhere(std::weak_ptr<Connection> connection, std::uint64_t sequence,
                            Response response);
  void deliver_replies();

  // One thread runs the io_context; Replies from other threads post to it.
  asio::io_context io{1};
  const PublicLimits limits;
  const FastHandler fast;
  std::vector<tcp::endpoint> upstream;
  tcp::acceptor acceptor;
  asio::steady_timer accept_retry;
  // The connections open now: the table keeps each alive while it waits for a Reply, when no
  // socket operation holds it.
  std::unordered_map<Connection*, std::shared_ptr<Connection>> connections;
  bool stopping = false;
  bool accept_failing = false;
  int port = 0;
  std::thread thread;
  std::atomic<bool> stopped{false};

 private:
  struct PendingReply {
    std::weak_ptr<Connection> connection;
    std::uint64_t sequence = 0;
    Response response;
  };
  std::mutex replies_mutex_;
  std::vector<PendingReply> replies_;  // under replies_mutex_
  std::vector<PendingReply> delivering_;  // the I/O thread's
};

// ---- one connection ------------------------------------------------------------------------

namespace {

// One client connection, on the I/O thread. It serves one request at a time (read, answer,
// write, read the next), so responses go out in the order of the requests; pipelined requests
// wait in the read buffer.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(PublicServer::Impl& server, tcp::socket socket)
      : server_(server), stream_(std::move(socket)) {}

  void start() {
    beast::error_code ignored;
    // Without it a keep-alive response waits for the client's delayed ACK, 40 ms on Linux.
    stream_.socket().set_option(tcp::no_delay(true), ignored);
    read_request();
  }

  // Closes the socket and any relay at once; pending operations end with operation_aborted.
  void close() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    if (upstream_) upstream_->close();
    if (reply_timer_) reply_timer_->cancel();
    server_.connections.erase(this);  // may drop the last owner: callers hold a shared_ptr
  }

  void on_reply(std::uint64_t sequence, Response response) {
    if (closed_ || sequence != awaiting_) return;
    awaiting_ = 0;
    if (reply_timer_) reply_timer_->cancel();
    answer(std::move(response));
  }

 private:
  void read_request() {
    if (server_.stopping) return close();
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_.limits.max_header_bytes));
    parser_->body_limit(server_.limits.max_body_bytes);
    stream_.expires_after(served_ == 0 ? server_.limits.header_timeout
                                       : server_.limits.keep_alive_timeout);
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_header(ec); });
  }

  void on_header(beast::error_code ec) {
    if (ec == asio::error::operation_aborted) return;
    if (ec) return refuse_request(ec);
    if (parser_->is_done()) return serve();
    stream_.expires_after(server_.limits.body_timeout);
    const auto& head = parser_->get();
    if (head.version() == 11 && beast::iequals(head[http::field::expect], "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()),
                        [self = shared_from_this()](beast::error_code error, std::size_t) {
                          if (error == asio::error::operation_aborted) return;
                          if (error) return self->close();
                          self->read_body();
                        });
      return;
    }
    read_body();
  }

  void read_body() {
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       if (ec == asio::error::operation_aborted) return;
                       if (ec) return self->refuse_request(ec);
                       self->serve();
                     });
  }

  // A request that could not be read: answered with its status and closed when the client
  // deserves to know, closed silently when it went away or ran out of time.
  void refuse_request(beast::error_code ec) {
    keep_alive_ = false;
    head_ = false;
    version_ = 11;
    if (ec == http::error::header_limit) {
      return answer(json_error(
          431,
          "request headers exceed " + std::to_string(server_.limits.max_header_bytes) + " bytes"));
    }
    if (ec == http::error::body_limit) {
      return answer(json_error(
          413, "request body exceeds " + std::to_string(server_.limits.max_body_bytes) + " bytes"));
    }
    if (ec.category() == http::make_error_code(http::error::bad_method).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
      return answer(json_error(400, "malformed request: " + ec.message()));
    }
    close();  // end of stream, reset, timeout
  }

  void serve() {
    auto& message = parser_->get();
    ++served_;
    head_ = message.method() == http::verb::head;
    version_ = message.version();
    keep_alive_ = message.keep_alive() && served_ < server_.limits.keep_alive_max_requests &&
                  !server_.stopping;
    request_ = to_request(message);

    const std::uint64_t sequence = awaiting_ = ++sequence_;
    Reply reply = [server = server_.shared_from_this(), self = weak_from_this(),
                   sequence](Response response) {
      if (server->io.get_executor().running_in_this_thread()) {
        if (auto connection = self.lock()) connection->on_reply(sequence, std::move(response));
        return;
      }
      server->reply_from_elsewhere(self, sequence, std::move(response));
    };
    bool served = false;
    try {
      served = server_.fast(request_, std::move(reply));
    } catch (...) {
      return on_reply(sequence, failure_response(std::current_exception()));
    }
    if (awaiting_ != sequence) return;  // answered already, synchronously
    if (!served) {
      awaiting_ = 0;
      return relay();
    }
    // A Reply to come: bounded, so that a handler that loses one cannot hold the connection.
    if (!reply_timer_) reply_timer_.emplace(server_.io);
    reply_timer_->expires_after(server_.limits.reply_timeout);
    reply_timer_->async_wait([self = shared_from_this(), sequence](beast::error_code ec) {
      if (ec == asio::error::operation_aborted) return;
      if (ec || self->closed_ || self->awaiting_ != sequence) return;
      self->awaiting_ = 0;
      self->answer(json_error(504, "no answer within " +
                                       std::to_string(self->server_.limits.reply_timeout.count()) +
                                       " ms"));
    });
  }

  Request to_request(http::request<http::string_body>& message) {
    Request request;
    request.method = std::string(sv(message.method_string()));
    const std::string_view target = sv(message.target());
    const auto question = target.find('?');
    request.path = percent_decode(target.substr(0, question), false);
    if (question != std::string_view::npos)
      parse_fields(target.substr(question + 1), request.query);
    for (const auto& field : message) {
      std::string name(sv(field.name_string()));
      for (char& c : name) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      }
      request.headers.emplace(std::move(name), std::string(sv(field.value())));
    }
    request.body = std::move(message.body());
    if (starts_with_ignoring_case(sv(message[http::field::content_type]),
                                  "application/x-www-form-urlencoded")) {
      parse_fields(request.body, request.query);
    }
    return request;
  }

  // ---- answers -----------------------------------------------------------------------------

  void start_head(int status, std::string_view reason) {
    // RFC 9110 8.6: no Content-Length (and no body) in a 1xx or 204; a 304 has no body either.
    bodiless_ = (status >= 100 && status < 200) || status == 204 || status == 304;
    out_.clear();
    out_.append("HTTP/1.1 ");
    append_number(out_, static_cast<std::uint64_t>(status));
    out_.push_back(' ');
    out_.append(reason);
    out_.append("\r\n");
  }

  // Ends the head (length, connection) and writes head and body.
  void finish_and_write(std::string_view content_length) {
    if (!bodiless_) append_header(out_, "Content-Length", content_length);
    if (!keep_alive_) {
      append_header(out_, "Connection", "close");
    } else if (version_ == 10) {
      append_header(out_, "Connection", "keep-alive");
    }
    out_.append("\r\n");
    const std::array<asio::const_buffer, 2> buffers{
        asio::buffer(out_), head_ || bodiless_ ? asio::const_buffer() : asio::buffer(body_)};
    stream_.expires_after(server_.limits.write_timeout);
    asio::async_write(stream_, buffers,
                      [self = shared_from_this()](beast::error_code ec, std::size_t) {
                        if (ec == asio::error::operation_aborted) return;
                        if (ec) return self->close();
                        if (self->keep_alive_) return self->read_request();
                        self->linger();
                      });
  }

  void answer(Response response) {
    // A header value is written as it is: one holding a line break would end the head early and
    // let what follows it pose as headers or a body (a kit link with "&#10;", say).
    for (const auto& [name, value] : response.headers) {
      if ((name + value).find_first_of("\r\n") != std::string::npos) {
        response = json_error(500, "a response header held a line break and was not sent");
        break;
      }
    }
    start_head(response.status, reason_for(response.status));
    if (!response.content_type.empty()) append_header(out_, "Content-Type", response.content_type);
    for (const auto& [name, value] : response.headers) append_header(out_, name, value);
    body_ = std::move(response.body);
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof digits, body_.size()).ptr;
    finish_and_write(std::string_view(digits, static_cast<std::size_t>(end - digits)));
  }

  // After the last response: stop sending, then read and discard until the client closes (or
  // kLinger passes), so that the response is not lost to a reset.
  void linger() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(kLinger);
    drain();
  }

  void drain() {
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = shared_from_this()](beast::error_code ec, std::size_t) {
                              if (ec == asio::error::operation_aborted) return;
                              if (ec) return self->close();
                              self->drain();
                            });
  }

  // ---- relay -------------------------------------------------------------------------------

  void relay() {
    const auto& message = parser_->get();
    upstream_out_.clear();
    upstream_out_.append(sv(message.method_string()));
    upstream_out_.push_back(' ');
    upstream_out_.append(sv(message.target()));
    upstream_out_.append(" HTTP/1.1\r\n");
    for (const auto& field : message) {
      if (hop_by_hop(field) || field.name() == http::field::expect ||
          beast::iequals(field.name_string(), "x-forwarded-for"))
        continue;
      append_header(upstream_out_, sv(field.name_string()), sv(field.value()));
    }
    // Whoever connected, never what the client claims: an incoming X-Forwarded-For is dropped.
    beast::error_code ec;
    const auto peer = stream_.socket().remote_endpoint(ec);
    if (!ec) append_header(upstream_out_, "X-Forwarded-For", peer.address().to_string());
    append_header(upstream_out_, "Connection", "close");
    // HttpServer reads a body only when a length says there is one.
    if (!request_.body.empty() || parser_->content_length() || parser_->chunked()) {
      upstream_out_.append("Content-Length: ");
      append_number(upstream_out_, request_.body.size());
      upstream_out_.append("\r\n");
    }
    upstream_out_.append("\r\n");

    upstream_.emplace(server_.io);
    upstream_->expires_after(server_.limits.upstream_timeout);  // connect, write and read
    upstream_->async_connect(server_.upstream, [self = shared_from_this()](beast::error_code error,
                                                                           const tcp::endpoint&) {
      if (error == asio::error::operation_aborted) return;
      if (error) return self->upstream_failed(error);
      beast::error_code ignored;
      self->upstream_->socket().set_option(tcp::no_delay(true), ignored);
      const std::array<asio::const_buffer, 2> buffers{asio::buffer(self->upstream_out_),
                                                      asio::buffer(self->request_.body)};
      asio::async_write(*self->upstream_, buffers, [self](beast::error_code written, std::size_t) {
        if (written == asio::error::operation_aborted) return;
        if (written) return self->upstream_failed(written);
        self->read_upstream();
      });
    });
  }

  void read_upstream() {
    upstream_parser_.emplace();
    upstream_parser_->header_limit(kMaxUpstreamHeader);
    upstream_parser_->body_limit(kMaxUpstreamBody);
    upstream_parser_->skip(head_);  // a response to HEAD has no body, whatever its length says
    upstream_buffer_.clear();
    http::async_read(*upstream_, upstream_buffer_, *upstream_parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       if (ec == asio::error::operation_aborted) return;
                       if (ec) return self->upstream_failed(ec);
                       self->answer_from_upstream();
                     });
  }

  void upstream_failed(beast::error_code ec) {
    upstream_.reset();
    if (ec == beast::error::timeout) {
      return answer(json_error(504, "upstream did not answer within " +
                                        std::to_string(server_.limits.upstream_timeout.count()) +
                                        " ms"));
    }
    answer(json_error(502, "upstream unavailable: " + ec.message()));
  }

  void answer_from_upstream() {
    auto& response = upstream_parser_->get();
    const std::string_view reason = sv(response.reason());
    start_head(response.result_int(), reason.empty() ? reason_for(response.result_int()) : reason);
    for (const auto& field : response) {
      if (hop_by_hop(field)) continue;
      append_header(out_, sv(field.name_string()), sv(field.value()));
    }
    body_ = std::move(response.body());
    upstream_.reset();  // the upstream closes after one response (Connection: close)
    const auto length = response[http::field::content_length];
    if (head_ && !length.empty()) {
      return finish_and_write(sv(length));
    }
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof digits, body_.size()).ptr;
    finish_and_write(std::string_view(digits, static_cast<std::size_t>(end - digits)));
  }

  PublicServer::Impl& server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Request request_;
  std::size_t served_ = 0;
  std::uint64_t sequence_ = 0;
  std::uint64_t awaiting_ = 0;  // the request whose Reply is awaited; 0 when none is
  std::optional<asio::steady_timer> reply_timer_;  // made when a Reply is first awaited
  bool head_ = false;
  bool bodiless_ = false;  // the status of the response being written allows no body
  bool keep_alive_ = false;
  unsigned version_ = 11;
  bool closed_ = false;
  std::string out_;   // the response head being written
  std::string body_;  // the response body being written

  std::optional<beast::tcp_stream> upstream_;
  std::string upstream_out_;
  beast::flat_buffer upstream_buffer_;
  std::optional<http::response_parser<http::string_body>> upstream_parser_;
};

}  // namespace

// ---- accept loop ---------------------------------------------------------------------------

void PublicServer::Impl::accept() {
  acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || stopping) return;
    if (ec) {
      // Out of descriptors, most likely: wait for connections to close rather than spin.
      if (!accept_failing)
        spdlog::warn("{}: cannot accept a connection: {}", kListenKey, ec.message());
      accept_failing = true;
      accept_retry.expires_after(std::chrono::milliseconds{100});
      accept_retry.async_wait([this](beast::error_code error) {
        if (error == asio::error::operation_aborted || stopping) return;
        accept();
      });
      return;
    }
    accept_failing = false;
    if (connections.size() >= limits.max_connections) {
      refuse(socket);
    } else {
      auto connection = std::make_shared<Connection>(*this, std::move(socket));
      connections.emplace(connection.get(), connection);
      connection->start();
    }
    accept();
  });
}

void PublicServer::Impl::reply_from_elsewhere(std::weak_ptr<Connection> connection,
                                              std::uint64_t sequence, Response response) {
  bool first = false;
  {
    std::lock_guard lock(replies_mutex_);
    first = replies_.empty();
    replies_.push_back({std::move(connection), sequence, std::move(response)});
  }
  // `this`, not a shared_ptr: a handler left in a stopped io_context would keep its own owner
  // alive (the io_context is a member). It only runs while io runs, so while *this lives.
  if (first) asio::post(io, [this] { deliver_replies(); });
}

void PublicServer::Impl::deliver_replies() {
  {
    std::lock_guard lock(replies_mutex_);
    delivering_.swap(replies_);
  }
  // The lock happens on the I/O thread: a connection is only ever destroyed there.
  for (auto& pending : delivering_) {
    if (auto connection = pending.connection.lock())
      connection->on_reply(pending.sequence, std::move(pending.response));
  }
  delivering_.clear();
}

void PublicServer::Impl::shutdown() {
  stopping = true;
  beast::error_code ignored;
  acceptor.close(ignored);
  accept_retry.cancel();
  std::vector<std::shared_ptr<Connection>> open;
  open.reserve(connections.size());
  for (const auto& [raw, connection] : connections) open.push_back(connection);
  for (const auto& connection : open) connection->close();
}

// ---- PublicServer --------------------------------------------------------------------------

PublicServer::PublicServer(const std::string& listen, ListenAddress upstream, PublicLimits limits,
                           FastHandler fast)
    : impl_(std::make_shared<Impl>(limits, std::move(fast))) {
  ListenAddress address;
  try {
    address = parse_listen(listen);
  } catch (const InputError& e) {
    // parse_listen names http.listen; this address comes from another key.
    std::string message = e.what();
    const std::string prefix = e.where() + ": ";
    if (message.rfind(prefix, 0) == 0) message.erase(0, prefix.size());
    throw InputError(std::string(kListenKey), message);
  }

  const auto fail = [&](const std::string& why) {
    return std::runtime_error(std::string(kListenKey) + ": cannot listen on " + listen + ": " +
                              why);
  };
  tcp::resolver resolver(impl_->io);
  beast::error_code ec;
  const auto listen_at =
      resolver.resolve(address.host, std::to_string(address.port),
                       tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || listen_at.empty()) throw fail(ec ? ec.message() : "host not found");
  const tcp::endpoint endpoint = *listen_at.begin();
  auto& acceptor = impl_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  // SO_REUSEADDR but never SO_REUSEPORT, as in HttpServer: a second daemon on the same address
  // must fail to bind rather than take half the requests.
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw fail(ec.message());
  impl_->port = acceptor.local_endpoint().port();

  const auto upstream_at = resolver.resolve(upstream.host, std::to_string(upstream.port),
                                            tcp::resolver::numeric_service, ec);
  if (ec || upstream_at.empty()) {
    throw std::runtime_error(std::string(kListenKey) + ": cannot resolve the upstream " +
                             upstream.host + ": " + (ec ? ec.message() : "host not found"));
  }
  for (const auto& entry : upstream_at) impl_->upstream.push_back(entry.endpoint());
}

PublicServer::~PublicServer() {
  stop();
}

int PublicServer::port() const {
  return impl_->port;
}

void PublicServer::start() {
  if (impl_->thread.joinable()) throw std::logic_error("PublicServer::start called twice");
  Impl* impl = impl_.get();
  impl_->thread = std::thread([impl] {
    pthread_setname_np(pthread_self(), "public-front");  // names it in top -H and perf
    impl->accept();
    for (;;) {
      try {
        impl->io.run();
        return;
      } catch (const std::exception& e) {
        // A handler threw past its own checks (out of memory, most likely): this request's
        // connection is lost, the others keep being served.
        spdlog::error("{}: {}", kListenKey, e.what());
      }
    }
  });
}

void PublicServer::stop() {
  if (impl_->stopped.exchange(true)) return;
  if (!impl_->thread.joinable()) {
    impl_->shutdown();
    return;
  }
  // Closing every socket ends every operation; run() returns once their handlers have run.
  Impl* impl = impl_.get();
  asio::post(impl_->io, [impl] { impl->shutdown(); });
  impl_->thread.join();
}

}  // namespace channeld::api
