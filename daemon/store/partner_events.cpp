#include "store/partner_events.hpp"

#include "store/session.hpp"

namespace channeld::store {

namespace {

// As the outbox's claim (store.cpp, kClaim): expired leases first, then due events, each part
// with a plain LIMIT so the planner walks the partial indexes.
constexpr const char* kClaimEvents = R"(
  WITH expired AS (
    SELECT id FROM partner_event
    WHERE state = 'sending' AND lease_until < CAST(:now AS timestamptz)
    ORDER BY lease_until
    LIMIT :n
    FOR UPDATE SKIP LOCKED),
  due AS (
    SELECT id FROM partner_event
    WHERE state = 'queued' AND due_at <= CAST(:now AS timestamptz)
    ORDER BY due_at, id
    LIMIT :n
    FOR UPDATE SKIP LOCKED)
  UPDATE partner_event e
  SET state = 'sending', lease_owner = :owner, lease_until = CAST(:until AS timestamptz),
      attempts = e.attempts + 1, updated_at = CAST(:now AS timestamptz)
  FROM (SELECT id FROM expired UNION ALL SELECT id FROM due LIMIT :n) claimed
  WHERE e.id = claimed.id
  RETURNING e.id, e.event_key, e.partner_id, e.event_type, e.body, e.attempts)";

constexpr const char* kRecordEvents = R"(
  WITH outcome AS (
    SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:kinds AS text[]),
                         CAST(:details AS text[]), CAST(:retry_at AS timestamptz[]))
           AS v(id, kind, detail, retry_at)),
  settled AS (
    UPDATE partner_event e
    SET state = CASE WHEN v.kind IN ('retry', 'deferred') THEN 'queued'
                     WHEN v.kind = 'sent' THEN 'sent' ELSE 'failed' END,
        due_at = CASE WHEN v.kind IN ('retry', 'deferred') THEN v.retry_at ELSE e.due_at END,
        attempts = CASE WHEN v.kind = 'deferred' THEN e.attempts - 1 ELSE e.attempts END,
        last_error = CASE WHEN v.kind IN ('retry', 'failed') THEN v.detail ELSE e.last_error END,
        sent_at = CASE WHEN v.kind = 'sent' THEN CAST(:now AS timestamptz) ELSE e.sent_at END,
        lease_owner = NULL, lease_until = NULL, updated_at = CAST(:now AS timestamptz)
    FROM outcome v
    WHERE e.id = v.id AND e.state = 'sending' AND e.lease_owner = :owner
    RETURNING 1)
  SELECT count(*) FROM settled)";

}  // namespace

void PartnerEvents::subscribe(const std::map<std::string, std::set<std::string>>& feeds) {
  ArrayLiteral partners, types;
  for (const auto& [partner, wanted] : feeds) {
    for (const auto& type : wanted) {
      partners.add(partner);
      types.add(type);
    }
  }
  const std::string partners_text = partners.text(), types_text = types.text();
  store_.impl().run("recording the partner event feeds", [&](soci::session& sql) {
    soci::transaction tx(sql);
    // Reloads are frequent and feeds rarely change: compare first, write only a difference.
    int differs = 0;
    sql << "WITH wanted AS (SELECT * FROM unnest(CAST(:partners AS text[]),"
           " CAST(:types AS text[])) AS w(partner_id, event_type))"
           " SELECT CAST(EXISTS ((SELECT * FROM wanted EXCEPT SELECT partner_id, event_type"
           " FROM partner_feed) UNION ALL (SELECT partner_id, event_type FROM partner_feed"
           " EXCEPT SELECT * FROM wanted)) AS integer)",
        soci::use(partners_text, "partners"), soci::use(types_text, "types"), soci::into(differs);
    if (differs == 0) return;
    sql << "DELETE FROM partner_feed";
    sql << "INSERT INTO partner_feed (partner_id, event_type)"
           " SELECT * FROM unnest(CAST(:partners AS text[]), CAST(:types AS text[]))",
        soci::use(partners_text, "partners"), soci::use(types_text, "types");
    tx.commit();
  });
}

std::vector<ClaimedEvent> PartnerEvents::claim(const std::string& owner, std::size_t limit,
                                               SysTime now, std::chrono::seconds lease) {
  if (limit == 0) return {};
  const std::string now_text = timestamp_text(now);
  const std::string until_text = timestamp_text(now + lease);
  const long long n = static_cast<long long>(limit);
  return store_.impl().run("claiming partner events", [&](soci::session& sql) {
    std::vector<long long> ids(limit);
    std::vector<std::string> keys(limit), partners(limit), types(limit), bodies(limit);
    std::vector<int> attempts(limit);
    sql << kClaimEvents, soci::use(now_text, "now"), soci::use(until_text, "until"),
        soci::use(owner, "owner"), soci::use(n, "n"), soci::into(ids), soci::into(keys),
        soci::into(partners), soci::into(types), soci::into(bodies), soci::into(attempts);
    std::vector<ClaimedEvent> claimed(ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i) {
      claimed[i].id = ids[i];
      claimed[i].event_key = std::move(keys[i]);
      claimed[i].partner_id = std::move(partners[i]);
      claimed[i].event_type = std::move(types[i]);
      claimed[i].body = std::move(bodies[i]);
      claimed[i].attempts = attempts[i];
    }
    return claimed;
  });
}

void PartnerEvents::record(const std::string& owner, const std::vector<Outcome>& outcomes,
                           SysTime now) {
  if (outcomes.empty()) return;
  ArrayLiteral ids, kinds, details, retry_at;
  for (const Outcome& o : outcomes) {
    ids.add(static_cast<long long>(o.id));
    kinds.add(to_string(o.kind));
    details.add(o.detail);
    retry_at.add(o.retry_at);
  }
  const std::string ids_text = ids.text(), kinds_text = kinds.text(), details_text = details.text(),
                    retry_text = retry_at.text(), now_text = timestamp_text(now);
  store_.impl().run("recording partner event outcomes", [&](soci::session& sql) {
    long long settled = 0;
    sql << kRecordEvents, soci::use(ids_text, "ids"), soci::use(kinds_text, "kinds"),
        soci::use(details_text, "details"), soci::use(retry_text, "retry_at"),
        soci::use(owner, "owner"), soci::use(now_text, "now"), soci::into(settled);
  });
}

std::size_t PartnerEvents::release(const std::string& owner) {
  return store_.impl().run("releasing partner events", [&](soci::session& sql) {
    long long released = 0;
    sql << "WITH released AS (UPDATE partner_event SET state = 'queued',"
           " attempts = attempts - 1, lease_owner = NULL, lease_until = NULL,"
           " updated_at = now() WHERE state = 'sending' AND lease_owner = :owner RETURNING 1)"
           " SELECT count(*) FROM released",
        soci::use(owner, "owner"), soci::into(released);
    return static_cast<std::size_t>(released);
  });
}

std::optional<SysTime> PartnerEvents::next_due() {
  return store_.impl().run("reading the next partner event", [](soci::session& sql) {
    long long epoch = 0;
    soci::indicator ind = soci::i_null;
    sql << "SELECT CAST(extract(epoch FROM least("
           " (SELECT min(due_at) FROM partner_event WHERE state = 'queued'),"
           " (SELECT min(lease_until) FROM partner_event WHERE state = 'sending'))) AS bigint)",
        soci::into(epoch, ind);
    return ind == soci::i_ok ? std::optional<SysTime>(from_epoch(epoch)) : std::nullopt;
  });
}

}  // namespace channeld::store
