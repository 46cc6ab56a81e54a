// HTTP POSTs through libcurl's multi interface on a thread of the connector's own.
//
// Unlike SMTP (smtp_connector.cpp), webhooks do not share the caller's io_context: curl drives
// its transfers with curl_multi_poll on the worker thread, which sidesteps watching curl's fds
// from Asio altogether, and the results are posted back to the io_context. The two threads
// share only `incoming_` and the cancel mark, under `mutex_`; everything else belongs to one
// of them (see the class). Each result is keyed by a ticket: a result whose ticket is no longer
// pending (cancelled meanwhile) is dropped on arrival.

#include "deliver/webhook_connector.hpp"

#include <curl/curl.h>
#include <sys/socket.h>

// GCC 12 sees a "potential null pointer dereference" in Asio 1.74's scheduler once it is
// inlined (scheduler::compensating_work_started, which only runs on a thread inside the
// scheduler). The warning is kept for our own code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#pragma GCC diagnostic pop

#include <algorithm>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>

#include "deliver/webhook_signing.hpp"
#include "model/model.hpp"

namespace channeld::deliver {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Given up before any answer (cancelled, or too late to start): no attempt of the schedule.
WebhookResult abandoned(std::int64_t id, std::string detail) {
  WebhookResult result;
  result.id = id;
  result.verdict = WebhookVerdict::retry;
  result.abandoned = true;
  result.detail = std::move(detail);
  return result;
}

// Enough of an error page to tell a proxy's HTML from the receiver's JSON in `detail`.
constexpr std::size_t kDetailBodyBytes = 200;

struct Transfer {
  Transfer() = default;
  Transfer(const Transfer&) = delete;
  Transfer& operator=(const Transfer&) = delete;
  ~Transfer() {
    if (easy != nullptr) curl_easy_cleanup(easy);
    curl_slist_free_all(headers);
  }

  std::uint64_t ticket = 0;
  WebhookRequest request;
  const std::vector<Cidr>* allow = nullptr;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  std::string retry_after;  // the last answer's Retry-After value
  std::string body_start;   // the first kDetailBodyBytes of the answer's body
  std::string refusals;     // the guard's reasons, "; "-separated
  SteadyClock::time_point started;
  char error[CURL_ERROR_SIZE] = {};
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char a = s[i];
    if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
    if (a != prefix[i]) return false;
  }
  return true;
}

size_t on_header(char* data, size_t size, size_t count, void* userdata) {
  auto& t = *static_cast<Transfer*>(userdata);
  std::string_view line(data, size * count);
  if (line.starts_with("HTTP/")) {
    t.retry_after.clear();  // a new answer (after a 100 Continue, say)
  } else if (starts_with_nocase(line, "retry-after:")) {
    t.retry_after.assign(trim(line.substr(12)));
  }
  return size * count;
}

size_t on_body(char* data, size_t size, size_t count, void* userdata) {
  auto& t = *static_cast<Transfer*>(userdata);
  std::size_t n = size * count;
  std::size_t keep =
      std::min(n, kDetailBodyBytes - std::min(kDetailBodyBytes, t.body_start.size()));
  t.body_start.append(data, keep);
  return n;
}

// Called by curl for every connection it opens, after name resolution: the SSRF guard.
curl_socket_t open_socket(void* userdata, curlsocktype purpose, curl_sockaddr* address) {
  auto& t = *static_cast<Transfer*>(userdata);
  if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD;
  auto ip = IpAddress::from_sockaddr(&address->addr, address->addrlen);
  std::optional<std::string> why =
      ip ? refusal(*ip, *t.allow) : std::optional<std::string>("not an IP address");
  if (why) {
    if (!t.refusals.empty()) t.refusals += "; ";
    t.refusals += *why;
    return CURL_SOCKET_BAD;
  }
  // CLOEXEC: a child the daemon spawns must not keep partners' connections open.
  int fd = ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
  return fd < 0 ? CURL_SOCKET_BAD : fd;
}

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    out.push_back(u < 0x20 || u == 0x7f ? ' ' : c);
  }
  return std::string(trim(out));
}

class Connector final : public WebhookConnector {
 public:
  Connector(boost::asio::io_context& io, WebhookSettings settings);
  ~Connector() override;
  Connector(const Connector&) = delete;
  Connector& operator=(const Connector&) = delete;

  void send(WebhookRequest request, Done done) override;
  std::size_t in_flight() const override { return pending_.size(); }
  // Read by the worker too: settings_ never changes.
  std::size_t parallelism() const override {
    return static_cast<std::size_t>(std::max(1, settings_.max_connections));
  }
  std::chrono::milliseconds transfer_timeout() const override { return settings_.timeout; }
  void cancel_all() override;

 private:
  // Worker thread.
  void run();
  void start(std::unique_ptr<Transfer> t);
  void collect_finished();
  void report(std::uint64_t ticket, WebhookResult result);
  // io_context thread.
  void complete(std::uint64_t ticket, WebhookResult result);

  boost::asio::io_context& io_;
  const WebhookSettings settings_;
  CURLM* multi_ = nullptr;  // used by the worker; curl_multi_wakeup from any thread

  // io_context thread only.
  struct Pending {
    std::int64_t id = 0;
    Done done;
    // The answer arrives by a post from the worker; until then nothing on the io_context
    // stands for it, and io_context::run() would return.
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work;
  };
  std::unordered_map<std::uint64_t, Pending> pending_;
  std::uint64_t next_ticket_ = 1;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // posted results check it

  // Shared, under mutex_.
  std::mutex mutex_;
  std::deque<std::unique_ptr<Transfer>> incoming_;
  std::uint64_t cancelled_through_ = 0;  // tickets up to this one are abandoned
  bool stopping_ = false;

  // Worker thread only.
  std::deque<std::unique_ptr<Transfer>> waiting_;
  std::unordered_map<CURL*, std::unique_ptr<Transfer>> running_;
  std::weak_ptr<int> alive_for_worker_ = alive_;
  std::thread worker_;  // last: starts once everything above exists
};

Connector::Connector(boost::asio::io_context& io, WebhookSettings settings)
    : io_(io), settings_(std::move(settings)) {
  multi_ = curl_multi_init();
  if (multi_ == nullptr) throw std::runtime_error("webhooks: curl_multi_init failed");
  curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, static_cast<long>(settings_.max_connections));
  worker_ = std::thread([this] { run(); });
}

Connector::~Connector() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  curl_multi_wakeup(multi_);
  worker_.join();
  alive_.reset();
  for (auto& [easy, t] : running_) curl_multi_remove_handle(multi_, easy);
  running_.clear();
  curl_multi_cleanup(multi_);
}

void Connector::send(WebhookRequest request, Done done) {
  auto t = std::make_unique<Transfer>();
  t->ticket = next_ticket_++;
  t->request = std::move(request);
  t->allow = &settings_.allow;
  pending_.emplace(t->ticket,
                   Pending{t->request.id, std::move(done), boost::asio::make_work_guard(io_)});
  {
    std::lock_guard lock(mutex_);
    incoming_.push_back(std::move(t));
  }
  curl_multi_wakeup(multi_);
}

void Connector::cancel_all() {
  std::unordered_map<std::uint64_t, Pending> cancelled;
  cancelled.swap(pending_);
  {
    std::lock_guard lock(mutex_);
    cancelled_through_ = next_ticket_ - 1;
  }
  curl_multi_wakeup(multi_);
  std::weak_ptr<int> alive = alive_;
  for (auto& [ticket, pending] : cancelled) {
    pending.done(abandoned(pending.id, "cancelled before the endpoint answered"));
    if (alive.expired()) return;
  }
}

void Connector::complete(std::uint64_t ticket, WebhookResult result) {
  auto it = pending_.find(ticket);
  if (it == pending_.end()) return;  // cancelled while the answer was on its way
  Done done = std::move(it->second.done);
  pending_.erase(it);  // releases its work guard; the handler running now keeps run() going
  done(std::move(result));
}

void Connector::report(std::uint64_t ticket, WebhookResult result) {
  boost::asio::post(
      io_, [this, alive = alive_for_worker_, ticket, result = std::move(result)]() mutable {
        if (!alive.expired()) complete(ticket, std::move(result));
      });
}

void Connector::run() {
  std::uint64_t cancel_seen = 0;
  for (;;) {
    std::uint64_t cancel = 0;
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      for (auto& t : incoming_) waiting_.push_back(std::move(t));
      incoming_.clear();
      cancel = cancelled_through_;
    }
    if (cancel > cancel_seen) {
      cancel_seen = cancel;
      std::erase_if(waiting_, [cancel](const auto& t) { return t->ticket <= cancel; });
      for (auto it = running_.begin(); it != running_.end();) {
        if (it->second->ticket <= cancel) {
          curl_multi_remove_handle(multi_, it->first);
          it = running_.erase(it);
        } else {
          ++it;
        }
      }
    }
    while (!waiting_.empty() && running_.size() < parallelism()) {
      auto t = std::move(waiting_.front());
      waiting_.pop_front();
      if (SteadyClock::now() > t->request.deadline) {
        report(t->ticket,
               abandoned(t->request.id,
                         "not started: its deadline passed while it waited for a connection"));
        continue;
      }
      start(std::move(t));
    }
    int still_running = 0;
    curl_multi_perform(multi_, &still_running);
    collect_finished();
    // Returns early on socket activity, curl's own timers or curl_multi_wakeup (which is not
    // lost if it came before this call).
    curl_multi_poll(multi_, nullptr, 0, 1000, nullptr);
  }
}

void Connector::start(std::unique_ptr<Transfer> t) {
  t->started = SteadyClock::now();
  auto fail = [&](std::string detail) {
    WebhookResult result;
    result.id = t->request.id;
    result.verdict = WebhookVerdict::retry;
    result.detail = std::move(detail);
    report(t->ticket, std::move(result));
  };
  t->easy = curl_easy_init();
  if (t->easy == nullptr) return fail("cannot start transfer: curl_easy_init failed");

  const auto timestamp = std::chrono::duration_cast<std::chrono::seconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  const WebhookRequest& r = t->request;
  std::string signature = webhook_signature(r.key, r.webhook_id, timestamp, r.body);
  for (const std::string& h :
       {std::string("Content-Type: application/json"), "webhook-id: " + r.webhook_id,
        "webhook-timestamp: " + std::to_string(timestamp), "webhook-signature: " + signature,
        // curl would otherwise wait for "100 Continue" before a large body.
        std::string("Expect:")}) {
    curl_slist* next = curl_slist_append(t->headers, h.c_str());
    if (next == nullptr) return fail("cannot start transfer: out of memory");
    t->headers = next;
  }

  CURL* e = t->easy;
  CURLcode rc = CURLE_OK;
  auto set = [&](CURLoption option, auto value) {
    if (rc == CURLE_OK) rc = curl_easy_setopt(e, option, value);
  };
  set(CURLOPT_URL, r.url.c_str());
  set(CURLOPT_POSTFIELDS, r.body.data());
  set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
  set(CURLOPT_HTTPHEADER, t->headers);
  set(CURLOPT_USERAGENT, settings_.user_agent.c_str());
  set(CURLOPT_PROTOCOLS_STR, "http,https");
  set(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  set(CURLOPT_FOLLOWLOCATION, 0L);
  // An http_proxy in the environment would make the guard judge the proxy's address instead of
  // the endpoint's.
  set(CURLOPT_PROXY, "");
  set(CURLOPT_NOSIGNAL, 1L);
  set(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(settings_.connect_timeout.count()));
  set(CURLOPT_TIMEOUT_MS, static_cast<long>(settings_.timeout.count()));
  set(CURLOPT_OPENSOCKETFUNCTION, &open_socket);
  set(CURLOPT_OPENSOCKETDATA, t.get());
  set(CURLOPT_HEADERFUNCTION, &on_header);
  set(CURLOPT_HEADERDATA, t.get());
  set(CURLOPT_WRITEFUNCTION, &on_body);
  set(CURLOPT_WRITEDATA, t.get());
  set(CURLOPT_ERRORBUFFER, t->error);
  if (rc != CURLE_OK) {
    return fail(std::string("cannot start transfer: ") + curl_easy_strerror(rc));
  }
  CURLMcode mrc = curl_multi_add_handle(multi_, e);
  if (mrc != CURLM_OK) {
    return fail(std::string("cannot start transfer: ") + curl_multi_strerror(mrc));
  }
  running_.emplace(e, std::move(t));
}

void Connector::collect_finished() {
  int queued = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_, &queued)) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL* easy = msg->easy_handle;
    CURLcode code = msg->data.result;  // msg dies with curl_multi_remove_handle
    auto it = running_.find(easy);
    if (it == running_.end()) continue;
    std::unique_ptr<Transfer> t = std::move(it->second);
    running_.erase(it);
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(multi_, easy);

    WebhookResult result;
    result.id = t->request.id;
    result.status = code == CURLE_OK ? status : 0;
    result.verdict = classify_webhook(code, result.status);
    result.latency =
        std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - t->started);
    if (code == CURLE_OK) {
      result.retry_after =
          parse_retry_after(status, t->retry_after, std::chrono::system_clock::now());
      result.detail = "HTTP " + std::to_string(status);
      std::string body = printable(t->body_start);
      if (result.verdict != WebhookVerdict::delivered && !body.empty()) {
        result.detail += ": " + body;
      }
    } else if (!t->refusals.empty() && code == CURLE_COULDNT_CONNECT) {
      result.address_refused = true;
      result.detail = "refused by the SSRF guard: " + t->refusals;
    } else {
      result.detail = t->error[0] != '\0' ? t->error : curl_easy_strerror(code);
    }
    report(t->ticket, std::move(result));
  }
}

}  // namespace

std::unique_ptr<WebhookConnector> make_webhook_connector(boost::asio::io_context& io,
                                                         WebhookSettings settings) {
  // Thread-safe since libcurl 7.84; done here so no transfer ever triggers it lazily.
  static const CURLcode global = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (global != CURLE_OK) {
    throw std::runtime_error(std::string("webhooks: curl_global_init failed: ") +
                             curl_easy_strerror(global));
  }
  return std::make_unique<Connector>(io, std::move(settings));
}

std::vector<Cidr> parse_allow_list(const std::vector<std::string>& entries,
                                   const std::string& where) {
  std::vector<Cidr> allow;
  for (const auto& entry : entries) {
    auto cidr = Cidr::parse(entry);
    if (!cidr) {
      throw InputError(where, "'" + entry + "' is not an address range such as \"10.0.0.0/8\"");
    }
    allow.push_back(*cidr);
  }
  return allow;
}

}  // namespace channeld::deliver
