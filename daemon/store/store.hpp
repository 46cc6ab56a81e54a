// store: everything channeld keeps in PostgreSQL, through SOCI. Owns the schema (versioned
// migrations in store/migrations/*.sql, applied under an advisory lock), the durable outbox,
// the suppression list, kit states and delivery counts. All SQL lives in this component.
//
// Threads: Store is safe to call from many threads; each call borrows a session from an
// internal pool. Calls block on the network, so the app runs them on its database thread pool,
// never on the Asio thread that drives SMTP/HTTP I/O.
//
// Time: every decision about time (due, lease, retry) uses the caller's `now`, so tests and the
// daemon drive time through their Clock; the database clock only stamps audit columns of calls
// that take no `now` (created_at, a suppression's or expansion's time).
//
// Connections: a call that fails throws StoreError and is not retried here (it may have taken
// effect before the connection dropped); the caller decides. The session it used is checked
// (an empty query) when next leased and reconnected if it broke, so the call after an outage
// works again without restarting the daemon. Messages never contain the connection string or
// its password.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/model.hpp"

namespace channeld::store {

// Where the server's notices and warnings on every store connection go (a skipped ANALYZE,
// say): PostgreSQL's severity ("WARNING", "NOTICE") and its message. Unset, libpq writes them
// raw to stderr. Set once, before any Store is made; the app sends them to its log.
using NoticeSink = void (*)(std::string_view severity, std::string_view text);
void set_notice_sink(NoticeSink sink);

// A database call failed (connection lost, SQL error). Callers log it and retry later. The
// message names the operation ("claiming messages: ...") and never bound values or secrets.
class StoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Every session was busy for the whole wait a Store was built with: nothing was sent to the
// database. A burst, not an outage: the same call shortly after may well work.
class StoreBusy : public StoreError {
 public:
  using StoreError::StoreError;
};

// A message the scheduler wants sent. The idempotency key is derived from
// (kit_id, step_id, partner_id, email): the version is not part of it, so a new kit version
// never re-sends a step a contact already got. A partner's proof (channel proof) is keyed by
// store::proof_key (store/proofs.hpp) instead.
struct NewMessage {
  std::string kit_id;
  int kit_version = 0;
  std::string step_id;
  std::string partner_id;
  Channel channel = Channel::email;
  std::string email;         // lower-cased
  std::string contact_json;  // the contact row, for rendering at send time
  SysTime due_at{};
};
std::string idempotency_key(const std::string& kit_id, const std::string& step_id,
                            const std::string& partner_id, const std::string& email);

// The contact as the outbox keeps it (NewMessage::contact_json, ClaimedMessage::contact_json):
// the planner writes it, the dispatcher and the click tracker read it back to render.
std::string contact_json(const Contact& contact);
// Throws nlohmann::json::exception if `text` is not what contact_json() wrote.
Contact contact_from_json(const std::string& text);

// A row a dispatcher leased.
struct ClaimedMessage {
  std::int64_t id = 0;
  std::string idempotency_key;
  std::string kit_id;
  int kit_version = 0;
  std::string step_id;
  std::string partner_id;
  Channel channel = Channel::email;
  std::string email;
  std::string contact_json;
  int attempts = 0;         // including this one
  bool reclaimed = false;   // an earlier lease expired mid-send: it may have gone out already
  bool suppressed = false;  // the address is on the suppression list for this partner
};

enum class OutcomeKind {
  sent,        // the server said 250 (or the .eml was written)
  retry,       // transient failure: back to the queue at retry_at
  failed,      // permanent failure or out of attempts
  bounced,     // permanent failure for this address: also suppresses it
  suppressed,  // not sent: the address is suppressed
  expired,     // not sent: the kit expired or was removed
  deferred,    // not sent, not an attempt: outside the send window or rate-limited; due at retry_at
};

// An outcome kind as delivery_event.kind, the journal and the messages_total metric name it.
std::string_view to_string(OutcomeKind kind);
std::optional<OutcomeKind> outcome_kind_from(std::string_view text);

struct Outcome {
  std::int64_t id = 0;
  OutcomeKind kind = OutcomeKind::sent;
  std::string detail;  // server reply or error, never a secret
  SysTime retry_at{};  // retry and deferred
  std::string message_id;
  int rendered_version = 0;
  // When the verdict was reached, if not now: a verdict replayed from a dead daemon's journal
  // keeps its time as sent_at. The default means "at the time of recording".
  SysTime at{};
};

struct KitStateRow {
  std::string kit_id;
  int version = 0;
  std::string digest;
  std::string state;  // live | refused | expired | done | removed
  std::string error;
  SysTime updated_at{};
};

struct DeliveryCount {
  std::string kit_id;
  std::string partner_id;
  std::string state;
  std::int64_t count = 0;
};

class Store {
 public:
  // Connects `pool_size` sessions (at least one) to `url`, a libpq conninfo or URI. Throws
  // StoreError if the database is unreachable. Calls beyond pool_size at once wait for a
  // session: as long as it takes, or, with a `session_wait`, that long before they throw
  // StoreBusy.
  Store(const std::string& url, std::size_t pool_size,
        std::chrono::milliseconds session_wait = std::chrono::milliseconds{0});
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Applies pending migrations in one transaction under pg_advisory_xact_lock, so two daemons
  // starting together are safe. Returns the versions applied (empty if up to date).
  std::vector<int> migrate();
  // Highest applied migration, and the highest this binary ships.
  int schema_version();
  static int latest_schema_version();
  // True if a round trip to the server works. Never throws.
  bool ping();
  // How long the oldest call now in progress has held its session; zero when none is. A call
  // stuck in the database (a lock it waits for, a server that stopped answering) shows here
  // while every other session keeps working: the watchdog reads it. Any thread may call it.
  std::chrono::steady_clock::duration longest_call() const;

  // The key that signs link tokens when the config names no http.link_secret_file: made once,
  // at random, by whichever daemon asks first, and shared by every daemon on this database so a
  // link minted by one verifies on all.
  std::string link_secret();

  // ---- outbox ----
  // Inserts in one statement; rows whose idempotency key exists are skipped. Returns inserted.
  std::size_t enqueue(const std::vector<NewMessage>& batch);
  // After a planning pass queued `inserted` messages: at kStatisticsRefreshRows or more,
  // ANALYZE outbox now rather than when autovacuum next looks (up to a minute later, or never
  // when the new rows are under a tenth of a big table). Until then PostgreSQL plans the
  // claim from statistics that predate the new rows: believing the due set small, it reads
  // every due row into a bitmap and sorts them all on each claim, instead of reading the due
  // index in order and stopping after a batch. Returns whether it asked for the ANALYZE, which
  // is skipped while another session holds the table's maintenance lock.
  static constexpr std::size_t kStatisticsRefreshRows = 1000;
  bool refresh_outbox_statistics(std::size_t inserted);
  // Leases up to `limit` due rows (queued and due, or leased with an expired lease) to `owner`
  // for `lease`, with FOR UPDATE SKIP LOCKED so concurrent daemons never get the same row.
  // Expired leases come first, then queued rows by due_at. `owner` must be unique per running
  // process (host, pid and a random part), or a restarted daemon could settle rows it no longer
  // holds.
  std::vector<ClaimedMessage> claim(const std::string& owner, std::size_t limit, SysTime now,
                                    std::chrono::seconds lease);
  // Records outcomes of rows leased by `owner` in one statement and transaction: each row
  // moves to its outcome's state and gets a delivery_event. Rows `owner` no longer holds (the
  // lease expired and another owner reclaimed it) are left alone; a row whose lease expired but
  // that nobody reclaimed yet is still recorded, since the send did happen. `bounced` also
  // inserts a global suppression for the address.
  void record(const std::string& owner, const std::vector<Outcome>& outcomes, SysTime now);
  // Returns every row leased by `owner` to the queue as it was before the claim, the attempt
  // not counted (graceful shutdown: nothing was sent).
  std::size_t release(const std::string& owner);
  // When claim() could next return something: the earliest due_at of a queued row or
  // lease_until of a leased one. nullopt when the outbox holds no pending work.
  std::optional<SysTime> next_due();
  // True while any message of the kit is queued or leased.
  bool kit_has_unfinished(const std::string& kit_id);
  // Marks queued rows of a kit as expired (the kit expired or was removed). Rows being sent
  // are left to their dispatcher, which records them as expired itself.
  std::size_t expire_kit(const std::string& kit_id, SysTime now);
  // The same for every queued row of a partner (its file was deleted or it was suspended), in
  // one statement, `why` as each row's event detail. Returns how many. No index leads with
  // partner_id: this scans the outbox, which is fine for what an operator does now and then.
  std::size_t expire_partner(const std::string& partner_id, const std::string& why, SysTime now);

  // ---- expansion bookkeeping: which (kit, step, partner) were expanded for which audience ----
  bool expanded(const std::string& kit_id, const std::string& step_id,
                const std::string& partner_id, const std::string& contacts_digest);
  void mark_expanded(const std::string& kit_id, const std::string& step_id,
                     const std::string& partner_id, const std::string& contacts_digest);

  // ---- suppression ----
  // partner_id empty = every partner. Idempotent; never removed by an import.
  void suppress(const std::string& email, const std::string& partner_id, const std::string& reason);
  bool is_suppressed(const std::string& email, const std::string& partner_id);

  // ---- kits ----
  void record_kit_state(const KitStateRow& row);
  std::vector<KitStateRow> kit_states();

  // ---- results ----
  std::vector<DeliveryCount> delivery_counts();
  std::map<std::string, std::int64_t> counts_by_state();
  std::int64_t reclaimed_total();  // rows sent after a lease expired: possible duplicates

 // The session pool, for the store's own domain classes (store/*.cpp, see store/session.hpp);
  // nothing outside store/ can use it, as its definition is private to the component.
  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace channeld::store
