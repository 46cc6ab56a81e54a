// store/partner_events: the partner event feed's queue in PostgreSQL (migration 0010): which
// partners want which events (partner_feed, replaced from the partner files), and the events
// waiting to be pushed to their endpoints (partner_event), leased, retried and failed like the
// outbox's webhook rows. Events are queued by the statements that record the facts they report
// (Store::record, Engagement), never here, so a fact and its event commit together.
//
// Threads: like Store, safe from any thread; calls block on the database, so the daemon runs
// them on its database pool.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "store/store.hpp"

namespace channeld::store {

// An event a feed sender leased.
struct ClaimedEvent {
  std::int64_t id = 0;
  std::string event_key;  // the fact it reports: the webhook-id derives from it
  std::string partner_id;
  std::string event_type;
  std::string body;
  int attempts = 0;  // including this one
};

class PartnerEvents {
 public:
  explicit PartnerEvents(Store& store) : store_(store) {}

  // Makes `feeds` (partner id -> event types it wants) the whole subscription table, in one
  // transaction; a partner absent from it gets no events from now on. Writes nothing when the
  // table already says the same.
  void subscribe(const std::map<std::string, std::set<std::string>>& feeds);

  // Leases up to `limit` events (queued and due, or leased with an expired lease) to `owner`,
  // FOR UPDATE SKIP LOCKED, as Store::claim does for the outbox.
  std::vector<ClaimedEvent> claim(const std::string& owner, std::size_t limit, SysTime now,
                                  std::chrono::seconds lease);
  // Records outcomes (sent, retry, failed, deferred) of events `owner` still holds.
  void record(const std::string& owner, const std::vector<Outcome>& outcomes, SysTime now);
  // Returns every event leased by `owner` to the queue, the attempt not counted.
  std::size_t release(const std::string& owner);
  // When claim() could next return something (as Store::next_due); nullopt when no event waits.
  std::optional<SysTime> next_due();

 private:
  Store& store_;
};

}  // namespace channeld::store
