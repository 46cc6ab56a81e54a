// SMTP through libcurl's multi-socket API on the connector's io_context.
//
// curl decides what to wait for and tells us through two callbacks: CURLMOPT_SOCKETFUNCTION
// ("watch this fd for reading/writing", "stop watching it") and CURLMOPT_TIMERFUNCTION ("call me
// back in N ms"). We wait with Asio (async_wait on a stream_descriptor wrapping curl's fd, a
// steady_timer), hand every readiness or expiry back to curl_multi_socket_action, then read
// finished transfers from curl_multi_info_read. curl owns the fds: a descriptor is always
// release()d, never closed.
//
// Watching an fd by number has one trap, which curl's old asiohiper.cpp example fell into: curl
// may close a socket and open another that gets the same number. Asio registers a descriptor with
// epoll once, at assign(); a stale registration either misses the new socket's events or, when
// released late, deregisters the new socket. So curl opens and closes its connection sockets
// through our CURLOPT_OPENSOCKETFUNCTION and CURLOPT_CLOSESOCKETFUNCTION: a descriptor is
// released before its fd is closed, and a number that comes back while curl still counts it as
// watched (curl only sends CURL_POLL_REMOVE when the interest changes) gets a fresh registration
// with the interest curl last asked for.
//
// Each handler captures the watch's serial number, so a wait that completes after its watch was
// removed or renewed is ignored, and a weak_ptr to `alive_`, so one that completes after the
// connector is gone touches nothing.

#include <curl/curl.h>
#include <sys/socket.h>
#include <unistd.h>

// GCC 12 sees a "potential null pointer dereference" in Asio 1.74's epoll reactor once it is
// inlined here (scheduler::compensating_work_started, which only runs on a thread inside the
// scheduler). The warning is kept for our own code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#pragma GCC diagnostic pop

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "deliver/connector.hpp"

namespace channeld::deliver {
namespace {

using SteadyClock = std::chrono::steady_clock;
using boost::asio::posix::stream_descriptor;

// A relay that has not accepted the TCP connection by then is down; failing fast hands the
// message back to the dispatcher's retry backoff instead of holding a connection slot.
constexpr std::chrono::seconds kConnectTimeout{10};

// One easy handle and the message it carries. Handles live as long as the connector and are
// reused without curl_easy_reset, which keeps their options, TLS session and DNS cache; the
// connections themselves live in the multi handle's cache and are shared by all handles.
struct Transfer {
  CURL* easy = nullptr;
  bool busy = false;
  OutgoingEmail email;
  EmailConnector::Done done;
  std::size_t uploaded = 0;
  std::string mail_from;  // as last given to CURLOPT_MAIL_FROM, which copies it each time
  // CURLOPT_MAIL_RCPT takes a list; one node pointing into email.recipient spares an allocation
  // per message. curl only reads the list and never frees it.
  curl_slist recipient{};
  std::string last_reply;  // the server's last reply line
  std::string refusal;     // its first 4xx/5xx reply line in this transfer
  SteadyClock::time_point started;
  bool fresh_retry = false;  // already retried once on a fresh connection
  char error[CURL_ERROR_SIZE] = {};
};

struct Waiting {
  OutgoingEmail email;
  EmailConnector::Done done;
};

// An fd curl asked us to watch.
struct SocketWatch {
  explicit SocketWatch(boost::asio::io_context& io) : descriptor(io) {}
  ~SocketWatch() { descriptor.release(); }
  SocketWatch(const SocketWatch&) = delete;
  SocketWatch& operator=(const SocketWatch&) = delete;

  stream_descriptor descriptor;
  std::uint64_t serial = 0;  // changes whenever `descriptor` is (re)assigned
  int interest = 0;          // CURL_POLL_IN / CURL_POLL_OUT bits, as curl last asked
  bool reading = false;      // an async_wait(wait_read) is outstanding
  bool writing = false;
};

// libcurl's callbacks; `self` is the SmtpConnector, `userdata` the Transfer.
size_t read_message(char* buffer, size_t size, size_t count, void* userdata);
int seek_message(void* userdata, curl_off_t offset, int origin);
size_t record_reply(char* data, size_t size, size_t count, void* userdata);
int on_socket(CURL* easy, curl_socket_t fd, int what, void* self, void* socketp);
int on_timer(CURLM* multi, long timeout_ms, void* self);
curl_socket_t open_socket(void* self, curlsocktype purpose, curl_sockaddr* address);
int close_socket(void* self, curl_socket_t fd);

class SmtpConnector final : public EmailConnector {
 public:
  SmtpConnector(boost::asio::io_context& io, SmtpSettings settings);
  ~SmtpConnector() override;
  SmtpConnector(const SmtpConnector&) = delete;
  SmtpConnector& operator=(const SmtpConnector&) = delete;

  void send(OutgoingEmail email, Done done) override;
  std::size_t in_flight() const override {
    return transfers_.size() - idle_.size() + waiting_.size();
  }
  std::size_t parallelism() const override { return transfers_.size(); }
  void cancel_all() override;

  // Called by curl, from inside curl_multi_socket_action and friends.
  void watch(curl_socket_t fd, int what);
  void schedule(long timeout_ms);
  void opened(curl_socket_t fd);
  void closing(curl_socket_t fd);

 private:
  template <typename T>
  void set_fixed(CURL* easy, CURLoption option, T value);
  void start(Transfer& t, OutgoingEmail email, Done done);
  void begin(Transfer& t, bool fresh);
  void start_waiting();
  SendResult finish(Transfer& t, CURLcode code, long server_code);
  bool act(curl_socket_t fd, int events);
  bool collect_finished();
  void assign(SocketWatch& w, curl_socket_t fd);
  void arm(curl_socket_t fd, SocketWatch& w);
  void on_ready(curl_socket_t fd, std::uint64_t serial, int direction,
                boost::system::error_code ec);
  SocketWatch* find(curl_socket_t fd, std::uint64_t serial);

  boost::asio::io_context& io_;
  SmtpSettings settings_;
  CURLM* multi_ = nullptr;
  boost::asio::steady_timer timer_;
  bool timeout_posted_ = false;  // a zero timeout is posted and not yet run
  std::unordered_map<curl_socket_t, std::unique_ptr<SocketWatch>> sockets_;
  std::vector<std::unique_ptr<SocketWatch>> spare_watches_;
  std::uint64_t next_serial_ = 0;
  std::vector<std::unique_ptr<Transfer>> transfers_;  // max_connections of them
  std::vector<Transfer*> idle_;
  std::deque<Waiting> waiting_;  // non-empty only while no handle is idle
  // Handlers hold a weak_ptr to this: expired means the connector is gone.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

SmtpConnector::SmtpConnector(boost::asio::io_context& io, SmtpSettings settings)
    : io_(io), settings_(std::move(settings)), timer_(io) {
  settings_.max_connections = std::max(1, settings_.max_connections);
  multi_ = curl_multi_init();
  if (multi_ == nullptr) throw std::runtime_error("smtp: curl_multi_init failed");
  const long connections = settings_.max_connections;
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &on_socket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &on_timer);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS, connections);
  curl_multi_setopt(multi_, CURLMOPT_MAX_TOTAL_CONNECTIONS, connections);
  curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, connections);

  // Every handle is made now, so a libcurl that cannot do what the settings ask (no SMTP, no
  // TLS) stops the daemon at start-up rather than failing messages one by one.
  const long timeout_ms = std::chrono::milliseconds(settings_.timeout).count();
  const long connect_ms =
      std::chrono::milliseconds(std::min<std::chrono::seconds>(settings_.timeout, kConnectTimeout))
          .count();
  const long use_ssl = settings_.require_tls ? CURLUSESSL_ALL : CURLUSESSL_TRY;
  for (int i = 0; i < settings_.max_connections; ++i) {
    auto t = std::make_unique<Transfer>();
    t->easy = curl_easy_init();
    if (t->easy == nullptr) throw std::runtime_error("smtp: curl_easy_init failed");
    CURL* easy = t->easy;
    transfers_.push_back(std::move(t));
    Transfer* self = transfers_.back().get();
    idle_.push_back(self);
    set_fixed(easy, CURLOPT_URL, settings_.url.c_str());
    set_fixed(easy, CURLOPT_UPLOAD, 1L);
    set_fixed(easy, CURLOPT_READFUNCTION, &read_message);
    set_fixed(easy, CURLOPT_READDATA, self);
    set_fixed(easy, CURLOPT_SEEKFUNCTION, &seek_message);
    set_fixed(easy, CURLOPT_SEEKDATA, self);
    // libcurl hands every SMTP reply line to the header callback: the detail of a SendResult is
    // what the server said, not curl's summary of it.
    set_fixed(easy, CURLOPT_HEADERFUNCTION, &record_reply);
    set_fixed(easy, CURLOPT_HEADERDATA, self);
    set_fixed(easy, CURLOPT_ERRORBUFFER, self->error);
    set_fixed(easy, CURLOPT_PRIVATE, self);
    set_fixed(easy, CURLOPT_NOSIGNAL, 1L);
    set_fixed(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    set_fixed(easy, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    set_fixed(easy, CURLOPT_USE_SSL, use_ssl);
    set_fixed(easy, CURLOPT_MAXCONNECTS, connections);
    set_fixed(easy, CURLOPT_OPENSOCKETFUNCTION, &open_socket);
    set_fixed(easy, CURLOPT_OPENSOCKETDATA, this);
    set_fixed(easy, CURLOPT_CLOSESOCKETFUNCTION, &close_socket);
    set_fixed(easy, CURLOPT_CLOSESOCKETDATA, this);
    if (!settings_.username.empty()) {
      set_fixed(easy, CURLOPT_USERNAME, settings_.username.c_str());
      set_fixed(easy, CURLOPT_PASSWORD, settings_.password.c_str());
    }
  }
  // curl copied it; the connector keeps no password of its own.
  std::fill(settings_.password.begin(), settings_.password.end(), '\0');
  settings_.password.clear();
}

SmtpConnector::~SmtpConnector() {
  alive_.reset();
  for (auto& t : transfers_) {
    if (t->busy) curl_multi_remove_handle(multi_, t->easy);
  }
  // Closes the cached connections through close_socket(), so sockets_ must still be here.
  curl_multi_cleanup(multi_);
  for (auto& t : transfers_) curl_easy_cleanup(t->easy);
  sockets_.clear();
}

template <typename T>
void SmtpConnector::set_fixed(CURL* easy, CURLoption option, T value) {
  CURLcode rc = curl_easy_setopt(easy, option, value);
  if (rc != CURLE_OK) {
    throw std::runtime_error(std::string("smtp: libcurl refused option ") +
                             std::to_string(static_cast<int>(option)) + ": " +
                             curl_easy_strerror(rc));
  }
}

void SmtpConnector::send(OutgoingEmail email, Done done) {
  if (idle_.empty()) {
    waiting_.push_back({std::move(email), std::move(done)});
    return;
  }
  Transfer* t = idle_.back();
  idle_.pop_back();
  start(*t, std::move(email), std::move(done));
}

void SmtpConnector::start(Transfer& t, OutgoingEmail email, Done done) {
  t.busy = true;
  t.email = std::move(email);
  t.done = std::move(done);
  t.recipient.data = t.email.recipient.data();
  t.recipient.next = nullptr;
  t.started = SteadyClock::now();
  t.fresh_retry = false;
  begin(t, false);
}

// Hands `t` to curl, on a reused connection or, when `fresh`, on a new one. The deadline is
// checked here, where the transfer really starts: a message that waited too long in the queue
// (or for its retry) goes back unsent rather than out after its lease ended.
void SmtpConnector::begin(Transfer& t, bool fresh) {
  t.uploaded = 0;
  t.error[0] = '\0';
  t.last_reply.clear();
  t.refusal.clear();
  if (SteadyClock::now() > t.email.deadline) {
    SendResult result;
    result.id = t.email.id;
    result.verdict = Verdict::unsent;
    result.detail = "not started: its deadline passed while it waited";
    boost::asio::post(io_, [done = std::move(t.done), result = std::move(result)]() mutable {
      done(std::move(result));
    });
    t.busy = false;
    idle_.push_back(&t);
    return;
  }

  CURLcode rc = curl_easy_setopt(t.easy, CURLOPT_FRESH_CONNECT, fresh ? 1L : 0L);
  if (rc == CURLE_OK && t.mail_from != t.email.envelope_from) {
    rc = curl_easy_setopt(t.easy, CURLOPT_MAIL_FROM, t.email.envelope_from.c_str());
    t.mail_from = rc == CURLE_OK ? t.email.envelope_from : std::string();
  }
  if (rc == CURLE_OK) rc = curl_easy_setopt(t.easy, CURLOPT_MAIL_RCPT, &t.recipient);
  if (rc == CURLE_OK) {
    rc = curl_easy_setopt(t.easy, CURLOPT_INFILESIZE_LARGE,
                          static_cast<curl_off_t>(t.email.mime.size()));
  }
  CURLMcode mrc = rc == CURLE_OK ? curl_multi_add_handle(multi_, t.easy) : CURLM_OK;
  if (rc == CURLE_OK && mrc == CURLM_OK) return;  // curl asks for a timer; the transfer follows

  // Only when out of memory, in practice. `done` must not run inside send(), so it is posted.
  SendResult result;
  result.id = t.email.id;
  result.verdict = Verdict::retry;
  result.detail = std::string("cannot start transfer: ") +
                  (rc != CURLE_OK ? curl_easy_strerror(rc) : curl_multi_strerror(mrc));
  boost::asio::post(io_, [done = std::move(t.done), result = std::move(result)]() mutable {
    done(std::move(result));
  });
  t.busy = false;
  idle_.push_back(&t);
}

void SmtpConnector::start_waiting() {
  while (!idle_.empty() && !waiting_.empty()) {
    Transfer* t = idle_.back();
    idle_.pop_back();
    Waiting next = std::move(waiting_.front());
    waiting_.pop_front();
    start(*t, std::move(next.email), std::move(next.done));
  }
}

SendResult SmtpConnector::finish(Transfer& t, CURLcode code, long server_code) {
  SendResult result;
  result.id = t.email.id;
  result.server_code = server_code;
  result.verdict = classify_smtp(code, server_code, t.error);
  result.latency =
      std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - t.started);
  if (code == CURLE_OK) {
    result.detail = t.last_reply;  // "250 2.0.0 Ok: queued as 4Fx1", for tracing the message
  } else {
    result.detail = t.error[0] != '\0' ? t.error : curl_easy_strerror(code);
    if (!t.refusal.empty()) result.detail.append(": ").append(t.refusal);
  }
  t.busy = false;
  return result;
}

// Returns false if a completion callback destroyed the connector.
bool SmtpConnector::act(curl_socket_t fd, int events) {
  int running = 0;
  curl_multi_socket_action(multi_, fd, events, &running);
  return collect_finished();
}

bool SmtpConnector::collect_finished() {
  std::weak_ptr<int> alive = alive_;
  int queued = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_, &queued)) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL* easy = msg->easy_handle;
    CURLcode code = msg->data.result;  // msg dies with curl_multi_remove_handle
    char* priv = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    Transfer& t = *reinterpret_cast<Transfer*>(priv);
    long server_code = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &server_code);
    long new_connections = 0;
    curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &new_connections);
    curl_multi_remove_handle(multi_, easy);

    // A cached connection the relay closed while idle (its timeout, a restart), or a 421
    // ("closing the channel"), says nothing about the message: try once more on a new
    // connection before calling it a transient failure. libcurl does not do this itself for
    // uploads.
    // (A dropped connection may still show the previous message's 250 as the last code.)
    const bool reused_and_dropped = code != CURLE_OK && server_code < 400 && new_connections == 0;
    if (!t.fresh_retry && (reused_and_dropped || server_code == 421)) {
      t.fresh_retry = true;
      begin(t, true);  // never calls `done` from inside
      continue;
    }

    SendResult result = finish(t, code, server_code);
    Done done = std::move(t.done);
    idle_.push_back(&t);
    start_waiting();
    done(std::move(result));
    if (alive.expired()) return false;
  }
  return true;
}

void SmtpConnector::cancel_all() {
  std::vector<std::pair<Done, SendResult>> cancelled;
  auto cancelled_result = [](std::int64_t id) {
    SendResult result;
    result.id = id;
    result.verdict = Verdict::retry;
    result.detail = "cancelled before the server accepted it";
    return result;
  };
  for (auto& t : transfers_) {
    if (!t->busy) continue;
    curl_multi_remove_handle(multi_, t->easy);
    t->busy = false;
    cancelled.emplace_back(std::move(t->done), cancelled_result(t->email.id));
    cancelled.back().second.latency =
        std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - t->started);
    idle_.push_back(t.get());
  }
  for (auto& w : waiting_) cancelled.emplace_back(std::move(w.done), cancelled_result(w.email.id));
  waiting_.clear();

  std::weak_ptr<int> alive = alive_;
  for (auto& [done, result] : cancelled) {
    done(std::move(result));
    if (alive.expired()) return;
  }
}

// ---- curl's view of sockets and timers ---------------------------------------------------

void SmtpConnector::watch(curl_socket_t fd, int what) {
  if (what == CURL_POLL_REMOVE) {
    auto it = sockets_.find(fd);
    if (it == sockets_.end()) return;
    // Released now (its waits end as operation_aborted, ignored by serial); the object is kept
    // for the next socket, since curl removes and re-adds a connection's fd for every message.
    it->second->descriptor.release();
    spare_watches_.push_back(std::move(it->second));
    sockets_.erase(it);
    return;
  }
  auto& w = sockets_[fd];
  if (!w) {
    if (spare_watches_.empty()) {
      w = std::make_unique<SocketWatch>(io_);
    } else {
      w = std::move(spare_watches_.back());
      spare_watches_.pop_back();
    }
    assign(*w, fd);
  } else if (!w->descriptor.is_open()) {
    assign(*w, fd);  // curl closed and reopened this number, see opened()
  }
  w->interest = what;
  arm(fd, *w);
}

void SmtpConnector::assign(SocketWatch& w, curl_socket_t fd) {
  w.descriptor.release();
  w.serial = ++next_serial_;
  w.reading = false;
  w.writing = false;
  // A failure here (epoll out of memory) leaves the fd unwatched: the transfer then ends with
  // CURLE_OPERATION_TIMEDOUT, a retry. Throwing through curl's C frames is not an option.
  boost::system::error_code ignored;
  w.descriptor.assign(fd, ignored);
}

void SmtpConnector::arm(curl_socket_t fd, SocketWatch& w) {
  if (!w.descriptor.is_open()) return;
  std::weak_ptr<int> alive = alive_;
  if ((w.interest & CURL_POLL_IN) != 0 && !w.reading) {
    w.reading = true;
    w.descriptor.async_wait(stream_descriptor::wait_read,
                            [this, alive, fd, serial = w.serial](boost::system::error_code ec) {
                              if (!alive.expired()) on_ready(fd, serial, CURL_CSELECT_IN, ec);
                            });
  }
  if ((w.interest & CURL_POLL_OUT) != 0 && !w.writing) {
    w.writing = true;
    w.descriptor.async_wait(stream_descriptor::wait_write,
                            [this, alive, fd, serial = w.serial](boost::system::error_code ec) {
                              if (!alive.expired()) on_ready(fd, serial, CURL_CSELECT_OUT, ec);
                            });
  }
}

SocketWatch* SmtpConnector::find(curl_socket_t fd, std::uint64_t serial) {
  auto it = sockets_.find(fd);
  if (it == sockets_.end() || it->second->serial != serial) return nullptr;
  return it->second.get();
}

void SmtpConnector::on_ready(curl_socket_t fd, std::uint64_t serial, int direction,
                             boost::system::error_code ec) {
  SocketWatch* w = find(fd, serial);
  if (w == nullptr) return;  // removed or renewed while the wait was queued
  const bool read = direction == CURL_CSELECT_IN;
  (read ? w->reading : w->writing) = false;
  if (ec == boost::asio::error::operation_aborted) return;
  // curl may have dropped this direction while the wait was outstanding (one cannot cancel a
  // single direction of a descriptor); telling it about readiness it stopped asking for would
  // be harmless but wasted work.
  if ((w->interest & (read ? CURL_POLL_IN : CURL_POLL_OUT)) == 0) return;
  if (!act(fd, ec ? CURL_CSELECT_ERR : direction)) return;
  // Waits are one-shot: wait again only if curl still watches this very socket.
  if (SocketWatch* again = find(fd, serial)) arm(fd, *again);
}

void SmtpConnector::schedule(long timeout_ms) {
  if (timeout_ms < 0) {
    timer_.cancel();
    return;
  }
  std::weak_ptr<int> alive = alive_;
  if (timeout_ms == 0) {
    // "As soon as possible", which curl asks for after every curl_multi_add_handle. It may not
    // be called back from inside its own callback, so this is posted; posting rather than
    // re-arming the timer saves two timerfd_settime calls per message. A timer still armed from
    // before just fires early, which curl tolerates.
    if (timeout_posted_) return;
    timeout_posted_ = true;
    boost::asio::post(io_, [this, alive] {
      if (alive.expired()) return;
      timeout_posted_ = false;
      act(CURL_SOCKET_TIMEOUT, 0);
    });
    return;
  }
  timer_.expires_after(std::chrono::milliseconds(timeout_ms));
  timer_.async_wait([this, alive](boost::system::error_code ec) {
    if (ec || alive.expired()) return;
    act(CURL_SOCKET_TIMEOUT, 0);
  });
}

void SmtpConnector::opened(curl_socket_t fd) {
  auto it = sockets_.find(fd);
  if (it == sockets_.end()) return;
  // curl still counts this number as watched, for a socket it closed without our close_socket
  // (a resolver's socketpair): point the watch at the new socket, with the interest curl thinks
  // it has, since curl will not repeat it.
  SocketWatch& w = *it->second;
  assign(w, fd);
  arm(fd, w);
}

void SmtpConnector::closing(curl_socket_t fd) {
  auto it = sockets_.find(fd);
  if (it == sockets_.end()) return;
  // curl 7.88 sends CURL_POLL_REMOVE before closing, so this is a safety net: deregister from
  // epoll while the fd still names this socket. The watch stays, closed, in case curl still
  // counts the number as watched (see opened()).
  it->second->descriptor.release();
  it->second->serial = ++next_serial_;
  it->second->reading = false;
  it->second->writing = false;
}

// ---- libcurl callbacks -------------------------------------------------------------------

size_t read_message(char* buffer, size_t size, size_t count, void* userdata) {
  Transfer& t = *static_cast<Transfer*>(userdata);
  size_t n = std::min(size * count, t.email.mime.size() - t.uploaded);
  std::memcpy(buffer, t.email.mime.data() + t.uploaded, n);
  t.uploaded += n;
  return n;
}

// curl rewinds when it must resend on a fresh connection after a reused one died.
int seek_message(void* userdata, curl_off_t offset, int origin) {
  Transfer& t = *static_cast<Transfer*>(userdata);
  if (origin != SEEK_SET || offset < 0 || static_cast<size_t>(offset) > t.email.mime.size()) {
    return CURL_SEEKFUNC_CANTSEEK;
  }
  t.uploaded = static_cast<size_t>(offset);
  return CURL_SEEKFUNC_OK;
}

size_t record_reply(char* data, size_t size, size_t count, void* userdata) {
  Transfer& t = *static_cast<Transfer*>(userdata);
  std::string_view line(data, size * count);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  t.last_reply.assign(line);
  // After a refusal curl may still say QUIT and read "221 Bye"; the refusal is the news.
  if (t.refusal.empty() && !line.empty() && (line[0] == '4' || line[0] == '5')) {
    t.refusal.assign(line);
  }
  return size * count;
}

int on_socket(CURL* /*easy*/, curl_socket_t fd, int what, void* self, void* /*socketp*/) {
  static_cast<SmtpConnector*>(self)->watch(fd, what);
  return 0;
}

int on_timer(CURLM* /*multi*/, long timeout_ms, void* self) {
  static_cast<SmtpConnector*>(self)->schedule(timeout_ms);
  return 0;
}

curl_socket_t open_socket(void* self, curlsocktype purpose, curl_sockaddr* address) {
  if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD;
  // CLOEXEC: a child the daemon spawns must not keep SMTP connections open.
  int fd = ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
  if (fd < 0) return CURL_SOCKET_BAD;
  static_cast<SmtpConnector*>(self)->opened(fd);
  return fd;
}

int close_socket(void* self, curl_socket_t fd) {
  static_cast<SmtpConnector*>(self)->closing(fd);
  return ::close(fd);
}

}  // namespace

std::unique_ptr<EmailConnector> make_curl_multi_smtp_connector(boost::asio::io_context& io,
                                                               SmtpSettings settings) {
  // Thread-safe since libcurl 7.84; done here so no transfer ever triggers it lazily.
  static const CURLcode global = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (global != CURLE_OK) {
    throw std::runtime_error(std::string("smtp: curl_global_init failed: ") +
                             curl_easy_strerror(global));
  }
  return std::make_unique<SmtpConnector>(io, std::move(settings));
}

}  // namespace channeld::deliver
