#include "app/decisions.hpp"

#include "app/webhook_decisions.hpp"
#include "schedule/schedule.hpp"

namespace channeld::app {

store::Outcome make_outcome(std::int64_t id, store::OutcomeKind kind, std::string detail) {
  store::Outcome o;
  o.id = id;
  o.kind = kind;
  o.detail = std::move(detail);
  return o;
}

namespace {
Decision settle(std::int64_t id, store::OutcomeKind kind, std::string detail,
                SysTime retry_at = {}) {
  Decision d;
  d.settle = make_outcome(id, kind, std::move(detail));
  d.settle->retry_at = retry_at;
  return d;
}
}  // namespace

Decision decide(const store::ClaimedMessage& row, const Snapshot& snapshot, SysTime now,
                const RetryPolicy& policy) {
  using store::OutcomeKind;
  if (row.suppressed) return settle(row.id, OutcomeKind::suppressed, "address is suppressed");
  // Input errors make a message wait, never settle it: it goes once the file is fixed. Only
  // a removed kit folder or partner file (a decision, not a mistake) stops it for good.
  const SysTime look_again = now + snapshot.config.delivery.scan_interval;
  if (!snapshot.sending_held().empty())
    return settle(row.id, OutcomeKind::deferred, snapshot.sending_held(), look_again);
  const catalog::ValidKit* kit = snapshot.live_kit(row.kit_id);
  if (kit == nullptr) {
    if (snapshot.kits.count(row.kit_id) != 0)
      return settle(row.id, OutcomeKind::deferred, "kit is refused; waiting for a fix", look_again);
    return settle(row.id, OutcomeKind::expired, "kit is no longer live");
  }
  const Partner* partner = snapshot.partner(row.partner_id);
  if (partner == nullptr && snapshot.partners.broken.count(row.partner_id) != 0)
    return settle(row.id, OutcomeKind::deferred, "partner file is refused; waiting for a fix",
                  look_again);
  if (partner == nullptr || !partner->active)
    return settle(row.id, OutcomeKind::expired, "partner is removed or suspended");
  if (auto held = kit->held_partners.find(row.partner_id); held != kit->held_partners.end())
    return settle(row.id, OutcomeKind::deferred, "partner held back for this kit: " + held->second,
                  look_again);
  const auto* zone = date::locate_zone(partner->timezone);
  if (schedule::expired(kit->kit, zone, now))
    return settle(row.id, OutcomeKind::expired, "kit expired");
  const Step* step = nullptr;
  for (const auto& s : kit->kit.steps)
    if (s.id == row.step_id) step = &s;
  if (step == nullptr)
    return settle(row.id, OutcomeKind::expired,
                  "step is not in kit version " + std::to_string(kit->kit.version));
  if (!schedule::in_window(kit->kit.schedule.window, zone, now)) {
    auto opens = schedule::next_window_open(kit->kit.schedule.window, zone, now);
    if (!opens) return settle(row.id, OutcomeKind::expired, "send window never opens");
    return settle(row.id, OutcomeKind::deferred, "outside the partner's send window", *opens);
  }
  // Webhooks retry on their own schedule (app/webhook_decisions.hpp), not delivery.max_attempts.
  const int max_attempts = row.channel == Channel::webhook ? kWebhookAttempts : policy.max_attempts;
  if (row.attempts > max_attempts)
    return settle(row.id, OutcomeKind::failed,
                  "gave up after " + std::to_string(max_attempts) + " attempts");
  Decision d;
  d.send = Sendable{kit, step, partner};
  return d;
}

store::Outcome outcome_of_send(std::int64_t id, deliver::Verdict verdict, const std::string& detail,
                               int attempts, SysTime now, const RetryPolicy& policy) {
  using deliver::Verdict;
  using store::OutcomeKind;
  store::Outcome o = make_outcome(id, OutcomeKind::sent, detail);
  switch (verdict) {
    case Verdict::sent:
      break;
    case Verdict::retry:
      if (attempts >= policy.max_attempts) {
        o.kind = OutcomeKind::failed;
        o.detail = "gave up after " + std::to_string(attempts) + " attempts: " + detail;
      } else {
        o.kind = OutcomeKind::retry;
        // Seeded by the row id: retries of one message are reproducible, different messages
        // spread out.
        o.retry_at = now + schedule::retry_delay(attempts, policy.backoff_base, policy.backoff_max,
                                                 static_cast<std::uint64_t>(id));
      }
      break;
    case Verdict::failed:
      o.kind = OutcomeKind::failed;
      break;
    case Verdict::hard_bounce:
      o.kind = OutcomeKind::bounced;
      break;
    case Verdict::unsent:  // the lease ran short before the send could start
      o.kind = OutcomeKind::deferred;
      o.retry_at = now;
      break;
  }
  return o;
}

}  // namespace channeld::app
