// app/dispatcher: moves outbox rows to recipients. It leases due rows from the store, renders
// them with the kit version live now, paces them through the rate limits, hands them to the
// email or webhook connector and records every verdict; a row is marked sent only after the
// server said 250 (or the endpoint 2xx), and a row it leased is either recorded or released,
// never forgotten.
//
// Every send verdict is appended to the Journal before the connection that produced it takes
// its next message, then written to the store in batches; a batch that cannot be written stays
// in the journal, which the next start replays (app/journal.hpp). Store errors back off
// exponentially with jitter and are logged once per interval with a count.
//
// Threads: all member state is owned by the io_context thread (the one driving the connector),
// except idle(), which any thread may ask. Store calls and rendering run on the database pool
// and post their results back, so the I/O thread never blocks on PostgreSQL.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <deque>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "app/decisions.hpp"
#include "app/journal.hpp"
#include "app/snapshot.hpp"
#include "deliver/backoff.hpp"
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
             std::string owner, Journal& journal);

  void start();
  // New rows may be due (the planner queued some): claim now instead of at the next poll.
  void poke();
  // Stops claiming at once, lets in-flight sends finish (cancelling them after `grace`),
  // records every verdict, releases rows it still holds, then calls `done`. With the store away
  // it gives up recording `kStopRecordTime` after the grace period: the verdicts stay in the
  // journal for the next start, the unsent rows' leases expire. Safe to call once.
  void stop(std::chrono::seconds grace, std::function<void()> done);
  // Nothing leased and nothing in flight, and the last claim found no due row. Any thread.
  bool idle() const { return idle_.load(std::memory_order_acquire); }

  // What this process sent (emails and webhooks whose verdict was "sent") and when the first
  // and the last of those sends ended: the --until-idle summary's rate, which the database
  // cannot give (sent_at keeps whole seconds). Read on the delivery thread or after it ended.
  struct Throughput {
    std::size_t sent = 0;
    std::chrono::steady_clock::time_point first{}, last{};
  };
  const Throughput& throughput() const { return throughput_; }

 private:
  // A leased row, rendered and ready for the connector.
  struct Ready {
    deliver::OutgoingEmail email;
    std::string domain;
    int attempts = 0;
    int rendered_version = 0;
    std::string message_id;
    std::string kit_id;  // for the log line of a message that fails
    std::string step_id;
    // Webhook steps: the request for the webhook connector instead of `email` (of which only
    // id, partner_id and deadline are used), and the endpoint, to disable it if it is gone.
    std::optional<deliver::WebhookRequest> webhook;
    std::string webhook_url;
    // email.deadline: the latest start that still ends, transfer timeout included, before the
    // lease does; past it another daemon may reclaim the row, so it goes back unsent.
  };
  struct Prepared {
    std::vector<Ready> ready;
    std::vector<store::Outcome> settled;  // decided without sending: suppressed, deferred...
    std::size_t claimed = 0;
    std::size_t reclaimed = 0;
  };

  void claim();
  Prepared prepare(std::vector<store::ClaimedMessage> rows, SysTime now) const;
  // (kit, partner) pairs that opted out of a kit (store/proofs.hpp), read once per batch.
  std::set<std::pair<std::string, std::string>> opted_out_pairs() const;
  void on_claimed(Prepared prepared);
  void pump();
  void on_sent(const Ready& ready, const deliver::SendResult& result);
  void on_webhook_answered(const Ready& ready, const deliver::WebhookResult& result);
  // Email and webhook requests handed to a connector and not yet answered.
  std::size_t in_flight() const;
  void settle(store::Outcome outcome);
  void schedule_flush();
  void flush();
  void on_recorded(std::vector<store::Outcome> batch, std::uint64_t mark, bool ok);
  void retry_flush();
  void check_stopped();
  void finish_stop();
  void update_idle();
  double draw();

  void count_sent();

  boost::asio::io_context& io_;
  boost::asio::thread_pool& db_pool_;
  store::Store& store_;
  SnapshotHolder& snapshots_;
  deliver::EmailConnector& connector_;
  deliver::WebhookConnector* webhooks_;  // null: no webhook steps are sent
  metrics::Registry& metrics_;
  Clock clock_;
  std::string owner_;
  Journal& journal_;

  std::size_t batch_size_;
  std::chrono::seconds lease_;
  std::chrono::seconds transfer_timeout_;  // smtp.timeout: how long a started send may take
  std::chrono::seconds webhook_timeout_;   // the same for a webhook request
  RetryPolicy policy_;
  deliver::RateLimits limits_;

  boost::asio::steady_timer claim_timer_;
  boost::asio::steady_timer pace_timer_;
  boost::asio::steady_timer flush_timer_;
  boost::asio::steady_timer grace_timer_;
  boost::asio::steady_timer give_up_timer_;
  deliver::Backoff claim_backoff_;
  deliver::Backoff flush_backoff_;
  deliver::LogThrottle claim_errors_;
  deliver::LogThrottle flush_errors_;
  std::uint64_t random_state_;
  bool claiming_ = false;
  bool held_ = false;  // sending was held at the last claim pass (logged once per hold)
  bool last_claim_empty_ = false;
  bool pace_armed_ = false;
  bool flush_armed_ = false;
  bool recording_ = false;
  bool stopping_ = false;
  bool released_ = false;
  bool gave_up_ = false;  // stopping, and the store stayed away: verdicts stay in the journal
  std::atomic<bool> idle_{false};
  Throughput throughput_;
  std::size_t in_hand_ = 0;  // leased by us and not yet recorded
  std::deque<Ready> ready_;
  std::size_t ready_webhooks_ = 0;        // rows of ready_ that are webhooks
  std::size_t webhooks_in_flight_ = 0;    // handed to the webhook connector, not yet answered
  std::vector<store::Outcome> outcomes_;  // verdicts waiting to be recorded
  std::function<void()> on_stopped_;
};

}  // namespace channeld::app
