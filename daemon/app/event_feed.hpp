// app/event_feed: pushes the partner event feed (store/partner_events.hpp) to partners'
// endpoints through the same webhook connector as webhook steps, signed the same way, with the
// same retry schedule and the same endpoint disabling (410 Gone, schedule spent). The events
// were queued by the statements that recorded their facts; this only leases, sends and records.
//
// Kept apart from the Dispatcher on purpose: the outbox's claim, journal and results are about
// messages to contacts, and a feed event is none of those. Events go in small batches (claim,
// send all, record all) since there are few of them next to messages. There is no journal:
// after a kill -9 an event that was pushed but not recorded is pushed again when its lease
// expires, with the same webhook-id, which Standard Webhooks receivers use to drop duplicates.
//
// Threads: all member state belongs to the io_context thread the webhook connector runs on,
// except idle(), which any thread may ask. Store calls run on the database pool.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <functional>
#include <string>
#include <vector>

#include "app/snapshot.hpp"
#include "deliver/backoff.hpp"
#include "deliver/webhook_connector.hpp"
#include "metrics/metrics.hpp"
#include "store/partner_events.hpp"

namespace channeld::app {

class EventFeed {
 public:
  EventFeed(boost::asio::io_context& io, boost::asio::thread_pool& db_pool, store::Store& store,
            SnapshotHolder& snapshots, deliver::WebhookConnector& webhooks,
            metrics::Registry& metrics, std::function<SysTime()> clock, std::string owner);

  void start();
  // Stops claiming, waits for the answers of events in flight (the dispatcher's shutdown grace
  // cancels the connector's requests), records them, releases what it holds, then calls `done`
  // on the io_context thread. Safe to call once.
  void stop(std::function<void()> done);
  // Nothing leased and the last claim found nothing due. Any thread.
  bool idle() const { return idle_.load(std::memory_order_acquire); }

 private:
  struct Batch {
    std::vector<deliver::WebhookRequest> requests;
    std::vector<store::Outcome> settled;  // failed without a request
    std::vector<int> attempts;            // per request
    std::vector<std::string> partners;    // per request
    std::size_t claimed = 0;
  };

  void claim();
  Batch prepare(std::vector<store::ClaimedEvent> events) const;
  void on_claimed(Batch batch);
  void on_answered(std::size_t index, const deliver::WebhookResult& result);
  void record();
  void after_store_error(const std::string& what, const std::string& error);
  void wait_then(std::chrono::milliseconds wait, void (EventFeed::*next)());
  void finish_stop();
  void update_idle();

  boost::asio::io_context& io_;
  boost::asio::thread_pool& db_pool_;
  store::Store& store_;
  SnapshotHolder& snapshots_;
  deliver::WebhookConnector& webhooks_;
  metrics::Registry& metrics_;
  std::function<SysTime()> clock_;
  std::string owner_;
  std::chrono::seconds lease_;

  boost::asio::steady_timer timer_;
  deliver::Backoff backoff_;
  deliver::LogThrottle errors_;
  bool busy_ = false;  // a batch is being claimed, sent or recorded
  bool stopping_ = false;
  bool last_claim_empty_ = false;
  std::atomic<bool> idle_{false};
  Batch batch_;  // the batch being sent
  std::size_t unanswered_ = 0;
  std::vector<store::Outcome> outcomes_;  // of batch_, to record
  std::function<void()> on_stopped_;
};

}  // namespace channeld::app
