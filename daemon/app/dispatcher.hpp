// app/dispatcher: moves outbox rows to recipients. It leases due rows from the store, renders
// them with the kit version live now, paces them through the rate limits, hands them to the
// email or webhook connector and records every verdict; a row is marked sent only after the
// server said 250 (or the endpoint 2xx), and a row it leased is either recorded or released,
// never forgotten.
//
// Threads: all member state is owned by the io_context thread (the one driving the connector).
// Store calls and rendering run on the database pool and post their results back, so the I/O
// thread never blocks on PostgreSQL.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "app/decisions.hpp"
#include "app/snapshot.hpp"
#include "deliver/connector.hpp"
#include "deliver/rate_limit.hpp"
#include "deliver/webhook_connector.hpp"
#include "metrics/metrics.hpp"
#include "store/store.hpp"

namespace channeld::app {

using Clock = std::function<SysTime()>;

class Dispatcher {
 public:
  Dispatcher(boost::asio::io_context& io, boost::asio::thread_pool& db_pool, store::Store& store,
             SnapshotHolder& snapshots, deliver::EmailConnector& connector,
             deliver::WebhookConnector* webhooks, metrics::Registry& metrics, Clock clock,
             std::string owner);

  void start();
  // New rows may be due (the planner queued some): claim now instead of at the next poll.
  void poke();
  // Stops claiming, lets in-flight sends finish (cancelling them after `grace`), records every
  // verdict, releases rows it still holds, then calls `done`. Safe to call once.
  void stop(std::chrono::seconds grace, std::function<void()> done);
  // Nothing leased and nothing in flight, and the last claim found no due row.
  bool idle() const { return !claiming_ && in_hand_ == 0 && last_claim_empty_; }

 private:
  // A leased row, rendered and ready for the connector.
  struct Ready {
    deliver::OutgoingEmail email;
    std::string domain;
    int attempts = 0;
    int rendered_version = 0;
    std::string message_id;
    // Webhook steps: the request for the webhook connector instead of `email` (of which only
    // id and partner_id are set), and the endpoint, to disable it if it is gone.
    std::optional<deliver::WebhookRequest> webhook;
    std::string webhook_url;
    // Past this, another daemon may already have reclaimed the row: sending would risk a
    // duplicate, so the row goes back to the queue unsent instead.
    std::chrono::steady_clock::time_point send_by;
  };
  struct Prepared {
    std::vector<Ready> ready;
    std::vector<store::Outcome> settled;  // decided without sending: suppressed, deferred...
    std::size_t claimed = 0;
    std::size_t reclaimed = 0;
  };

  void claim();
  Prepared prepare(std::vector<store::ClaimedMessage> rows, SysTime now) const;
  void on_claimed(Prepared prepared);
  void pump();
  void on_sent(const Ready& ready, const deliver::SendResult& result);
  void on_webhook_answered(const Ready& ready, const deliver::WebhookResult& result);
  std::size_t in_flight() const;
  void settle(store::Outcome outcome);
  void schedule_flush();
  void flush();
  void on_recorded(std::vector<store::Outcome> batch, bool ok);
  void check_stopped();

  boost::asio::io_context& io_;
  boost::asio::thread_pool& db_pool_;
  store::Store& store_;
  SnapshotHolder& snapshots_;
  deliver::EmailConnector& connector_;
  deliver::WebhookConnector* webhooks_;  // null: webhook steps fail (nothing to send them with)
  metrics::Registry& metrics_;
  Clock clock_;
  std::string owner_;

  std::size_t batch_size_;
  std::chrono::seconds lease_;
  RetryPolicy policy_;
  deliver::RateLimits limits_;

  boost::asio::steady_timer claim_timer_;
  boost::asio::steady_timer pace_timer_;
  boost::asio::steady_timer flush_timer_;
  boost::asio::steady_timer grace_timer_;
  bool claiming_ = false;
  bool last_claim_empty_ = false;
  bool pace_armed_ = false;
  bool flush_armed_ = false;
  bool recording_ = false;
  bool stopping_ = false;
  bool released_ = false;
  std::size_t in_hand_ = 0;  // leased by us and not yet recorded
  std::deque<Ready> ready_;
  std::vector<store::Outcome> outcomes_;  // verdicts waiting to be recorded
  std::function<void()> on_stopped_;
};

}  // namespace channeld::app
