#include "app/event_feed.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <map>

#include "app/decisions.hpp"
#include "app/webhook_decisions.hpp"
#include "deliver/webhook_signing.hpp"
#include "store/webhooks.hpp"

namespace channeld::app {

namespace asio = boost::asio;

namespace {

// Events per claim: few enough that a batch to endpoints that all time out (30 s each, 8 at
// once) ends well inside delivery.lease, with webhook steps sharing the connector.
constexpr std::size_t kBatch = 16;
// With nothing due, look for new events this often: they are queued by other threads (HTTP
// workers, the dispatcher's records) and by other daemons, with no poke.
constexpr auto kIdlePoll = std::chrono::seconds(1);
constexpr auto kStoreRetryFirst = std::chrono::milliseconds(250);
constexpr auto kStoreRetryMax = std::chrono::seconds(30);
constexpr auto kErrorLogInterval = std::chrono::seconds(30);

}  // namespace

EventFeed::EventFeed(asio::io_context& io, asio::thread_pool& db_pool, store::Store& store,
                     SnapshotHolder& snapshots, deliver::WebhookConnector& webhooks,
                     metrics::Registry& metrics, std::function<SysTime()> clock, std::string owner)
    : io_(io),
      db_pool_(db_pool),
      store_(store),
      snapshots_(snapshots),
      webhooks_(webhooks),
      metrics_(metrics),
      clock_(std::move(clock)),
      owner_(std::move(owner)),
      lease_(snapshots.get()->config.delivery.lease),
      timer_(io),
      backoff_(kStoreRetryFirst, kStoreRetryMax),
      errors_(kErrorLogInterval) {
  metrics_.describe("partner_events_total",
                    "Partner feed events pushed to partners' endpoints, by outcome");
  for (const char* state : {"sent", "retry", "failed"})
    metrics_.add("partner_events_total", metrics::label_set({{"state", state}}), 0);
}

void EventFeed::start() {
  asio::post(io_, [this] { claim(); });
}

void EventFeed::claim() {
  if (stopping_ || busy_) return;
  busy_ = true;
  update_idle();
  asio::post(db_pool_, [this] {
    const SysTime now = clock_();
    try {
      auto events = store::PartnerEvents(store_).claim(owner_, kBatch, now, lease_);
      Batch batch = prepare(std::move(events));
      asio::post(io_, [this, b = std::move(batch)]() mutable { on_claimed(std::move(b)); });
    } catch (const std::exception& e) {
      asio::post(io_, [this, error = std::string(e.what())] {
        busy_ = false;
        update_idle();
        after_store_error("claiming partner events", error);
        if (stopping_) return finish_stop();
        wait_then(backoff_.next(0.5), &EventFeed::claim);
      });
    }
  });
}

// Runs on the database pool: where each event goes, as the partner file says now.
EventFeed::Batch EventFeed::prepare(std::vector<store::ClaimedEvent> events) const {
  Batch batch;
  batch.claimed = events.size();
  const auto snapshot = snapshots_.get();
  store::WebhookEndpoints endpoints(store_);
  std::map<std::string, bool> disabled;  // by partner, looked up once per batch
  for (auto& event : events) {
    const Partner* partner = snapshot->partner(event.partner_id);
    if (partner == nullptr || !partner->webhook) {
      batch.settled.push_back(make_outcome(event.id, store::OutcomeKind::failed,
                                           "partner has no [webhook] url to send it to"));
      continue;
    }
    auto [known, fresh] = disabled.try_emplace(partner->id, false);
    if (fresh) {
      try {
        known->second = endpoints.disabled(partner->id, partner->webhook->url);
      } catch (const store::StoreError&) {
        // As in the dispatcher: one more request to an endpoint that may be disabled costs at
        // worst one more 410, while failing the batch would strand its leases.
      }
    }
    if (known->second) {
      batch.settled.push_back(make_outcome(
          event.id, store::OutcomeKind::failed,
          "webhook endpoint is disabled (channeld webhooks status; replay to send again)"));
      continue;
    }
    batch.requests.push_back(deliver::WebhookRequest{
        event.id, partner->webhook->url, deliver::webhook_id("partner-event:" + event.event_key),
        partner->webhook->key, std::move(event.body)});
    batch.attempts.push_back(event.attempts);
    batch.partners.push_back(partner->id);
  }
  return batch;
}

void EventFeed::on_claimed(Batch batch) {
  if (auto unsaid = errors_.clear(); unsaid > 0)
    spdlog::info("partner events: the database works again ({} failures not logged)", unsaid);
  backoff_.reset();
  last_claim_empty_ = batch.claimed == 0;
  batch_ = std::move(batch);
  outcomes_ = std::move(batch_.settled);
  batch_.settled.clear();
  if (!outcomes_.empty())
    metrics_.add("partner_events_total", metrics::label_set({{"state", "failed"}}),
                 outcomes_.size());
  // Stopping: the leased events not sent are released by finish_stop().
  if (stopping_) batch_.requests.clear();
  unanswered_ = batch_.requests.size();
  if (unanswered_ == 0) return record();
  for (std::size_t i = 0; i < batch_.requests.size(); ++i) {
    webhooks_.send(batch_.requests[i],
                   [this, i](deliver::WebhookResult result) { on_answered(i, result); });
  }
}

void EventFeed::on_answered(std::size_t index, const deliver::WebhookResult& result) {
  const auto& request = batch_.requests[index];
  const std::string& partner = batch_.partners[index];
  const int attempts = batch_.attempts[index];
  // The dispatcher's spread of retries, reproducible per event and attempt.
  const auto mix = static_cast<std::uint64_t>(request.id) * 0x9E3779B97F4A7C15ULL +
                   static_cast<std::uint64_t>(attempts) * 0xBF58476D1CE4E5B9ULL;
  const double jitter = static_cast<double>((mix >> 11) % 1000) / 1000.0;
  const SysTime now = clock_();
  WebhookSettlement s = settle_webhook(request.id, result, attempts, now, jitter);
  metrics_.add("partner_events_total",
               metrics::label_set({{"state", store::to_string(s.outcome.kind)}}));
  if (s.disable_reason) {
    spdlog::error(
        "partner {}: webhook endpoint {} disabled by its event feed: {}; nothing more is sent "
        "to it until `channeld webhooks replay --partner {}` or a new [webhook] url",
        partner, request.url, *s.disable_reason, partner);
    metrics_.add("webhook_endpoints_disabled_total", metrics::label_set({{"partner", partner}}));
    asio::post(db_pool_, [this, partner, url = request.url, reason = *s.disable_reason, now] {
      try {
        store::WebhookEndpoints(store_).disable(partner, url, reason, now);
      } catch (const std::exception& e) {
        spdlog::error("partner {}: recording the disabled webhook endpoint failed: {}", partner,
                      e.what());
      }
    });
  }
  if (s.outcome.kind == store::OutcomeKind::failed)
    spdlog::warn("partner {}: feed event {} failed: {}", partner, request.webhook_id,
                 s.outcome.detail);
  outcomes_.push_back(std::move(s.outcome));
  if (--unanswered_ == 0) record();
}

void EventFeed::record() {
  if (outcomes_.empty()) {
    busy_ = false;
    if (stopping_) return finish_stop();
    if (last_claim_empty_) {
      update_idle();
      return wait_then(kIdlePoll, &EventFeed::claim);
    }
    return claim();
  }
  asio::post(db_pool_, [this, outcomes = outcomes_] {
    std::string error;
    try {
      store::PartnerEvents(store_).record(owner_, outcomes, clock_());
    } catch (const std::exception& e) {
      error = e.what();
    }
    asio::post(io_, [this, error = std::move(error)] {
      if (!error.empty()) {
        after_store_error("recording partner event outcomes", error);
        if (stopping_) {
          // Their leases run out and they are pushed again, with the same webhook-ids.
          spdlog::error("stopping: {} partner event outcomes not recorded", outcomes_.size());
          outcomes_.clear();
          busy_ = false;
          return finish_stop();
        }
        return wait_then(backoff_.next(0.5), &EventFeed::record);
      }
      backoff_.reset();
      outcomes_.clear();
      record();
    });
  });
}

void EventFeed::after_store_error(const std::string& what, const std::string& error) {
  if (auto count = errors_.occurred(std::chrono::steady_clock::now()))
    spdlog::error("{} failed ({} times since last said): {}", what, *count, error);
}

void EventFeed::wait_then(std::chrono::milliseconds wait, void (EventFeed::*next)()) {
  timer_.expires_after(wait);
  timer_.async_wait([this, next](boost::system::error_code ec) {
    if (ec == asio::error::operation_aborted) return;
    (this->*next)();
  });
}

void EventFeed::stop(std::function<void()> done) {
  asio::post(io_, [this, done = std::move(done)]() mutable {
    if (stopping_) return;
    stopping_ = true;
    on_stopped_ = std::move(done);
    // A batch on its way ends in finish_stop(); otherwise only a wait is pending.
    if (!busy_) {
      timer_.cancel();
      finish_stop();
    }
  });
}

void EventFeed::finish_stop() {
  asio::post(db_pool_, [this] {
    try {
      if (auto n = store::PartnerEvents(store_).release(owner_); n > 0)
        spdlog::info("released {} partner events back to the queue", n);
    } catch (const std::exception& e) {
      spdlog::error("releasing partner events failed ({}); their lease expires in {}s", e.what(),
                    lease_.count());
    }
    asio::post(io_, [this] {
      if (on_stopped_) {
        auto done = std::move(on_stopped_);
        on_stopped_ = nullptr;
        done();
      }
    });
  });
}

void EventFeed::update_idle() {
  idle_.store(!busy_ && last_claim_empty_, std::memory_order_release);
}

}  // namespace channeld::app
