#include "store/webhooks.hpp"

#include "store/session.hpp"

namespace channeld::store {

void WebhookEndpoints::disable(const std::string& partner_id, const std::string& url,
                               const std::string& reason, SysTime now) {
  const std::string at = timestamp_text(now);
  store_.impl().run("disabling a webhook endpoint", [&](soci::session& sql) {
    sql << "INSERT INTO webhook_endpoint (partner_id, url, reason, disabled_at)"
           " VALUES (:partner, :url, :reason, CAST(:at AS timestamptz))"
           " ON CONFLICT (partner_id, url) DO NOTHING",
        soci::use(partner_id, "partner"), soci::use(url, "url"), soci::use(reason, "reason"),
        soci::use(at, "at");
  });
}

bool WebhookEndpoints::disabled(const std::string& partner_id, const std::string& url) {
  return store_.impl().run("reading a webhook endpoint", [&](soci::session& sql) {
    int found = 0;
    sql << "SELECT CAST(EXISTS (SELECT 1 FROM webhook_endpoint"
           " WHERE partner_id = :partner AND url = :url) AS integer)",
        soci::use(partner_id, "partner"), soci::use(url, "url"), soci::into(found);
    return found != 0;
  });
}

std::vector<DisabledEndpoint> WebhookEndpoints::all_disabled() {
  return store_.impl().run("reading webhook endpoints", [](soci::session& sql) {
    DisabledEndpoint row;
    long long at = 0;
    soci::statement st =
        (sql.prepare << "SELECT partner_id, url, reason,"
                        " CAST(extract(epoch FROM disabled_at) AS bigint)"
                        " FROM webhook_endpoint ORDER BY partner_id, url",
         soci::into(row.partner_id), soci::into(row.url), soci::into(row.reason), soci::into(at));
    st.execute();
    std::vector<DisabledEndpoint> rows;
    while (st.fetch()) {
      row.disabled_at = from_epoch(at);
      rows.push_back(row);
    }
    return rows;
  });
}

std::size_t WebhookEndpoints::enable(const std::string& partner_id) {
  return store_.impl().run("enabling a webhook endpoint", [&](soci::session& sql) {
    soci::statement st = (sql.prepare << "DELETE FROM webhook_endpoint WHERE partner_id = :partner",
                          soci::use(partner_id, "partner"));
    st.execute(true);
    return static_cast<std::size_t>(st.get_affected_rows());
  });
}

std::vector<FailedWebhook> WebhookEndpoints::failed(const std::string& partner_id,
                                                    std::size_t limit) {
  const long long max_rows = static_cast<long long>(limit);
  return store_.impl().run("reading failed webhooks", [&](soci::session& sql) {
    FailedWebhook row;
    long long id = 0;
    long long at = 0;
    soci::indicator error_ind = soci::i_ok;
    soci::statement st =
        (sql.prepare << "SELECT id, event, kit_id, step_id, email, attempts, last_error, at FROM ("
                        " SELECT id, '' AS event, kit_id, step_id, email, attempts, last_error,"
                        "  CAST(extract(epoch FROM updated_at) AS bigint) AS at"
                        "  FROM outbox WHERE partner_id = :partner AND state = 'failed'"
                        "  AND channel = 'webhook'"
                        " UNION ALL"
                        " SELECT e.id, e.event_type, o.kit_id, o.step_id, o.email, e.attempts,"
                        "  e.last_error, CAST(extract(epoch FROM e.updated_at) AS bigint)"
                        "  FROM partner_event e JOIN outbox o ON o.id = e.outbox_id"
                        "  WHERE e.partner_id = :partner AND e.state = 'failed') failed"
                        " ORDER BY at DESC, id DESC LIMIT :max",
         soci::use(partner_id, "partner"), soci::use(max_rows, "max"), soci::into(id),
         soci::into(row.event), soci::into(row.kit_id), soci::into(row.step_id),
         soci::into(row.email), soci::into(row.attempts), soci::into(row.last_error, error_ind),
         soci::into(at));
    st.execute();
    std::vector<FailedWebhook> rows;
    while (st.fetch()) {
      row.id = id;
      if (error_ind == soci::i_null) row.last_error.clear();
      row.failed_at = from_epoch(at);
      rows.push_back(row);
    }
    return rows;
  });
}

std::size_t WebhookEndpoints::replay(const std::string& partner_id,
                                     std::optional<std::int64_t> only, SysTime now) {
  Selection which;
  if (only) {
    which.all = false;
    which.steps.push_back(*only);
  }
  return replay(partner_id, which, now);
}

std::size_t WebhookEndpoints::replay(const std::string& partner_id, const Selection& which,
                                     SysTime now) {
  const std::string at = timestamp_text(now);
  ArrayLiteral steps, events;
  for (auto id : which.steps) steps.add(static_cast<long long>(id));
  for (auto id : which.events) events.add(static_cast<long long>(id));
  const std::string steps_text = steps.text(), events_text = events.text();
  const int all = which.all ? 1 : 0;
  return store_.impl().run("replaying failed webhooks", [&](soci::session& sql) {
    soci::transaction tx(sql);
    long long queued = 0, events_queued = 0;
    // One statement: the rows go back to the queue and each gets its event, or none does.
    sql << "WITH replayed AS ("
           "  UPDATE outbox SET state = 'queued', attempts = 0, due_at = CAST(:at AS timestamptz),"
           "    updated_at = CAST(:at AS timestamptz)"
           "  WHERE partner_id = :partner AND state = 'failed' AND channel = 'webhook'"
           "    AND (:all = 1 OR id = ANY (CAST(:steps AS bigint[])))"
           "  RETURNING id),"
           " events AS ("
           "  INSERT INTO delivery_event (outbox_id, at, kind, detail)"
           "  SELECT id, CAST(:at AS timestamptz), 'replayed', 'replayed by an operator'"
           "  FROM replayed)"
           " SELECT count(*) FROM replayed",
        soci::use(at, "at"), soci::use(partner_id, "partner"), soci::use(all, "all"),
        soci::use(steps_text, "steps"), soci::into(queued);
    sql << "WITH replayed AS ("
           "  UPDATE partner_event SET state = 'queued', attempts = 0,"
           "    due_at = CAST(:at AS timestamptz), updated_at = CAST(:at AS timestamptz)"
           "  WHERE partner_id = :partner AND state = 'failed'"
           "    AND (:all = 1 OR id = ANY (CAST(:events AS bigint[])))"
           "  RETURNING id)"
           " SELECT count(*) FROM replayed",
        soci::use(at, "at"), soci::use(partner_id, "partner"), soci::use(all, "all"),
        soci::use(events_text, "events"), soci::into(events_queued);
    sql << "DELETE FROM webhook_endpoint WHERE partner_id = :partner",
        soci::use(partner_id, "partner");
    tx.commit();
    return static_cast<std::size_t>(queued + events_queued);
  });
}

}  // namespace channeld::store
