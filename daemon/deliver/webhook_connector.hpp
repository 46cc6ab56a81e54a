// deliver/webhook_connector: POSTs signed JSON to partners' webhook endpoints over HTTP(S).
//
// Each request is signed at the moment it is sent (deliver/webhook_signing.hpp), so the
// webhook-timestamp of a retry is fresh while its webhook-id stays the same. What an answer
// means is decided by deliver/webhook_policy.hpp; which addresses may be reached by
// deliver/address_guard.hpp, checked on every socket curl opens (after DNS, so a name that
// resolves to an internal address, or starts to between two attempts, is refused too).
// Redirects are never followed; only http and https are spoken; proxies from the environment
// are ignored, since the guard must see the address that is really connected to.
//
// Threads: like the email connectors (deliver/connector.hpp), send(), cancel_all() and the
// completion callbacks run on the io_context thread the connector was built with, and the
// connector is destroyed there or after that io_context stopped. The HTTP transfers themselves
// run on a thread the connector owns (curl multi with curl_multi_poll), so a slow endpoint or a
// slow DNS answer never holds the io_context.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "deliver/address_guard.hpp"
#include "deliver/webhook_policy.hpp"

namespace channeld::deliver {

struct WebhookRequest {
  std::int64_t id = 0;     // outbox row id, echoed in the result
  std::string url;         // the partner's [webhook] url
  std::string webhook_id;  // webhook_id(idempotency key): the same on every attempt
  std::string key;         // the partner's signing key (decoded secret); never logged
  std::string body;        // JSON
  // Not started after this (it waited for a connection too long): reported `abandoned`, so
  // that the dispatcher's lease on the row never runs out under a transfer.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
};

struct WebhookResult {
  std::int64_t id = 0;
  WebhookVerdict verdict = WebhookVerdict::retry;
  long status = 0;                                  // HTTP status, 0 if none
  std::optional<std::chrono::seconds> retry_after;  // from a 429 or 503
  bool address_refused = false;                     // the SSRF guard refused every address
  // Given up before an answer, by cancel_all() (shutdown) or because its deadline passed
  // before it started: says nothing about the endpoint, so it costs no attempt of the schedule.
  bool abandoned = false;
  std::string detail;  // "HTTP 500: <start of the body>", a curl error or the guard's reason
  std::chrono::microseconds latency{0};
};

struct WebhookSettings {
  std::vector<Cidr> allow;  // [webhooks] allow: internal ranges that may be reached anyway
  int max_connections = 8;  // transfers at once; more wait in order
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(10)};
  std::chrono::milliseconds timeout{std::chrono::seconds(30)};  // whole request and answer
  std::string user_agent = "channeld";
};

class WebhookConnector {
 public:
  using Done = std::function<void(WebhookResult)>;
  virtual ~WebhookConnector() = default;
  // Starts the request; `done` is called once, on the io_context thread, never inside send().
  virtual void send(WebhookRequest request, Done done) = 0;
  // Requests sent and not yet reported through `done`.
  virtual std::size_t in_flight() const = 0;
  // Requests it runs at once (more wait in order), and the longest one may take.
  virtual std::size_t parallelism() const = 0;
  virtual std::chrono::milliseconds transfer_timeout() const = 0;
  // Abandons every request still running or waiting; each one's `done` gets
  // WebhookVerdict::retry with `abandoned` set, from inside cancel_all(). The receiver may
  // still have got it: the webhook-id lets it drop the duplicate.
  virtual void cancel_all() = 0;
};

// Throws std::runtime_error if libcurl cannot be set up (a start-up error).
std::unique_ptr<WebhookConnector> make_webhook_connector(boost::asio::io_context& io,
                                                         WebhookSettings settings);

// Parses [webhooks] allow; throws InputError naming `where` for an entry that is not a CIDR.
std::vector<Cidr> parse_allow_list(const std::vector<std::string>& entries,
                                   const std::string& where);

}  // namespace channeld::deliver
