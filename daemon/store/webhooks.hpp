// store/webhooks: the state of partners' webhook endpoints and the failed webhook deliveries an
// operator inspects and replays. SQL for migration 0007 (webhook_endpoint) and for the webhook
// rows of the outbox.
//
// Threads: like Store, safe from any thread; calls block on the database, so the daemon runs
// them on its database pool. The CLI calls them directly.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "store/store.hpp"

namespace channeld::store {

struct DisabledEndpoint {
  std::string partner_id;
  std::string url;
  std::string reason;  // "410 Gone" or "gave up after 10 attempts: HTTP 500"
  SysTime disabled_at{};
};

struct FailedWebhook {
  // The outbox row of a webhook step; the partner_event row of a feed event.
  std::int64_t id = 0;
  std::string event;  // "" for a webhook step; the type of a partner feed event ("opened")
  std::string kit_id;
  std::string step_id;
  std::string email;
  int attempts = 0;
  std::string last_error;
  SysTime failed_at{};
};

class WebhookEndpoints {
 public:
  explicit WebhookEndpoints(Store& store) : store_(store) {}

  // Stops sending to `url` for `partner_id`. Idempotent: a second call keeps the first reason
  // and time, which say when the endpoint really went away.
  void disable(const std::string& partner_id, const std::string& url, const std::string& reason,
               SysTime now);
  // Whether `url` is disabled for `partner_id`.
  bool disabled(const std::string& partner_id, const std::string& url);
  // Every disabled endpoint, by partner.
  std::vector<DisabledEndpoint> all_disabled();
  // Enables every URL of the partner again; returns how many were disabled.
  std::size_t enable(const std::string& partner_id);

  // The partner's failed webhook deliveries (webhook steps and feed events), most recent
  // first, at most `limit`.
  std::vector<FailedWebhook> failed(const std::string& partner_id, std::size_t limit);

  // Which failed deliveries of a partner to replay: all, or the listed rows.
  struct Selection {
    bool all = true;
    std::vector<std::int64_t> steps;   // outbox rows
    std::vector<std::int64_t> events;  // partner_event rows
  };
  // Queues the partner's selected failed webhook deliveries again, due at `now` with a fresh
  // attempt count (each step with a 'replayed' delivery_event); and enables the partner's
  // endpoint, since a replay to a disabled endpoint could not go anywhere. Rows of another
  // partner, or not failed, are left alone. Returns the number of rows queued, in one
  // transaction.
  std::size_t replay(const std::string& partner_id, const Selection& which, SysTime now);
  // All the partner's failed deliveries, or the one webhook step `only` (outbox row).
  std::size_t replay(const std::string& partner_id, std::optional<std::int64_t> only, SysTime now);

 private:
  Store& store_;
};

}  // namespace channeld::store
