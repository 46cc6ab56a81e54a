#include "store/engagement.hpp"

#include <future>
#include <unordered_map>

#include "store/session.hpp"

namespace channeld::store {

namespace {

constexpr const char* kMessageColumns =
    "SELECT id, idem_key, kit_id, step_id, partner_id, email, contact, state,"
    " COALESCE(message_id, ''), COALESCE(rendered_version, 0),"
    " COALESCE(CAST(extract(epoch FROM sent_at) AS bigint), -1) FROM outbox ";

std::optional<MessageRef> one_message(soci::session& sql, const std::string& where,
                                      const std::string& value) {
  MessageRef m;
  long long id = 0, sent = -1;
  soci::indicator found = soci::i_null;
  sql << std::string(kMessageColumns) + where + " LIMIT 1", soci::use(value, "value"),
      soci::into(id, found), soci::into(m.idempotency_key), soci::into(m.kit_id),
      soci::into(m.step_id), soci::into(m.partner_id), soci::into(m.email),
      soci::into(m.contact_json), soci::into(m.state), soci::into(m.message_id),
      soci::into(m.rendered_version), soci::into(sent);
  if (!sql.got_data() || found == soci::i_null) return std::nullopt;
  m.outbox_id = id;
  if (sent >= 0) m.sent_at = from_epoch(sent);
  return m;
}

// Every engagement column starts from a row for the message; created on first use.
constexpr const char* kEnsureRow =
    "INSERT INTO message_engagement (outbox_id, kit_id, partner_id)"
    " VALUES (:id, :kit, :partner) ON CONFLICT (outbox_id) DO NOTHING";

void ensure_row(soci::session& sql, long long id, const std::string& kit,
                const std::string& partner) {
  sql << kEnsureRow, soci::use(id, "id"), soci::use(kit, "kit"), soci::use(partner, "partner");
}

void event(soci::session& sql, long long id, const std::string& at, const std::string& kind,
           const std::string& detail) {
  sql << "INSERT INTO delivery_event (outbox_id, at, kind, detail)"
         " VALUES (:id, CAST(:at AS timestamptz), :kind, :detail)",
      soci::use(id, "id"), soci::use(at, "at"), soci::use(kind, "kind"),
      soci::use(detail, "detail");
}

// Queues a partner feed event about the message in the caller's transaction, so the event and
// the fact it reports are committed together or not at all. Writes nothing unless the partner's
// feed wants `kind` (migration 0010, queue_partner_event). `fact` tells apart events of one kind
// about one message (a click's link); `link` goes into the body of clicks only.
void queue_feed_event(soci::session& sql, const std::string& kind, long long id,
                      const std::string& fact, const std::string& at,
                      const std::optional<std::string>& link) {
  int queued = 0;
  soci::indicator link_ind = link ? soci::i_ok : soci::i_null;
  const std::string link_text = link.value_or("");
  sql << "SELECT queue_partner_event(:kind, :id, :fact, CAST(:at AS timestamptz), :link)",
      soci::use(kind, "kind"), soci::use(id, "id"), soci::use(fact, "fact"), soci::use(at, "at"),
      soci::use(link_text, link_ind, "link"), soci::into(queued);
}

}  // namespace

// User agents are attacker-chosen text: bounded before they reach the event log, and made
// valid UTF-8 without NUL (a byte PostgreSQL's text refuses would fail the whole batch it
// travels in): each byte that does not start or continue a well-formed sequence becomes '?'.
std::string clip_user_agent(std::string_view text) {
  constexpr std::size_t kMax = 200;
  std::string out;
  out.reserve(std::min(text.size(), kMax));
  std::size_t i = 0;
  while (i < text.size() && out.size() < kMax) {
    const auto c = static_cast<unsigned char>(text[i]);
    std::size_t n = c < 0x80           ? 1
                    : (c >> 5) == 0x6  ? 2
                    : (c >> 4) == 0xE  ? 3
                    : (c >> 3) == 0x1E ? 4
                                       : 0;
    bool ok = n != 0 && c != 0 && i + n <= text.size() && out.size() + n <= kMax;
    for (std::size_t k = 1; ok && k < n; ++k)
      ok = (static_cast<unsigned char>(text[i + k]) & 0xC0) == 0x80;
    if (ok && n > 1) {
      // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8 either.
      const auto c1 = static_cast<unsigned char>(text[i + 1]);
      ok = !(c == 0xC0 || c == 0xC1 || (c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F) ||
             (c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 > 0x8F) || c > 0xF4);
    }
    if (ok) {
      out.append(text.substr(i, n));
      i += n;
    } else {
      out += '?';
      ++i;
    }
  }
  return out;
}

std::optional<MessageRef> Engagement::message_by_key(const std::string& idempotency_key) {
  return store_.impl().run("reading a message", [&](soci::session& sql) {
    return one_message(sql, "WHERE idem_key = :value", idempotency_key);
  });
}

std::optional<MessageRef> Engagement::message_by_message_id(const std::string& message_id) {
  return store_.impl().run("reading a message", [&](soci::session& sql) {
    return one_message(sql, "WHERE message_id = :value", message_id);
  });
}

Engagement::~Engagement() {
  {
    std::lock_guard lock(recorder_.mutex);
    recorder_.stopping = true;
  }
  recorder_.wake.notify_all();
  for (auto& thread : recorder_.threads) thread.join();
}

void Engagement::record(Hit hit, HitRecorded done) {
  {
    std::lock_guard lock(recorder_.mutex);
    while (recorder_.threads.size() < kRecorderThreads)
      recorder_.threads.emplace_back([this] { record_batches(); });
    recorder_.queue.push_back({std::move(hit), std::move(done)});
  }
  recorder_.wake.notify_one();
}

void Engagement::drain() {
  std::unique_lock lock(recorder_.mutex);
  recorder_.idle.wait(lock, [&] { return recorder_.queue.empty() && recorder_.writing == 0; });
}

void Engagement::record_batches() {
  std::vector<Recorder::Queued> batch;
  bool wrote = false;
  for (;;) {
    {
      std::unique_lock lock(recorder_.mutex);
      if (wrote) --recorder_.writing;
      wrote = false;
      if (recorder_.queue.empty() && recorder_.writing == 0) recorder_.idle.notify_all();
      recorder_.wake.wait(lock, [&] { return recorder_.stopping || !recorder_.queue.empty(); });
      // Stopping still records what was queued: each hit's caller is waiting for its verdict.
      if (recorder_.queue.empty()) return;
      const std::size_t n = std::min(recorder_.queue.size(), kMaxBatch);
      batch.assign(std::make_move_iterator(recorder_.queue.begin()),
                   std::make_move_iterator(recorder_.queue.begin() + static_cast<long>(n)));
      recorder_.queue.erase(recorder_.queue.begin(),
                            recorder_.queue.begin() + static_cast<long>(n));
      ++recorder_.writing;
      wrote = true;
    }
    std::exception_ptr error;
    try {
      write_batch(batch);
    } catch (...) {
      error = std::current_exception();
    }
    for (auto& queued : batch) {
      if (queued.done) queued.done(error);
    }
    batch.clear();
  }
}

// One statement per batch: each column of the batch travels as one array parameter, the
// counters are upserted once per message (a batch may hold several hits of one message, and
// an upsert may touch a row only once per statement), every hit is appended to the event log,
// and each person's open or click of a partner whose feed takes that type goes to
// queue_partner_event once per fact (the function skips what is queued already: only the
// first open, and first click of a link, become events). Rows are locked in outbox id order,
// so batches recorded at the same time wait for each other but never deadlock. A hit about a
// message this database does not have (a hit journal replayed from a state folder copied from
// another installation) is dropped, rather than failing its batch at every attempt.
constexpr const char* kRecordHits = R"(
  WITH hit AS (
    SELECT * FROM unnest(CAST(:id AS bigint[]), CAST(:kit AS text[]), CAST(:partner AS text[]),
                         CAST(:click AS integer[]), CAST(:proxy AS integer[]),
                         CAST(:at AS timestamptz[]), CAST(:kind AS text[]),
                         CAST(:detail AS text[]), CAST(:fact AS text[]), CAST(:link AS text[]),
                         CAST(:n AS integer[]))
      AS h(id, kit, partner, click, proxy, at, kind, detail, fact, link, n)
    WHERE EXISTS (SELECT 1 FROM outbox o WHERE o.id = h.id)),
  counted AS (
    INSERT INTO message_engagement AS e (outbox_id, kit_id, partner_id, opens, proxy_opens,
                                         first_open_at, clicks, human_clicks, first_click_at)
    SELECT id, min(kit), min(partner),
           COALESCE(sum(n) FILTER (WHERE click = 0), 0),
           COALESCE(sum(n) FILTER (WHERE click = 0 AND proxy = 1), 0),
           min(at) FILTER (WHERE click = 0),
           COALESCE(sum(n) FILTER (WHERE click = 1), 0),
           COALESCE(sum(n) FILTER (WHERE click = 1 AND proxy = 0), 0),
           min(at) FILTER (WHERE click = 1)
    FROM hit GROUP BY id ORDER BY id
    ON CONFLICT (outbox_id) DO UPDATE
    SET opens = e.opens + EXCLUDED.opens,
        proxy_opens = e.proxy_opens + EXCLUDED.proxy_opens,
        first_open_at = COALESCE(e.first_open_at, EXCLUDED.first_open_at),
        clicks = e.clicks + EXCLUDED.clicks,
        human_clicks = e.human_clicks + EXCLUDED.human_clicks,
        first_click_at = COALESCE(e.first_click_at, EXCLUDED.first_click_at)),
  logged AS (
    INSERT INTO delivery_event (outbox_id, at, kind, detail, hits)
    SELECT id, at, kind, detail, n FROM hit)
  SELECT count(queue_partner_event(kind, id, fact, at, link))
  FROM (SELECT DISTINCT ON (id, kind, fact) CASE WHEN click = 1 THEN 'clicked' ELSE 'opened' END
               AS kind, id, fact, at, NULLIF(link, '') AS link
        FROM hit
        WHERE proxy = 0 AND EXISTS (SELECT 1 FROM partner_feed f WHERE f.partner_id = hit.partner
                                    AND f.event_type = CASE WHEN hit.click = 1 THEN 'clicked'
                                                            ELSE 'opened' END)
        ORDER BY id, kind, fact, at) AS wanted)";

void Engagement::write_batch(const std::vector<Recorder::Queued>& batch) {
  std::vector<Hit> hits;
  hits.reserve(batch.size());
  for (const auto& queued : batch) hits.push_back(queued.hit);
  write_hits(hits,
             batch.size() == 1 ? (batch.front().hit.click ? "recording a click" : "recording an open")
                               : "recording opens and clicks",
             {});
}

void Engagement::write_hits(const std::vector<Hit>& hits, const char* what,
                            const std::function<void(soci::session&)>& also) {
  // Hits the same in everything an event row keeps (`at` is whole seconds) travel, and are
  // logged, once with their count (migration 0014): a scanner fetching one link forty times a
  // second costs one row, not forty.
  struct Same {
    std::int64_t outbox_id;
    bool click, proxy;
    int link_index;
    std::int64_t at;
    std::string_view link, user_agent;
    bool operator==(const Same&) const = default;
  };
  struct SameHash {
    std::size_t operator()(const Same& s) const {
      std::size_t h = std::hash<std::int64_t>{}(s.outbox_id);
      h = h * 31 + std::hash<std::int64_t>{}(s.at);
      h = h * 31 + static_cast<std::size_t>(s.link_index * 4 + s.click * 2 + s.proxy);
      h = h * 31 + std::hash<std::string_view>{}(s.user_agent);
      return h;
    }
  };
  std::vector<std::string> agents;
  agents.reserve(hits.size());
  for (const auto& hit : hits) agents.push_back(clip_user_agent(hit.user_agent));
  std::unordered_map<Same, std::size_t, SameHash> index;  // -> position in `distinct`
  std::vector<std::pair<std::size_t, long long>> distinct;  // (a hit standing for them, count)
  index.reserve(hits.size());
  for (std::size_t i = 0; i < hits.size(); ++i) {
    const Hit& hit = hits[i];
    const Same same{hit.outbox_id,         hit.click, hit.proxy, hit.link_index,
                    hit.at.time_since_epoch().count(), hit.link, agents[i]};
    auto [it, inserted] = index.try_emplace(same, distinct.size());
    if (inserted) {
      distinct.emplace_back(i, 1);
    } else {
      ++distinct[it->second].second;
    }
  }
  ArrayLiteral id, kit, partner, click, proxy, at, kind, detail, fact, link, n;
  for (const auto& [i, count] : distinct) {
    const Hit& hit = hits[i];
    id.add(static_cast<long long>(hit.outbox_id));
    kit.add(hit.kit_id);
    partner.add(hit.partner_id);
    click.add(hit.click ? 1LL : 0LL);
    proxy.add(hit.proxy ? 1LL : 0LL);
    at.add(hit.at);
    n.add(count);
    if (hit.click) {
      kind.add(hit.proxy ? "clicked_by_scanner" : "clicked");
      detail.add("link " + std::to_string(hit.link_index) + "; " + agents[i]);
      fact.add(static_cast<long long>(hit.link_index));
      link.add(hit.link);
    } else {
      kind.add(hit.proxy ? "opened_by_proxy" : "opened");
      detail.add(agents[i]);
      fact.add("");
      link.add("");
    }
  }
  const std::string ids = id.text(), kits = kit.text(), partners = partner.text(),
                    clicks = click.text(), proxies = proxy.text(), ats = at.text(),
                    kinds = kind.text(), details = detail.text(), facts = fact.text(),
                    links = link.text(), counts = n.text();
  store_.impl().run(what, [&](soci::session& sql) {
    soci::transaction tx(sql);
    long long queued = 0;
    sql << kRecordHits, soci::use(ids, "id"), soci::use(kits, "kit"),
        soci::use(partners, "partner"), soci::use(clicks, "click"), soci::use(proxies, "proxy"),
        soci::use(ats, "at"), soci::use(kinds, "kind"), soci::use(details, "detail"),
        soci::use(facts, "fact"), soci::use(links, "link"), soci::use(counts, "n"),
        soci::into(queued);
    if (also) also(sql);
    tx.commit();
  });
}

void Engagement::record_journaled(const std::vector<Hit>& hits, const std::string& journal,
                                  std::uint64_t through) {
  const long long mark = static_cast<long long>(through);
  write_hits(hits, "recording opens and clicks from the journal", [&](soci::session& sql) {
    sql << "INSERT INTO hit_journal (journal, applied) VALUES (:journal, :mark)"
           " ON CONFLICT (journal) DO UPDATE SET applied = EXCLUDED.applied",
        soci::use(journal, "journal"), soci::use(mark, "mark");
  });
}

std::uint64_t Engagement::journal_applied(const std::string& journal) {
  return store_.impl().run("reading a hit journal's mark", [&](soci::session& sql) {
    long long applied = 0;
    soci::indicator found = soci::i_null;
    sql << "SELECT applied FROM hit_journal WHERE journal = :journal", soci::use(journal, "journal"),
        soci::into(applied, found);
    return sql.got_data() && found == soci::i_ok ? static_cast<std::uint64_t>(applied)
                                                 : std::uint64_t{0};
  });
}

void Engagement::forget_journal(const std::string& journal) {
  store_.impl().run("forgetting a hit journal", [&](soci::session& sql) {
    sql << "DELETE FROM hit_journal WHERE journal = :journal", soci::use(journal, "journal");
  });
}

namespace {

void record_and_wait(Engagement& engagement, Hit hit) {
  std::promise<void> recorded;
  auto future = recorded.get_future();
  engagement.record(std::move(hit), [&recorded](std::exception_ptr error) {
    if (error) {
      recorded.set_exception(error);
    } else {
      recorded.set_value();
    }
  });
  future.get();
}

}  // namespace

void Engagement::record_open(const MessageRef& message, bool proxy, const std::string& user_agent,
                             SysTime now) {
  record_and_wait(*this, Hit{false, message.outbox_id, message.kit_id, message.partner_id, proxy, 0,
                             "", user_agent, now});
}

void Engagement::record_click(const MessageRef& message, int link_index, const std::string& link,
                              bool proxy, const std::string& user_agent, SysTime now) {
  record_and_wait(*this, Hit{true, message.outbox_id, message.kit_id, message.partner_id, proxy,
                             link_index, link, user_agent, now});
}

bool Engagement::unsubscribe(const std::string& partner_id, const std::string& email, SysTime now) {
  const std::string address = lower_ascii(email);
  const std::string at = timestamp_text(now);
  return store_.impl().run("recording an unsubscribe", [&](soci::session& sql) {
    soci::transaction tx(sql);
    int already = 0;
    sql << "SELECT CAST(EXISTS (SELECT 1 FROM suppression"
           " WHERE email = :email AND partner_id IN ('', :partner)) AS integer)",
        soci::use(address, "email"), soci::use(partner_id, "partner"), soci::into(already);
    sql << "INSERT INTO suppression (email, partner_id, reason, created_at)"
           " VALUES (:email, :partner, 'unsubscribed', CAST(:at AS timestamptz))"
           " ON CONFLICT DO NOTHING",
        soci::use(address, "email"), soci::use(partner_id, "partner"), soci::use(at, "at");
    if (already == 0) {
      long long id = 0;
      std::string kit;
      soci::indicator found = soci::i_null;
      sql << "SELECT id, kit_id FROM outbox WHERE partner_id = :partner AND email = :email"
             " AND sent_at IS NOT NULL ORDER BY sent_at DESC, id DESC LIMIT 1",
          soci::use(partner_id, "partner"), soci::use(address, "email"), soci::into(id, found),
          soci::into(kit);
      if (sql.got_data() && found != soci::i_null) {
        ensure_row(sql, id, kit, partner_id);
        sql << "UPDATE message_engagement SET unsubscribed_at ="
               " COALESCE(unsubscribed_at, CAST(:at AS timestamptz)) WHERE outbox_id = :id",
            soci::use(at, "at"), soci::use(id, "id");
        event(sql, id, at, "unsubscribed", "");
        queue_feed_event(sql, "unsubscribed", id, "", at, std::nullopt);
      }
    }
    tx.commit();
    return already == 0;
  });
}

std::size_t Engagement::report(ReportKind kind, const std::optional<MessageRef>& message,
                               const std::string& email, SysTime now) {
  const std::string address = lower_ascii(message ? message->email : email);
  const std::string at = timestamp_text(now);
  return store_.impl().run("recording a bounce or complaint", [&](soci::session& sql) {
    soci::transaction tx(sql);
    long long id = 0;
    std::string kit, partner;
    soci::indicator found = soci::i_null;
    if (message) {
      id = message->outbox_id;
      kit = message->kit_id;
      partner = message->partner_id;
      found = soci::i_ok;
    } else {
      sql << "SELECT id, kit_id, partner_id FROM outbox WHERE email = :email"
             " AND sent_at IS NOT NULL ORDER BY sent_at DESC, id DESC LIMIT 1",
          soci::use(address, "email"), soci::into(id, found), soci::into(kit), soci::into(partner);
      if (!sql.got_data()) found = soci::i_null;
    }
    const std::string reason = kind == ReportKind::hard_bounce ? "hard bounce reported"
                               : kind == ReportKind::complaint ? "complaint reported"
                                                               : "";
    if (kind != ReportKind::soft_bounce) {
      sql << "INSERT INTO suppression (email, partner_id, reason, created_at)"
             " VALUES (:email, '', :reason, CAST(:at AS timestamptz)) ON CONFLICT DO NOTHING",
          soci::use(address, "email"), soci::use(reason, "reason"), soci::use(at, "at");
    }
    if (found == soci::i_null) {
      tx.commit();
      return std::size_t{0};
    }
    ensure_row(sql, id, kit, partner);
    switch (kind) {
      case ReportKind::hard_bounce:
        // Only a message that went out can bounce later; one still queued or sending is left
        // to its dispatcher (and is suppressed now, so it will not be sent).
        sql << "UPDATE outbox SET state = 'bounced', updated_at = CAST(:at AS timestamptz),"
               " last_error = 'hard bounce reported after delivery'"
               " WHERE id = :id AND state = 'sent'",
            soci::use(at, "at"), soci::use(id, "id");
        event(sql, id, at, "bounced", "hard bounce reported");
        queue_feed_event(sql, "bounced", id, "", at, std::nullopt);
        break;
      case ReportKind::soft_bounce:
        sql << "UPDATE message_engagement SET soft_bounces = soft_bounces + 1"
               " WHERE outbox_id = :id",
            soci::use(id, "id");
        event(sql, id, at, "soft_bounce", "soft bounce reported");
        break;
      case ReportKind::complaint:
        sql << "UPDATE message_engagement SET complained_at ="
               " COALESCE(complained_at, CAST(:at AS timestamptz)) WHERE outbox_id = :id",
            soci::use(at, "at"), soci::use(id, "id");
        event(sql, id, at, "complained", "complaint reported");
        break;
    }
    tx.commit();
    return std::size_t{1};
  });
}

std::vector<Touch> Engagement::touches(const std::string& partner_id, const std::string& email,
                                       SysTime since, SysTime until) {
  const std::string address = lower_ascii(email);
  const std::string from = timestamp_text(since), to = timestamp_text(until);
  return store_.impl().run("reading a contact's messages", [&](soci::session& sql) {
    Touch t;
    long long id = 0, sent = 0;
    int clicked = 0;
    soci::statement st =
        (sql.prepare << "SELECT o.id, o.kit_id, o.step_id, COALESCE(o.message_id, ''),"
                        " CAST(extract(epoch FROM o.sent_at) AS bigint),"
                        " CAST(COALESCE(e.human_clicks, 0) > 0 AS integer)"
                        " FROM outbox o LEFT JOIN message_engagement e ON e.outbox_id = o.id"
                        " WHERE o.partner_id = :partner AND o.email = :email"
                        " AND o.channel = 'email' AND o.sent_at IS NOT NULL"
                        " AND o.sent_at BETWEEN CAST(:since AS timestamptz)"
                        " AND CAST(:until AS timestamptz)"
                        " ORDER BY o.sent_at DESC, o.id DESC",
         soci::use(partner_id, "partner"), soci::use(address, "email"), soci::use(from, "since"),
         soci::use(to, "until"), soci::into(id), soci::into(t.kit_id), soci::into(t.step_id),
         soci::into(t.message_id), soci::into(sent), soci::into(clicked));
    st.execute();
    std::vector<Touch> out;
    while (st.fetch()) {
      t.outbox_id = id;
      t.sent_at = from_epoch(sent);
      t.clicked = clicked != 0;
      out.push_back(t);
    }
    return out;
  });
}

LeadSaved Engagement::save_lead(const LeadRecord& lead, SysTime now) {
  const std::string at = timestamp_text(now);
  const std::string address = lower_ascii(lead.email);
  const long long amount = lead.amount_minor;
  // Bound as text so that "no touch" travels as an empty string and becomes NULL in SQL.
  const std::string outbox = lead.touch ? std::to_string(lead.touch->outbox_id) : "";
  const std::string kit = lead.touch ? lead.touch->kit_id : "";
  const std::string step = lead.touch ? lead.touch->step_id : "";
  return store_.impl().run("saving a lead", [&](soci::session& sql) {
    LeadSaved saved;
    int created = 0;
    std::string saved_kit, saved_step;
    sql << "INSERT INTO lead (partner_id, external_id, email, stage, amount_minor, currency,"
           " outbox_id, kit_id, step_id, origin, created_at, updated_at)"
           " VALUES (:partner, :external, :email, :stage, :amount, :currency,"
           " CAST(NULLIF(:outbox, '') AS bigint), NULLIF(:kit, ''), NULLIF(:step, ''), :origin,"
           " CAST(:at AS timestamptz), CAST(:at AS timestamptz))"
           " ON CONFLICT (partner_id, external_id) DO UPDATE SET stage = EXCLUDED.stage,"
           " amount_minor = EXCLUDED.amount_minor, currency = EXCLUDED.currency,"
           " updated_at = EXCLUDED.updated_at"
           " RETURNING CAST(xmax = 0 AS integer), stage, origin, COALESCE(kit_id, ''),"
           " COALESCE(step_id, '')",
        soci::use(lead.partner_id, "partner"), soci::use(lead.external_id, "external"),
        soci::use(address, "email"), soci::use(lead.stage, "stage"), soci::use(amount, "amount"),
        soci::use(lead.currency, "currency"), soci::use(outbox, "outbox"), soci::use(kit, "kit"),
        soci::use(step, "step"), soci::use(lead.origin, "origin"), soci::use(at, "at"),
        soci::into(created), soci::into(saved.stage), soci::into(saved.origin),
        soci::into(saved_kit), soci::into(saved_step);
    saved.created = created != 0;
    if (!saved_kit.empty()) saved.kit_id = saved_kit;
    if (!saved_step.empty()) saved.step_id = saved_step;
    return saved;
  });
}

std::vector<KitPartnerResult> Engagement::results(const std::string& kit_id,
                                                  const std::string& partner_id) {
  return store_.impl().run("reading results", [&](soci::session& sql) {
    std::map<std::pair<std::string, std::string>, KitPartnerResult> rows;
    {
      KitPartnerResult r;
      long long sent = 0, delivered = 0, bounced = 0, opens = 0, clicks = 0, unsubscribes = 0,
                complaints = 0, last = -1;
      soci::statement st =
          (sql.prepare << "SELECT o.kit_id, o.partner_id,"
                          " count(*) FILTER (WHERE o.state IN ('sent', 'bounced')),"
                          " count(*) FILTER (WHERE o.state = 'sent'),"
                          " count(*) FILTER (WHERE o.state = 'bounced'),"
                          " count(e.outbox_id) FILTER (WHERE e.opens > e.proxy_opens),"
                          " count(e.outbox_id) FILTER (WHERE e.human_clicks > 0),"
                          " count(e.unsubscribed_at), count(e.complained_at),"
                          " COALESCE(CAST(extract(epoch FROM max(o.sent_at)) AS bigint), -1)"
                          " FROM outbox o LEFT JOIN message_engagement e ON e.outbox_id = o.id"
                          " WHERE o.channel = 'email' AND (:kit = '' OR o.kit_id = :kit)"
                          " AND (:partner = '' OR o.partner_id = :partner)"
                          " GROUP BY o.kit_id, o.partner_id",
           soci::use(kit_id, "kit"), soci::use(partner_id, "partner"), soci::into(r.kit_id),
           soci::into(r.partner_id), soci::into(sent), soci::into(delivered), soci::into(bounced),
           soci::into(opens), soci::into(clicks), soci::into(unsubscribes), soci::into(complaints),
           soci::into(last));
      st.execute();
      while (st.fetch()) {
        KitPartnerResult& row = rows[{r.kit_id, r.partner_id}];
        row.kit_id = r.kit_id;
        row.partner_id = r.partner_id;
        row.sent = sent;
        row.delivered = delivered;
        row.bounced = bounced;
        row.unique_opens = opens;
        row.unique_human_clicks = clicks;
        row.unsubscribes = unsubscribes;
        row.complaints = complaints;
        if (last >= 0) row.last_sent_at = from_epoch(last);
      }
    }
    {
      std::string kit, partner;
      long long leads = 0, pipeline = 0, won = 0;
      soci::statement st =
          (sql.prepare << "SELECT kit_id, partner_id, count(*),"
                          " COALESCE(sum(amount_minor) FILTER (WHERE stage <> 'won'), 0),"
                          " COALESCE(sum(amount_minor) FILTER (WHERE stage = 'won'), 0)"
                          " FROM lead WHERE kit_id IS NOT NULL"
                          " AND (:kit = '' OR kit_id = :kit)"
                          " AND (:partner = '' OR partner_id = :partner)"
                          " GROUP BY kit_id, partner_id",
           soci::use(kit_id, "kit"), soci::use(partner_id, "partner"), soci::into(kit),
           soci::into(partner), soci::into(leads), soci::into(pipeline), soci::into(won));
      st.execute();
      while (st.fetch()) {
        KitPartnerResult& row = rows[{kit, partner}];
        row.kit_id = kit;
        row.partner_id = partner;
        row.leads = leads;
        row.pipeline_minor = pipeline;
        row.won_minor = won;
      }
    }
    std::vector<KitPartnerResult> out;
    out.reserve(rows.size());
    for (auto& [key, row] : rows) out.push_back(std::move(row));
    return out;
  });
}

void Engagement::add_token(const std::string& name, const std::string& token_hash,
                           const std::string& role) {
  store_.impl().run("creating an API token", [&](soci::session& sql) {
    soci::transaction tx(sql);
    // A revoked token's name may be reused; its old hash goes with it.
    sql << "DELETE FROM api_token WHERE name = :name AND revoked_at IS NOT NULL",
        soci::use(name, "name");
    sql << "INSERT INTO api_token (name, token_hash, role) VALUES (:name, :hash, :role)",
        soci::use(name, "name"), soci::use(token_hash, "hash"), soci::use(role, "role");
    tx.commit();
  });
}

bool Engagement::revoke_token(const std::string& name, SysTime now) {
  const std::string at = timestamp_text(now);
  return store_.impl().run("revoking an API token", [&](soci::session& sql) {
    soci::statement st =
        (sql.prepare << "UPDATE api_token SET revoked_at = CAST(:at AS timestamptz)"
                        " WHERE name = :name AND revoked_at IS NULL",
         soci::use(at, "at"), soci::use(name, "name"));
    st.execute(true);
    return st.get_affected_rows() > 0;
  });
}

bool Engagement::token_by_name_exists(const std::string& name) {
  return store_.impl().run("reading API tokens", [&](soci::session& sql) {
    int found = 0;
    sql << "SELECT CAST(EXISTS (SELECT 1 FROM api_token WHERE name = :name"
           " AND revoked_at IS NULL) AS integer)",
        soci::use(name, "name"), soci::into(found);
    return found != 0;
  });
}

std::optional<std::pair<std::string, std::string>> Engagement::token_by_hash(
    const std::string& token_hash) {
  return store_.impl().run("checking an API token", [&](soci::session& sql) {
    std::string name, role;
    sql << "SELECT name, role FROM api_token WHERE token_hash = :hash AND revoked_at IS NULL",
        soci::use(token_hash, "hash"), soci::into(name), soci::into(role);
    std::optional<std::pair<std::string, std::string>> out;
    if (sql.got_data()) out.emplace(name, role);
    return out;
  });
}

}  // namespace channeld::store
