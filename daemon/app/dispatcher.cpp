#include "app/dispatcher.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <map>
#include <nlohmann/json.hpp>

#include "app/decisions.hpp"
#include "app/proofs.hpp"
#include "app/webhook_decisions.hpp"
#include "deliver/webhook_signing.hpp"
#include "render/render.hpp"
#include "schedule/schedule.hpp"
#include "store/proofs.hpp"
#include "store/webhooks.hpp"

namespace channeld::app {

namespace asio = boost::asio;

namespace {

// Hold at most this many leased rows per claim batch size: enough to keep the connector busy
// while the next batch is claimed and rendered, few enough that a crash strands little.
constexpr std::size_t kInHandBatches = 3;
// Verdicts are written in batches; a partial batch waits at most this long. Each record is a
// round trip and a commit: at a few thousand messages a second, 100 ms batches of a few hundred
// cost PostgreSQL markedly less than many small ones (docs/performance.md).
constexpr auto kFlushDelay = std::chrono::milliseconds(100);
constexpr std::size_t kFlushSize = 500;
// With nothing due, look for new rows (from a planner in another daemon) this often.
constexpr auto kIdlePoll = std::chrono::seconds(1);
// Store errors: the first retry after about kStoreRetryFirst, doubling to kStoreRetryMax, and one
// log line per kErrorLogInterval with how many failures it stands for.
constexpr auto kStoreRetryFirst = std::chrono::milliseconds(250);
constexpr auto kStoreRetryMax = std::chrono::seconds(30);
constexpr auto kErrorLogInterval = std::chrono::seconds(30);
// How long after the shutdown grace a stopping dispatcher keeps trying to record verdicts
// before leaving them in the journal: the process must be gone by grace + 5 s.
constexpr auto kStopRecordTime = std::chrono::seconds(3);
// The time a verdict may take from the end of its transfer to the store, kept free at the end
// of a lease: the next flush, and a commit.
constexpr auto kRecordMargin = std::chrono::seconds(1);
// Sends handed to the connector beyond those it works on: enough to keep every connection busy
// between completions, few enough that pacing and deadlines stay in the dispatcher's hands.
constexpr std::size_t kQueuedPerConnection = 1;

// One line per message that ends without reaching its recipient, so an operator can tell why
// from the log alone (and grep it by kit, partner or address).
void log_final_failure(const store::Outcome& o, const std::string& kit, const std::string& step,
                       const std::string& partner, const std::string& recipient) {
  const char* what = o.kind == store::OutcomeKind::bounced   ? "bounced"
                     : o.kind == store::OutcomeKind::expired ? "expired"
                                                             : "failed";
  spdlog::warn("message {}: kit {} step {} partner {} recipient {}: {}", what, kit, step, partner,
               recipient, o.detail);
}

}  // namespace

Dispatcher::Dispatcher(asio::io_context& io, asio::thread_pool& db_pool, store::Store& store,
                       SnapshotHolder& snapshots, deliver::EmailConnector& connector,
                       deliver::WebhookConnector* webhooks, metrics::Registry& metrics, Clock clock,
                       std::string owner, Journal& journal)
    : io_(io),
      db_pool_(db_pool),
      store_(store),
      snapshots_(snapshots),
      connector_(connector),
      webhooks_(webhooks),
      metrics_(metrics),
      clock_(std::move(clock)),
      owner_(std::move(owner)),
      journal_(journal),
      limits_(0, 0, 0),
      claim_timer_(io),
      pace_timer_(io),
      flush_timer_(io),
      grace_timer_(io),
      give_up_timer_(io),
      claim_backoff_(kStoreRetryFirst, kStoreRetryMax),
      flush_backoff_(kStoreRetryFirst, kStoreRetryMax),
      claim_errors_(kErrorLogInterval),
      flush_errors_(kErrorLogInterval),
      random_state_(std::hash<std::string>{}(owner_) | 1) {
  const Config& config = snapshots_.get()->config;
  batch_size_ = static_cast<std::size_t>(config.delivery.batch_size);
  lease_ = config.delivery.lease;
  transfer_timeout_ = config.smtp.timeout;
  webhook_timeout_ = webhooks_ != nullptr
                         ? std::chrono::ceil<std::chrono::seconds>(webhooks_->transfer_timeout())
                         : std::chrono::seconds(0);
  if (webhooks_ != nullptr && lease_ <= webhook_timeout_ + kRecordMargin) {
    spdlog::warn(
        "delivery.lease ({}s) leaves no time for a webhook: a request may take {}s and must end "
        "before the lease does; webhook messages will go back to the queue unsent",
        lease_.count(), webhook_timeout_.count());
  }
  if (lease_ <= transfer_timeout_ + kRecordMargin) {
    spdlog::warn(
        "delivery.lease ({}s) leaves no time to send: a send may take smtp.timeout ({}s) and "
        "must end before the lease does; messages will go back to the queue unsent",
        lease_.count(), transfer_timeout_.count());
  }
  // Every final state is exported from the start, at zero, so an alert on failures needs no
  // failure to have happened first.
  for (auto kind :
       {store::OutcomeKind::sent, store::OutcomeKind::failed, store::OutcomeKind::bounced,
        store::OutcomeKind::expired, store::OutcomeKind::suppressed})
    metrics_.add("messages_total", metrics::label_set({{"state", store::to_string(kind)}}), 0);
  metrics_.describe("claim_passes_held_total",
                    "Claim passes that leased nothing because sending is held (the suppression "
                    "file cannot be read or validated)");
  metrics_.add("claim_passes_held_total", "", 0);
  policy_ = RetryPolicy{config.delivery.max_attempts, config.delivery.backoff_base,
                        config.delivery.backoff_max};
  limits_ =
      deliver::RateLimits(config.limits.messages_per_second, config.limits.per_partner_per_second,
                          config.limits.per_domain_per_second);
}

void Dispatcher::start() {
  asio::post(io_, [this] { claim(); });
}

void Dispatcher::poke() {
  asio::post(io_, [this] {
    last_claim_empty_ = false;
    update_idle();
    claim_timer_.cancel();
    claim();
  });
}

void Dispatcher::claim() {
  if (stopping_ || claiming_ || in_hand_ >= kInHandBatches * batch_size_) return;
  // Sending is held (the suppression file cannot be trusted): leave the queue as it is rather
  // than lease every due row only to defer it again, an update and an event per message per
  // pass. Looked at again every poll, so sending resumes within a second of the fix.
  if (const auto snapshot = snapshots_.get(); !snapshot->sending_held().empty()) {
    if (!held_) {
      held_ = true;
      spdlog::error("sending held: {}; claiming nothing until then", snapshot->sending_held());
    }
    metrics_.add("claim_passes_held_total", "");
    last_claim_empty_ = true;
    update_idle();
    claim_timer_.expires_after(kIdlePoll);
    claim_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec == asio::error::operation_aborted) return;
      claim();
    });
    return;
  }
  if (held_) {
    held_ = false;
    spdlog::info("sending resumes: the suppression file is readable again");
  }
  claiming_ = true;
  update_idle();
  asio::post(db_pool_, [this] {
    const SysTime now = clock_();
    // Taken before the claim, so the lease ends no earlier than assumed: a send that starts by
    // the deadline ends, timeout included, with a margin to record its verdict before it does.
    const auto lease_end = std::chrono::steady_clock::now() + lease_ - kRecordMargin;
    try {
      auto rows = store_.claim(owner_, batch_size_, now, lease_);
      Prepared prepared = prepare(std::move(rows), now);
      for (auto& ready : prepared.ready)
        ready.email.deadline = lease_end - (ready.webhook ? webhook_timeout_ : transfer_timeout_);
      asio::post(io_, [this, p = std::move(prepared)]() mutable { on_claimed(std::move(p)); });
    } catch (const std::exception& e) {
      asio::post(io_, [this, error = std::string(e.what())] {
        claiming_ = false;
        const auto wait = claim_backoff_.next(draw());
        if (auto count = claim_errors_.occurred(std::chrono::steady_clock::now())) {
          spdlog::error(
              "claiming due messages failed ({} times since last said): {}; next try in {}ms",
              *count, error, wait.count());
        }
        update_idle();
        if (stopping_) {
          check_stopped();
          return;
        }
        claim_timer_.expires_after(wait);
        claim_timer_.async_wait([this](boost::system::error_code ec) {
          if (ec == asio::error::operation_aborted) return;
          claim();
        });
      });
    }
  });
}

// Runs on the database pool. A store error costs nothing worse than a message of an opted-out
// pair that slipped past the opt-out's own cancellation going out: failing the batch would
// strand its leased rows until the lease ran out.
std::set<std::pair<std::string, std::string>> Dispatcher::opted_out_pairs() const {
  try {
    return store::Proofs(store_).opted_out_pairs();
  } catch (const store::StoreError& e) {
    spdlog::warn("cannot read proof opt-outs ({}); deciding this batch without them", e.what());
    return {};
  }
}

// Runs on the database pool: decides what each leased row needs and renders the ones to send.
Dispatcher::Prepared Dispatcher::prepare(std::vector<store::ClaimedMessage> rows,
                                         SysTime now) const {
  using store::OutcomeKind;
  Prepared out;
  out.claimed = rows.size();
  const auto snapshot = snapshots_.get();
  // Template data for a (kit, partner) pair is built once per batch, not once per message.
  std::map<std::pair<const Kit*, const Partner*>, render::Context> contexts;
  store::WebhookEndpoints endpoints(store_);
  std::map<const Partner*, bool> endpoint_disabled;  // looked up once per batch
  // Read only when there is something to decide: an idle daemon claims every second.
  const auto opted_out =
      rows.empty() ? std::set<std::pair<std::string, std::string>>{} : opted_out_pairs();
  for (auto& row : rows) {
    if (row.reclaimed) ++out.reclaimed;
    // The opt-out settled what was queued; this catches rows a planner queued at that moment.
    if (opted_out.count({row.kit_id, row.partner_id}) != 0) {
      out.settled.push_back(make_outcome(row.id, OutcomeKind::expired, store::kOptedOutDetail));
      continue;
    }
    Decision decision = row.channel == Channel::proof ? decide_proof(row, *snapshot, now, policy_)
                                                      : decide(row, *snapshot, now, policy_);
    if (decision.settle) {
      if (decision.settle->kind == OutcomeKind::expired ||
          decision.settle->kind == OutcomeKind::failed)
        log_final_failure(*decision.settle, row.kit_id, row.step_id, row.partner_id, row.email);
      out.settled.push_back(std::move(*decision.settle));
      continue;
    }
    const auto& [kit, step, partner] = *decision.send;
    try {
      auto [ctx_it, fresh] = contexts.try_emplace({&kit->kit, partner});
      if (fresh)
        ctx_it->second =
            render::make_context(snapshot->config, kit->kit, *partner, snapshot->link_secret);
      const render::Context& ctx = ctx_it->second;
      if (step->channel == Channel::webhook) {
        if (!partner->webhook || webhooks_ == nullptr) {
          out.settled.push_back(make_outcome(row.id, OutcomeKind::failed,
                                             "partner has no [webhook] url to send it to"));
          log_final_failure(out.settled.back(), row.kit_id, row.step_id, row.partner_id,
                            row.email);
          continue;
        }
        auto [disabled, fresh_lookup] = endpoint_disabled.try_emplace(partner, false);
        if (fresh_lookup) {
          try {
            disabled->second = endpoints.disabled(partner->id, partner->webhook->url);
          } catch (const store::StoreError& e) {
            // Failing the batch would strand its leased rows until the lease ran out; a request
            // to an endpoint that turns out to be disabled costs one more 410 at worst.
            spdlog::warn("partner {}: cannot read the webhook endpoint's state ({}); sending",
                         partner->id, e.what());
          }
        }
        if (disabled->second) {
          out.settled.push_back(make_outcome(
              row.id, OutcomeKind::failed,
              "webhook endpoint is disabled (channeld webhooks status; replay to send again)"));
          log_final_failure(out.settled.back(), row.kit_id, row.step_id, row.partner_id,
                            row.email);
          continue;
        }
        Ready ready;
        ready.email.id = row.id;
        ready.email.partner_id = row.partner_id;
        ready.email.recipient = row.email;
        ready.domain = partner->webhook->url;  // the per-domain bucket paces one endpoint
        ready.attempts = row.attempts;
        ready.rendered_version = kit->kit.version;
        ready.kit_id = row.kit_id;
        ready.step_id = row.step_id;
        ready.webhook_url = partner->webhook->url;
        ready.webhook = deliver::WebhookRequest{
            row.id, partner->webhook->url, deliver::webhook_id(row.idempotency_key),
            partner->webhook->key,
            render::render_payload(*kit->templates, *step, ctx, store::contact_from_json(row.contact_json),
                                   row.idempotency_key)};
        out.ready.push_back(std::move(ready));
        continue;
      }
      auto message =
          row.channel == Channel::proof
              ? render_proof_row(*decision.send, ctx, row, now, snapshot->config.proofs.lead_time)
              : render::render_email(*kit->templates, *step, ctx,
                                     store::contact_from_json(row.contact_json),
                                     row.idempotency_key, now);
      Ready ready;
      ready.email.id = row.id;
      ready.email.envelope_from = std::move(message.envelope_from);
      ready.email.recipient = std::move(message.recipient);
      ready.email.partner_id = row.partner_id;
      ready.email.file_stem = (row.channel == Channel::proof ? "proof-" : "") + row.kit_id + "-" +
                              row.step_id + "-" + row.email;
      ready.email.mime = std::move(message.mime);
      if (connector_.wants_html()) ready.email.html = std::move(message.html);
      ready.domain = row.email.substr(row.email.find('@') + 1);
      ready.attempts = row.attempts;
      ready.rendered_version = kit->kit.version;
      ready.message_id = std::move(message.message_id);
      ready.kit_id = row.kit_id;
      ready.step_id = row.step_id;
      out.ready.push_back(std::move(ready));
    } catch (const std::exception& e) {
      // Validation renders every template for every partner, so this is a contact whose row
      // breaks a template: a permanent failure for this message only.
      out.settled.push_back(
          make_outcome(row.id, OutcomeKind::failed, std::string("cannot render: ") + e.what()));
      log_final_failure(out.settled.back(), row.kit_id, row.step_id, row.partner_id, row.email);
    }
  }
  return out;
}

void Dispatcher::on_claimed(Prepared prepared) {
  claiming_ = false;
  claim_backoff_.reset();
  if (auto unsaid = claim_errors_.clear(); unsaid > 0)
    spdlog::info("claiming works again ({} failures not logged)", unsaid);
  in_hand_ += prepared.claimed;
  last_claim_empty_ = prepared.claimed == 0;
  if (prepared.reclaimed > 0) {
    // These rows were leased by a daemon that died mid-send: the server may have accepted them.
    spdlog::warn(
        "{} messages were leased by a daemon that stopped mid-send; re-sending them may "
        "deliver duplicates (counted in channeld_messages_reclaimed_total)",
        prepared.reclaimed);
    metrics_.add("messages_reclaimed_total", "", prepared.reclaimed);
  }
  if (stopping_) {
    // Leased rows we will not send: release() at the end of stop() returns them unchanged.
    in_hand_ -= prepared.ready.size();
    for (auto& o : prepared.settled) settle(std::move(o));
    update_idle();
    check_stopped();
    return;
  }
  for (auto& o : prepared.settled) settle(std::move(o));
  for (auto& r : prepared.ready) {
    if (r.webhook) ++ready_webhooks_;
    ready_.push_back(std::move(r));
  }
  update_idle();
  pump();
  if (prepared.claimed == batch_size_) {
    claim();
  } else {
    claim_timer_.expires_after(kIdlePoll);
    claim_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec == asio::error::operation_aborted) return;
      claim();
    });
  }
}

void Dispatcher::pump() {
  const auto now = deliver::TokenBucket::Clock::now();
  auto shortest_wait = deliver::TokenBucket::Clock::duration::max();
  const std::size_t room = connector_.parallelism() * (1 + kQueuedPerConnection);
  // Webhooks have a connector, and so a room, of their own: a slow endpoint's rows wait here,
  // where the deadline below still applies, not in its queue.
  const std::size_t webhook_room =
      webhooks_ != nullptr ? webhooks_->parallelism() * (1 + kQueuedPerConnection) : 0;
  for (auto it = ready_.begin(); it != ready_.end();) {
    const bool email_full = connector_.in_flight() >= room;
    // Webhooks count as full when no webhook row is left, so that a full email connector still
    // ends the walk at once. Only the dispatcher's own requests count: the event feed shares
    // the connector, and the feed's completions never call pump(), so counting theirs could
    // leave rows here with nothing to wake them.
    const bool webhooks_full =
        webhooks_ == nullptr || ready_webhooks_ == 0 || webhooks_in_flight_ >= webhook_room;
    if (email_full && webhooks_full) break;
    if (now > it->email.deadline) {
      auto o = make_outcome(it->email.id, store::OutcomeKind::deferred,
                            "lease nearly expired before sending; returned to the queue");
      o.retry_at = clock_();
      settle(std::move(o));
      if (it->webhook) --ready_webhooks_;
      it = ready_.erase(it);
      continue;
    }
    if (it->webhook ? webhooks_full : email_full) {
      ++it;
      continue;
    }
    auto wait = limits_.wait(it->email.partner_id, it->domain, now);
    if (wait > deliver::TokenBucket::Clock::duration::zero()) {
      shortest_wait = std::min(shortest_wait, wait);
      ++it;
      continue;
    }
    limits_.take(it->email.partner_id, it->domain, now);
    Ready ready = std::move(*it);
    it = ready_.erase(it);
    if (ready.webhook) {
      --ready_webhooks_;
      deliver::WebhookRequest request = std::move(*ready.webhook);
      ready.webhook.reset();
      request.deadline = ready.email.deadline;
      ++webhooks_in_flight_;
      webhooks_->send(std::move(request),
                      [this, r = std::move(ready)](deliver::WebhookResult result) {
                        on_webhook_answered(r, result);
                      });
      continue;
    }
    auto email = std::move(ready.email);
    ready.email.id = email.id;
    ready.email.partner_id = email.partner_id;
    ready.email.recipient = email.recipient;
    connector_.send(std::move(email), [this, r = std::move(ready)](deliver::SendResult result) {
      on_sent(r, result);
    });
  }
  // A full connector calls pump() again on its next completion; only pacing needs the timer.
  if (!ready_.empty() && !pace_armed_ &&
      shortest_wait != deliver::TokenBucket::Clock::duration::max()) {
    pace_armed_ = true;
    pace_timer_.expires_after(shortest_wait);
    pace_timer_.async_wait([this](boost::system::error_code ec) {
      pace_armed_ = false;
      if (ec == asio::error::operation_aborted || stopping_) return;
      pump();
    });
  }
}

void Dispatcher::on_sent(const Ready& ready, const deliver::SendResult& result) {
  metrics_.send_latency().observe(std::chrono::duration<double>(result.latency).count());
  store::Outcome o = outcome_of_send(ready.email.id, result.verdict, result.detail, ready.attempts,
                                     clock_(), policy_);
  if (o.kind == store::OutcomeKind::sent) {
    o.message_id = ready.message_id;
    o.rendered_version = ready.rendered_version;
    count_sent();
  }
  if (result.verdict != deliver::Verdict::unsent) {
    // Before this connection starts its next message (the connector calls us first): after
    // kill -9, a restart replays this line instead of sending the message again.
    if (auto error = journal_.append(o); !error.empty())
      spdlog::error("delivery journal: {}; a crash now could re-send this message", error);
  }
  if (o.kind == store::OutcomeKind::failed || o.kind == store::OutcomeKind::bounced)
    log_final_failure(o, ready.kit_id, ready.step_id, ready.email.partner_id,
                      ready.email.recipient);
  settle(std::move(o));
  if (!stopping_) pump();
  check_stopped();
}

void Dispatcher::count_sent() {
  const auto now = std::chrono::steady_clock::now();
  if (throughput_.sent++ == 0) throughput_.first = now;
  throughput_.last = now;
}

void Dispatcher::on_webhook_answered(const Ready& ready, const deliver::WebhookResult& result) {
  --webhooks_in_flight_;
  metrics_.send_latency().observe(std::chrono::duration<double>(result.latency).count());
  // Spreads retries of endpoints that failed together; reproducible per message and attempt.
  const auto mix = static_cast<std::uint64_t>(ready.email.id) * 0x9E3779B97F4A7C15ULL +
                   static_cast<std::uint64_t>(ready.attempts) * 0xBF58476D1CE4E5B9ULL;
  const double jitter = static_cast<double>((mix >> 11) % 1000) / 1000.0;
  const SysTime now = clock_();
  WebhookSettlement s = settle_webhook(ready.email.id, result, ready.attempts, now, jitter);
  if (s.outcome.kind == store::OutcomeKind::sent) {
    s.outcome.rendered_version = ready.rendered_version;
    count_sent();
  }
  // As for email: after kill -9 a restart replays this line instead of posting again.
  if (auto error = journal_.append(s.outcome); !error.empty())
    spdlog::error("delivery journal: {}; a crash now could re-send this message", error);
  if (s.disable_reason) {
    spdlog::error(
        "partner {}: webhook endpoint {} disabled: {}; nothing more is sent to it until "
        "`channeld webhooks replay --partner {}` or a new [webhook] url",
        ready.email.partner_id, ready.webhook_url, *s.disable_reason, ready.email.partner_id);
    metrics_.add("webhook_endpoints_disabled_total",
                 metrics::label_set({{"partner", ready.email.partner_id}}));
    asio::post(db_pool_, [this, partner = ready.email.partner_id, url = ready.webhook_url,
                          reason = *s.disable_reason, now] {
      try {
        store::WebhookEndpoints(store_).disable(partner, url, reason, now);
      } catch (const std::exception& e) {
        // The next failure disables it again; until then messages keep their own schedule.
        spdlog::error("partner {}: recording the disabled webhook endpoint failed: {}", partner,
                      e.what());
      }
    });
  }
  if (s.outcome.kind == store::OutcomeKind::failed)
    log_final_failure(s.outcome, ready.kit_id, ready.step_id, ready.email.partner_id,
                      ready.email.recipient);
  settle(std::move(s.outcome));
  if (!stopping_) pump();
  check_stopped();
}

std::size_t Dispatcher::in_flight() const {
  return connector_.in_flight() + (webhooks_ != nullptr ? webhooks_->in_flight() : 0);
}

void Dispatcher::settle(store::Outcome o) {
  metrics_.add("messages_total", metrics::label_set({{"state", store::to_string(o.kind)}}));
  outcomes_.push_back(std::move(o));
  schedule_flush();
}

// A full batch is written at once; a partial one after kFlushDelay, so verdicts that arrive
// together share a round trip. Every path that leaves verdicts waiting comes through here:
// a verdict left behind would keep its row leased until the lease expired, and then be sent
// again by whoever reclaims it.
void Dispatcher::schedule_flush() {
  if (outcomes_.empty() || gave_up_) return;
  if (outcomes_.size() >= kFlushSize && flush_backoff_.failures() == 0) {
    flush();
  } else if (!flush_armed_) {
    flush_armed_ = true;
    flush_timer_.expires_after(kFlushDelay);
    flush_timer_.async_wait([this](boost::system::error_code ec) {
      flush_armed_ = false;
      if (ec == asio::error::operation_aborted) return;
      flush();
    });
  }
}

void Dispatcher::flush() {
  if (recording_ || outcomes_.empty() || gave_up_) return;
  recording_ = true;
  std::vector<store::Outcome> batch;
  batch.swap(outcomes_);
  // The batch holds every verdict not yet recorded (a failed batch is put back whole), so once
  // it is in the store every journal line before this cut is too.
  const std::uint64_t mark = journal_.cut();
  asio::post(db_pool_, [this, b = std::move(batch), mark]() mutable {
    std::string error;
    try {
      store_.record(owner_, b, clock_());
    } catch (const std::exception& e) {
      error = e.what();
    }
    asio::post(io_, [this, b = std::move(b), mark, error = std::move(error)]() mutable {
      if (!error.empty()) {
        if (auto count = flush_errors_.occurred(std::chrono::steady_clock::now()))
          spdlog::error(
              "recording {} delivery outcomes failed ({} times since last said): {}; "
              "they are kept in the journal and retried",
              b.size(), *count, error);
      }
      on_recorded(std::move(b), mark, error.empty());
    });
  });
}

void Dispatcher::on_recorded(std::vector<store::Outcome> batch, std::uint64_t mark, bool ok) {
  recording_ = false;
  if (!ok) {
    // Never forget a verdict: put it back and try again after a backoff.
    batch.insert(batch.end(), std::make_move_iterator(outcomes_.begin()),
                 std::make_move_iterator(outcomes_.end()));
    outcomes_.swap(batch);
    retry_flush();
    check_stopped();
    return;
  }
  journal_.recorded(mark);
  flush_backoff_.reset();
  if (auto unsaid = flush_errors_.clear(); unsaid > 0)
    spdlog::info("recording outcomes works again ({} failures not logged)", unsaid);
  in_hand_ -= batch.size();
  update_idle();
  // Verdicts that arrived while this batch was being written wait for the next flush.
  schedule_flush();
  claim();
  check_stopped();
}

void Dispatcher::retry_flush() {
  if (gave_up_) return;
  flush_timer_.cancel();
  flush_armed_ = true;
  flush_timer_.expires_after(flush_backoff_.next(draw()));
  flush_timer_.async_wait([this](boost::system::error_code ec) {
    flush_armed_ = false;
    if (ec == asio::error::operation_aborted) return;
    flush();
  });
}

void Dispatcher::stop(std::chrono::seconds grace, std::function<void()> done) {
  asio::post(io_, [this, grace, done = std::move(done)]() mutable {
    if (stopping_) return;
    stopping_ = true;
    on_stopped_ = std::move(done);
    claim_timer_.cancel();
    pace_timer_.cancel();
    // Rendered but not handed over: still leased, released below.
    in_hand_ -= ready_.size();
    ready_.clear();
    ready_webhooks_ = 0;
    grace_timer_.expires_after(grace);
    grace_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec == asio::error::operation_aborted || in_flight() == 0) return;
      spdlog::warn("{} messages still in flight after the shutdown grace period; cancelling",
                   in_flight());
      connector_.cancel_all();
      if (webhooks_ != nullptr) webhooks_->cancel_all();
    });
    give_up_timer_.expires_after(grace + kStopRecordTime);
    give_up_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec == asio::error::operation_aborted || released_) return;
      gave_up_ = true;
      spdlog::error(
          "stopping: {} delivery outcomes could not be recorded (the database is unreachable); "
          "they stay in the journal in paths.state and are recorded at the next start",
          outcomes_.size() + (recording_ ? 1 : 0));
      finish_stop();
    });
    // Verdicts waiting for a retry are tried once more now.
    flush_timer_.cancel();
    flush_armed_ = false;
    flush();
    check_stopped();
  });
}

void Dispatcher::check_stopped() {
  if (!stopping_ || released_ || claiming_ || recording_ || in_flight() > 0) return;
  if (!outcomes_.empty()) {
    if (!flush_armed_) flush();
    return;
  }
  released_ = true;
  grace_timer_.cancel();
  flush_timer_.cancel();
  give_up_timer_.cancel();
  asio::post(db_pool_, [this] {
    try {
      auto n = store_.release(owner_);
      if (n > 0) spdlog::info("released {} leased messages back to the queue", n);
    } catch (const std::exception& e) {
      spdlog::error("releasing leased messages failed ({}); their lease expires in {}s", e.what(),
                    lease_.count());
    }
    asio::post(io_, [this] { finish_stop(); });
  });
}

// Once, whichever comes first: everything recorded and released, or the give-up time.
void Dispatcher::finish_stop() {
  grace_timer_.cancel();
  flush_timer_.cancel();
  give_up_timer_.cancel();
  if (on_stopped_) {
    auto done = std::move(on_stopped_);
    on_stopped_ = nullptr;
    done();
  }
}

void Dispatcher::update_idle() {
  idle_.store(!claiming_ && in_hand_ == 0 && last_claim_empty_, std::memory_order_release);
}

// xorshift64: jitter needs no quality, only spread between daemons and tries.
double Dispatcher::draw() {
  random_state_ ^= random_state_ << 13;
  random_state_ ^= random_state_ >> 7;
  random_state_ ^= random_state_ << 17;
  return static_cast<double>(random_state_ >> 11) / static_cast<double>(1ULL << 53);
}

}  // namespace channeld::app
