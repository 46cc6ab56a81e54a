#include "store/store.hpp"

#include <libpq-fe.h>
#include <nlohmann/json.hpp>
#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <set>
#include <string_view>
#include <utility>

#include "store/migrations.hpp"
#include "store/proofs.hpp"
#include "store/session.hpp"

namespace channeld::store {

namespace {

// Held by the transaction that migrates, so two daemons starting together apply each
// migration once. The bytes spell "channeld".
constexpr long long kMigrationLock = 0x6368616e6e656c64;

std::string_view channel_text(Channel channel) {
  switch (channel) {
    case Channel::email:
      return "email";
    case Channel::webhook:
      return "webhook";
    case Channel::proof:
      return "proof";
  }
  return "email";
}

Channel channel_from_text(std::string_view text) {
  // The table's CHECK constraint admits only these three.
  if (text == "webhook") return Channel::webhook;
  if (text == "proof") return Channel::proof;
  return Channel::email;
}


}  // namespace

namespace {

// RFC 3986 percent-encoding of everything but unreserved characters: the result holds no
// space, quote, '=' or '&', whatever the value.
std::string percent_encode(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : value) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace

// SOCI 4.0's PostgreSQL backend re-reads the connect string as space-separated key=value pairs
// (to take out its own "singlerows" option) and writes each back as key + "=" + value, unquoted:
// a URI, which has no "=", comes back as ".../channeld=" (database "channeld=" does not exist),
// and a quoted value holding a space or a quote is cut apart. So libpq parses the url itself,
// and SOCI gets one token it passes through unchanged: a URI whose every setting is a
// percent-encoded query parameter. The first "=" of that token is the one after the first
// parameter's name, which SOCI splits at and puts back.
ConnectString connect_string(const std::string& url) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &error);
  if (options == nullptr) {
    std::string why = error != nullptr ? error : "out of memory";
    PQfreemem(error);
    while (!why.empty() && why.back() == '\n') why.pop_back();
    // libpq's messages quote the text around the mistake, which may be the password.
    throw StoreError("database.url is not a libpq connection string or URI: " +
                     redact(why, password_in(url)));
  }
  ConnectString out;
  std::string query;
  const auto add = [&](std::string_view keyword, const char* value) {
    query += query.empty() ? "?" : "&";
    query += keyword;
    query += '=';
    query += percent_encode(value);
  };
  std::set<std::string, std::less<>> given;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    if (std::string_view(o->keyword) == "password") out.password = o->val;
    given.insert(o->keyword);
    add(o->keyword, o->val);
  }
  PQconninfoFree(options);
  // PQconninfoParse leaves out the environment's settings; a setting added here would override
  // the one variable among them that these defaults name.
  if (std::getenv("PGCONNECT_TIMEOUT") != nullptr) given.insert("connect_timeout");
  for (const auto& [keyword, value] : kConnectionDefaults) {
    if (!given.contains(keyword)) add(keyword, value);
  }
  // No host, port, user or database: libpq's defaults (PGHOST, the socket, the user's name).
  out.soci = "postgresql://" + query;
  return out;
}

// The password in a libpq conninfo ("password=x" or "password='x y'") or URI
// ("postgresql://user:x@host"), so error messages can be scrubbed of it. Empty if none.
// A best effort for text libpq could not parse; parsed urls take the password from libpq.
std::string password_in(const std::string& url) {
  if (url.find("://") != std::string::npos) {
    const auto authority = url.find("://") + 3;
    const auto at = url.find('@', authority);
    const auto colon = url.find(':', authority);
    if (at != std::string::npos && colon != std::string::npos && colon < at) {
      return url.substr(colon + 1, at - colon - 1);
    }
    const auto query = url.find("password=");
    if (query == std::string::npos) return "";
    const auto begin = query + 9;
    return url.substr(begin, url.find('&', begin) - begin);
  }
  const auto key = url.find("password");
  if (key == std::string::npos) return "";
  auto begin = url.find('=', key);
  if (begin == std::string::npos) return "";
  begin = url.find_first_not_of(' ', begin + 1);
  if (begin == std::string::npos) return "";
  if (url[begin] == '\'') {
    const auto end = url.find('\'', begin + 1);
    return url.substr(begin + 1, end == std::string::npos ? end : end - begin - 1);
  }
  return url.substr(begin, url.find(' ', begin) - begin);
}

std::string redact(std::string message, const std::string& secret) {
  if (secret.empty()) return message;
  for (auto at = message.find(secret); at != std::string::npos; at = message.find(secret, at)) {
    message.replace(at, secret.size(), "***");
  }
  return message;
}

namespace {
std::atomic<NoticeSink> notice_sink{nullptr};
}  // namespace

void set_notice_sink(NoticeSink sink) {
  notice_sink.store(sink);
}

void route_notices(soci::session& sql) {
  if (notice_sink.load() == nullptr) return;  // libpq's default: stderr
  // By name, not dynamic_cast: libsoci_postgresql does not export the backend's typeinfo.
  if (sql.get_backend_name() != "postgresql") return;
  auto* backend = static_cast<soci::postgresql_session_backend*>(sql.get_backend());
  PQsetNoticeReceiver(
      backend->conn_,
      [](void* /*arg*/, const PGresult* notice) {
        const char* severity = PQresultErrorField(notice, PG_DIAG_SEVERITY_NONLOCALIZED);
        const char* text = PQresultErrorField(notice, PG_DIAG_MESSAGE_PRIMARY);
        if (NoticeSink sink = notice_sink.load())
          sink(severity != nullptr ? severity : "NOTICE", text != nullptr ? text : "");
      },
      nullptr);
}

namespace {

// Runs a migration file exactly as written. SOCI turns every ':word' outside quotes into a
// parameter and knows nothing of SQL comments (an apostrophe in one flips its quote tracking);
// migrations are free-form SQL with comments, so they go straight to libpq, on the same
// connection and inside the same transaction.
void execute_verbatim(soci::session& sql, const Migration& migration) {
  // By name, not dynamic_cast: libsoci_postgresql does not export the backend's typeinfo.
  if (sql.get_backend_name() != "postgresql") throw soci::soci_error("not a PostgreSQL session");
  auto* backend = static_cast<soci::postgresql_session_backend*>(sql.get_backend());
  const std::string text(migration.sql);
  std::unique_ptr<PGresult, decltype(&PQclear)> result(PQexec(backend->conn_, text.c_str()),
                                                       &PQclear);
  const auto status = PQresultStatus(result.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    throw soci::soci_error(std::string(migration.file) + ": " + PQresultErrorMessage(result.get()));
  }
}

// ---- statements ---------------------------------------------------------------------------

constexpr const char* kEnqueue = R"(
  WITH inserted AS (
    INSERT INTO outbox (idem_key, kit_id, kit_version, step_id, partner_id, channel, email,
                        contact, due_at)
    SELECT idem_key, kit_id, kit_version, step_id, partner_id, channel, email,
           contact, due_at
    FROM unnest(CAST(:keys AS text[]), CAST(:kits AS text[]), CAST(:versions AS integer[]),
                CAST(:steps AS text[]), CAST(:partners AS text[]), CAST(:channels AS text[]),
                CAST(:emails AS text[]), CAST(:contacts AS text[]),
                CAST(:due AS timestamptz[]))
         AS batch(idem_key, kit_id, kit_version, step_id, partner_id, channel, email, contact,
                  due_at)
    ON CONFLICT (idem_key) DO NOTHING
    RETURNING 1)
  SELECT count(*) FROM inserted)";

// Expired leases first (they are overdue by a lease already), then due queued rows by due_at.
// Both parts carry a plain LIMIT :n: with a computed limit ("n minus the expired rows") the
// planner cannot estimate the row count and scans the whole outbox (0.2-0.85 s per claim at
// 1M rows); constant limits give an index walk and a nested loop on the primary key.
// SKIP LOCKED lets concurrent claimers pass each other's rows; `reclaimed` is computed from the
// row as it was before this UPDATE (SET sees old values, RETURNING new ones) and stays set.
constexpr const char* kClaim = R"(
  WITH expired AS (
    SELECT id FROM outbox
    WHERE state = 'sending' AND lease_until < CAST(:now AS timestamptz)
    ORDER BY lease_until
    LIMIT :n
    FOR UPDATE SKIP LOCKED),
  due AS (
    SELECT id FROM outbox
    WHERE state = 'queued' AND due_at <= CAST(:now AS timestamptz)
    ORDER BY due_at, id
    LIMIT :n
    FOR UPDATE SKIP LOCKED)
  UPDATE outbox o
  SET state = 'sending', lease_owner = :owner, lease_until = CAST(:until AS timestamptz),
      attempts = o.attempts + 1, reclaimed = o.reclaimed OR o.state = 'sending',
      updated_at = CAST(:now AS timestamptz)
  FROM (SELECT id FROM expired UNION ALL SELECT id FROM due LIMIT :n) claimed
  WHERE o.id = claimed.id
  RETURNING o.id, o.idem_key, o.kit_id, o.kit_version, o.step_id, o.partner_id, o.channel,
            o.email, o.contact, o.attempts, CAST(o.reclaimed AS integer),
            CAST(EXISTS (SELECT 1 FROM suppression s
                         WHERE s.email = o.email AND s.partner_id IN ('', o.partner_id))
                 AS integer))";

// One round trip for a whole batch of outcomes: the UPDATE applies each row's own kind,
// detail and retry time, and only where `owner` still holds the lease; the events and bounce
// suppressions are written for exactly the rows it updated. A 'sent' outcome adds no event:
// the row's state, sent_at and sent_by record it, and the event was a quarter of the writes
// a message cost (migration 0012).
constexpr const char* kRecord = R"(
  WITH outcome AS (
    SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:kinds AS text[]),
                         CAST(:details AS text[]), CAST(:retry_at AS timestamptz[]),
                         CAST(:message_ids AS text[]), CAST(:versions AS integer[]),
                         CAST(:at AS timestamptz[]))
           AS v(id, kind, detail, retry_at, message_id, rendered_version, at)),
  settled AS (
    UPDATE outbox o
    SET state = CASE WHEN v.kind IN ('retry', 'deferred') THEN 'queued' ELSE v.kind END,
        due_at = CASE WHEN v.kind IN ('retry', 'deferred') THEN v.retry_at ELSE o.due_at END,
        attempts = CASE WHEN v.kind = 'deferred' THEN o.attempts - 1 ELSE o.attempts END,
        last_error = CASE WHEN v.kind IN ('retry', 'failed', 'bounced') THEN v.detail
                          ELSE o.last_error END,
        sent_at = CASE WHEN v.kind = 'sent' THEN v.at ELSE o.sent_at END,
        sent_by = CASE WHEN v.kind = 'sent' THEN :owner ELSE o.sent_by END,
        message_id = COALESCE(NULLIF(v.message_id, ''), o.message_id),
        rendered_version = COALESCE(NULLIF(v.rendered_version, 0), o.rendered_version),
        lease_owner = NULL, lease_until = NULL, updated_at = CAST(:now AS timestamptz)
    FROM outcome v
    WHERE o.id = v.id AND o.state = 'sending' AND o.lease_owner = :owner
    RETURNING o.id, o.email, v.kind, v.detail, v.at, o.partner_id, o.kit_id, o.step_id,
              o.channel, o.message_id),
  events AS (
    INSERT INTO delivery_event (outbox_id, at, kind, detail, recorded_by)
    SELECT id, at, kind, detail, :owner FROM settled
    WHERE kind <> 'sent'),
  bounces AS (
    INSERT INTO suppression (email, partner_id, reason, created_at)
    SELECT DISTINCT ON (email) email, '', 'hard bounce: ' || detail, CAST(:now AS timestamptz)
    FROM settled WHERE kind = 'bounced'
    ON CONFLICT DO NOTHING),
  -- The partner event feed (migration 0010), by a join with partner_feed, which holds rows
  -- only for partners that asked for these events, so the others cost no write. SOCI binds
  -- by name and reads comments as SQL, so comments here hold no colon and no apostrophe.
  feed AS (
    INSERT INTO partner_event (event_key, partner_id, outbox_id, event_type, body, due_at,
                               created_at, updated_at)
    SELECT partner_event_key(s.kind, s.id, ''), s.partner_id, s.id, s.kind,
           partner_event_body(s.kind, s.at, s.kit_id, s.step_id, s.partner_id, s.message_id,
                              s.email, NULL),
           CAST(:now AS timestamptz), CAST(:now AS timestamptz), CAST(:now AS timestamptz)
    FROM settled s JOIN partner_feed f ON f.partner_id = s.partner_id AND f.event_type = s.kind
    WHERE s.channel = 'email'
    ON CONFLICT (event_key) DO NOTHING)
  SELECT count(*) FROM settled)";

constexpr const char* kRelease = R"(
  WITH released AS (
    UPDATE outbox
    SET state = 'queued', attempts = attempts - 1, lease_owner = NULL, lease_until = NULL,
        updated_at = now()
    WHERE state = 'sending' AND lease_owner = :owner
    RETURNING 1)
  SELECT count(*) FROM released)";

// Both kinds of pending work: queued rows and leases that will run out.
constexpr const char* kNextDue = R"(
  SELECT CAST(extract(epoch FROM least(
           (SELECT min(due_at) FROM outbox WHERE state = 'queued'),
           (SELECT min(lease_until) FROM outbox WHERE state = 'sending'))) AS bigint))";

constexpr const char* kExpireKit = R"(
  WITH expired AS (
    UPDATE outbox SET state = 'expired', updated_at = CAST(:now AS timestamptz)
    WHERE kit_id = :kit AND state = 'queued'
    RETURNING id),
  events AS (
    INSERT INTO delivery_event (outbox_id, at, kind, detail)
    SELECT id, CAST(:now AS timestamptz), 'expired', 'kit expired or removed' FROM expired)
  SELECT count(*) FROM expired)";

// One statement for all of a removed partner's queued mail, whatever its size: a partner with
// a million contacts would otherwise be settled, logged and recorded one claim at a time.
constexpr const char* kExpirePartner = R"(
  WITH expired AS (
    UPDATE outbox SET state = 'expired', updated_at = CAST(:now AS timestamptz)
    WHERE partner_id = :partner AND state = 'queued'
    RETURNING id),
  events AS (
    INSERT INTO delivery_event (outbox_id, at, kind, detail)
    SELECT id, CAST(:now AS timestamptz), 'expired', :detail FROM expired)
  SELECT count(*) FROM expired)";

constexpr const char* kRecordKitState = R"(
  INSERT INTO kit_state (kit_id, version, digest, state, error, updated_at)
  VALUES (:kit, :version, :digest, :state, :error, CAST(:updated_at AS timestamptz))
  ON CONFLICT (kit_id) DO UPDATE
  SET version = EXCLUDED.version, digest = EXCLUDED.digest, state = EXCLUDED.state,
      error = EXCLUDED.error, updated_at = EXCLUDED.updated_at)";

}  // namespace

// record() maps these to outbox states.
std::string_view to_string(OutcomeKind kind) {
  switch (kind) {
    case OutcomeKind::sent:
      return "sent";
    case OutcomeKind::retry:
      return "retry";
    case OutcomeKind::failed:
      return "failed";
    case OutcomeKind::bounced:
      return "bounced";
    case OutcomeKind::suppressed:
      return "suppressed";
    case OutcomeKind::expired:
      return "expired";
    case OutcomeKind::deferred:
      return "deferred";
  }
  return "failed";
}

std::optional<OutcomeKind> outcome_kind_from(std::string_view text) {
  for (auto k : {OutcomeKind::sent, OutcomeKind::retry, OutcomeKind::failed, OutcomeKind::bounced,
                 OutcomeKind::suppressed, OutcomeKind::expired, OutcomeKind::deferred}) {
    if (text == to_string(k)) return k;
  }
  return std::nullopt;
}

std::string contact_json(const Contact& c) {
  nlohmann::json j{{"email", c.email},
                   {"first_name", c.first_name},
                   {"last_name", c.last_name},
                   {"company", c.company}};
  if (!c.extra.empty()) j["extra"] = c.extra;
  return j.dump();
}

Contact contact_from_json(const std::string& text) {
  auto j = nlohmann::json::parse(text);
  Contact c;
  c.email = j.at("email").get<std::string>();
  c.first_name = j.value("first_name", "");
  c.last_name = j.value("last_name", "");
  c.company = j.value("company", "");
  if (j.contains("extra")) c.extra = j.at("extra").get<std::map<std::string, std::string>>();
  return c;
}

std::string idempotency_key(const std::string& kit_id, const std::string& step_id,
                            const std::string& partner_id, const std::string& email) {
  return kit_id + "/" + step_id + "/" + partner_id + "/" + lower_ascii(email);
}

Store::Store(const std::string& url, std::size_t pool_size,
             std::chrono::milliseconds session_wait) {
  const ConnectString connect = connect_string(url);
  impl_ =
      std::make_unique<Impl>(connect.password, std::max<std::size_t>(pool_size, 1), session_wait);
  for (std::size_t slot = 0; slot < impl_->suspect.size(); ++slot) {
    try {
      impl_->pool.at(slot).open("postgresql", connect.soci);
      route_notices(impl_->pool.at(slot));
    } catch (const soci::soci_error& e) {
      throw StoreError("cannot connect to PostgreSQL: " +
                       redact(e.get_error_message(), impl_->password));
    }
  }
}

Store::~Store() = default;

std::chrono::steady_clock::duration Store::longest_call() const {
  std::int64_t oldest = 0;
  for (const auto& leased : impl_->leased_at) {
    const std::int64_t at = leased.load();
    if (at != 0 && (oldest == 0 || at < oldest)) oldest = at;
  }
  if (oldest == 0) return {};
  const auto held = Impl::Clock::now().time_since_epoch() - Impl::Clock::duration{oldest};
  return std::max(held, Impl::Clock::duration::zero());
}

// ---- schema ---------------------------------------------------------------------------------

std::vector<int> Store::migrate() {
  return impl_->run("applying migrations", [](soci::session& sql) {
    soci::transaction tx(sql);
    // Taken before anything else, so even creating schema_migrations is serialised.
    sql << "SELECT pg_advisory_xact_lock(" << kMigrationLock << ")";
    sql << "CREATE TABLE IF NOT EXISTS schema_migrations ("
           "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())";
    std::set<int> done;
    soci::rowset<int> applied = sql.prepare << "SELECT version FROM schema_migrations";
    for (int version : applied) done.insert(version);

    std::vector<int> versions;
    for (const Migration& migration : migrations()) {
      if (done.contains(migration.version)) continue;
      execute_verbatim(sql, migration);
      sql << "INSERT INTO schema_migrations (version) VALUES (:version)",
          soci::use(migration.version);
      versions.push_back(migration.version);
    }
    tx.commit();
    return versions;
  });
}

int Store::schema_version() {
  return impl_->run("reading the schema version", [](soci::session& sql) {
    int exists = 0;
    sql << "SELECT CAST(to_regclass('schema_migrations') IS NOT NULL AS integer)",
        soci::into(exists);
    int version = 0;
    if (exists != 0) {
      sql << "SELECT COALESCE(max(version), 0) FROM schema_migrations", soci::into(version);
    }
    return version;
  });
}

int Store::latest_schema_version() {
  return migrations().back().version;
}

bool Store::ping() {
  try {
    return impl_->run("ping", [](soci::session& sql) {
      int one = 0;
      sql << "SELECT 1", soci::into(one);
      return one == 1;
    });
  } catch (const StoreError&) {
    return false;
  }
}

std::string Store::link_secret() {
  // 32 bytes from the kernel's CSPRNG (std::random_device reads /dev/urandom on Linux).
  std::random_device random;
  std::string candidate;
  for (int i = 0; i < 8; ++i) {
    char word[9];
    std::snprintf(word, sizeof word, "%08x", random());
    candidate += word;
  }
  return impl_->run("reading the link secret", [&](soci::session& sql) {
    // Two daemons starting together both insert; ON CONFLICT keeps the first, and both read it.
    sql << "INSERT INTO setting (name, value) VALUES ('link_secret', :v) ON CONFLICT DO NOTHING",
        soci::use(candidate);
    std::string secret;
    sql << "SELECT value FROM setting WHERE name = 'link_secret'", soci::into(secret);
    return secret;
  });
}

// ---- outbox ---------------------------------------------------------------------------------

std::size_t Store::enqueue(const std::vector<NewMessage>& batch) {
  if (batch.empty()) return 0;
  ArrayLiteral keys, kits, versions, steps, partners, channels, emails, contacts, due;
  for (const NewMessage& m : batch) {
    keys.add(m.channel == Channel::proof
                 ? proof_key(m.kit_id, m.kit_version, m.step_id, m.partner_id)
                 : idempotency_key(m.kit_id, m.step_id, m.partner_id, m.email));
    kits.add(m.kit_id);
    versions.add(m.kit_version);
    steps.add(m.step_id);
    partners.add(m.partner_id);
    channels.add(channel_text(m.channel));
    emails.add(lower_ascii(m.email));
    contacts.add(m.contact_json);
    due.add(m.due_at);
  }
  const std::string keys_text = keys.text(), kits_text = kits.text(),
                    versions_text = versions.text(), steps_text = steps.text(),
                    partners_text = partners.text(), channels_text = channels.text(),
                    emails_text = emails.text(), contacts_text = contacts.text(),
                    due_text = due.text();
  return impl_->run("enqueueing messages", [&](soci::session& sql) {
    long long inserted = 0;
    sql << kEnqueue, soci::use(keys_text, "keys"), soci::use(kits_text, "kits"),
        soci::use(versions_text, "versions"), soci::use(steps_text, "steps"),
        soci::use(partners_text, "partners"), soci::use(channels_text, "channels"),
        soci::use(emails_text, "emails"), soci::use(contacts_text, "contacts"),
        soci::use(due_text, "due"), soci::into(inserted);
    return static_cast<std::size_t>(inserted);
  });
}

bool Store::refresh_outbox_statistics(std::size_t inserted) {
  if (inserted < kStatisticsRefreshRows) return false;
  return impl_->run("refreshing the outbox statistics", [](soci::session& sql) {
    // Samples a bounded number of rows (300 times default_statistics_target) whatever the
    // table's size, so a big outbox costs about what a small one does. SKIP_LOCKED: while
    // autovacuum or another daemon holds the table's maintenance lock, waiting would stall
    // this daemon's planning and reloads behind it (autovacuum analyses afterwards anyway).
    sql << "ANALYZE (SKIP_LOCKED) outbox";
    return true;
  });
}

std::vector<ClaimedMessage> Store::claim(const std::string& owner, std::size_t limit, SysTime now,
                                         std::chrono::seconds lease) {
  if (limit == 0) return {};
  const std::string now_text = timestamp_text(now);
  const std::string until_text = timestamp_text(now + lease);
  const long long n = static_cast<long long>(limit);
  return impl_->run("claiming messages", [&](soci::session& sql) {
    // Sized to the limit: SOCI fetches at most that many rows into vectors, then shrinks them.
    std::vector<long long> ids(limit);
    std::vector<std::string> keys(limit), kits(limit), steps(limit), partners(limit),
        channels(limit), emails(limit), contacts(limit);
    std::vector<int> versions(limit), attempts(limit), reclaimed(limit), suppressed(limit);
    sql << kClaim, soci::use(now_text, "now"), soci::use(until_text, "until"),
        soci::use(owner, "owner"), soci::use(n, "n"), soci::into(ids), soci::into(keys),
        soci::into(kits), soci::into(versions), soci::into(steps), soci::into(partners),
        soci::into(channels), soci::into(emails), soci::into(contacts), soci::into(attempts),
        soci::into(reclaimed), soci::into(suppressed);

    std::vector<ClaimedMessage> claimed(ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i) {
      ClaimedMessage& m = claimed[i];
      m.id = ids[i];
      m.idempotency_key = std::move(keys[i]);
      m.kit_id = std::move(kits[i]);
      m.kit_version = versions[i];
      m.step_id = std::move(steps[i]);
      m.partner_id = std::move(partners[i]);
      m.channel = channel_from_text(channels[i]);
      m.email = std::move(emails[i]);
      m.contact_json = std::move(contacts[i]);
      m.attempts = attempts[i];
      m.reclaimed = reclaimed[i] != 0;
      m.suppressed = suppressed[i] != 0;
    }
    return claimed;
  });
}

void Store::record(const std::string& owner, const std::vector<Outcome>& outcomes, SysTime now) {
  if (outcomes.empty()) return;
  ArrayLiteral ids, kinds, details, retry_at, message_ids, versions, at;
  for (const Outcome& o : outcomes) {
    ids.add(static_cast<long long>(o.id));
    kinds.add(to_string(o.kind));
    details.add(o.detail);
    retry_at.add(o.retry_at);
    message_ids.add(o.message_id);
    versions.add(o.rendered_version);
    at.add(o.at == SysTime{} ? now : o.at);
  }
  const std::string ids_text = ids.text(), kinds_text = kinds.text(), details_text = details.text(),
                    retry_text = retry_at.text(), message_ids_text = message_ids.text(),
                    versions_text = versions.text(), at_text = at.text(),
                    now_text = timestamp_text(now);
  impl_->run("recording outcomes", [&](soci::session& sql) {
    long long settled = 0;
    sql << kRecord, soci::use(ids_text, "ids"), soci::use(kinds_text, "kinds"),
        soci::use(details_text, "details"), soci::use(retry_text, "retry_at"),
        soci::use(message_ids_text, "message_ids"), soci::use(versions_text, "versions"),
        soci::use(at_text, "at"), soci::use(owner, "owner"), soci::use(now_text, "now"),
        soci::into(settled);
  });
}

std::size_t Store::release(const std::string& owner) {
  return impl_->run("releasing leases", [&](soci::session& sql) {
    long long released = 0;
    sql << kRelease, soci::use(owner, "owner"), soci::into(released);
    return static_cast<std::size_t>(released);
  });
}

std::optional<SysTime> Store::next_due() {
  return impl_->run("reading the next due time", [](soci::session& sql) {
    long long epoch = 0;
    soci::indicator ind = soci::i_null;
    sql << kNextDue, soci::into(epoch, ind);
    return ind == soci::i_ok ? std::optional<SysTime>(from_epoch(epoch)) : std::nullopt;
  });
}

std::size_t Store::expire_kit(const std::string& kit_id, SysTime now) {
  const std::string now_text = timestamp_text(now);
  return impl_->run("expiring a kit", [&](soci::session& sql) {
    long long expired = 0;
    sql << kExpireKit, soci::use(kit_id, "kit"), soci::use(now_text, "now"), soci::into(expired);
    return static_cast<std::size_t>(expired);
  });
}

std::size_t Store::expire_partner(const std::string& partner_id, const std::string& why,
                                  SysTime now) {
  const std::string now_text = timestamp_text(now);
  return impl_->run("expiring a partner's queued messages", [&](soci::session& sql) {
    long long expired = 0;
    sql << kExpirePartner, soci::use(partner_id, "partner"), soci::use(now_text, "now"),
        soci::use(why, "detail"), soci::into(expired);
    return static_cast<std::size_t>(expired);
  });
}

bool Store::kit_has_unfinished(const std::string& kit_id) {
  return impl_->run("reading a kit's unfinished messages", [&](soci::session& sql) {
    int found = 0;
    sql << "SELECT CAST(EXISTS (SELECT 1 FROM outbox WHERE kit_id = :kit"
           " AND state IN ('queued', 'sending')) AS integer)",
        soci::use(kit_id, "kit"), soci::into(found);
    return found != 0;
  });
}

// ---- expansion ------------------------------------------------------------------------------

bool Store::expanded(const std::string& kit_id, const std::string& step_id,
                     const std::string& partner_id, const std::string& contacts_digest) {
  return impl_->run("reading expansions", [&](soci::session& sql) {
    int found = 0;
    sql << "SELECT CAST(EXISTS (SELECT 1 FROM expansion WHERE kit_id = :kit AND step_id = :step"
           " AND partner_id = :partner AND contacts_digest = :digest) AS integer)",
        soci::use(kit_id, "kit"), soci::use(step_id, "step"), soci::use(partner_id, "partner"),
        soci::use(contacts_digest, "digest"), soci::into(found);
    return found != 0;
  });
}

void Store::mark_expanded(const std::string& kit_id, const std::string& step_id,
                          const std::string& partner_id, const std::string& contacts_digest) {
  impl_->run("recording an expansion", [&](soci::session& sql) {
    sql << "INSERT INTO expansion (kit_id, step_id, partner_id, contacts_digest)"
           " VALUES (:kit, :step, :partner, :digest) ON CONFLICT DO NOTHING",
        soci::use(kit_id, "kit"), soci::use(step_id, "step"), soci::use(partner_id, "partner"),
        soci::use(contacts_digest, "digest");
  });
}

// ---- suppression ----------------------------------------------------------------------------

void Store::suppress(const std::string& email, const std::string& partner_id,
                     const std::string& reason) {
  const std::string address = lower_ascii(email);
  impl_->run("suppressing an address", [&](soci::session& sql) {
    sql << "INSERT INTO suppression (email, partner_id, reason)"
           " VALUES (:email, :partner, :reason) ON CONFLICT DO NOTHING",
        soci::use(address, "email"), soci::use(partner_id, "partner"), soci::use(reason, "reason");
  });
}

bool Store::is_suppressed(const std::string& email, const std::string& partner_id) {
  const std::string address = lower_ascii(email);
  return impl_->run("reading suppressions", [&](soci::session& sql) {
    int found = 0;
    sql << "SELECT CAST(EXISTS (SELECT 1 FROM suppression"
           " WHERE email = :email AND partner_id IN ('', :partner)) AS integer)",
        soci::use(address, "email"), soci::use(partner_id, "partner"), soci::into(found);
    return found != 0;
  });
}

// ---- kits -----------------------------------------------------------------------------------

void Store::record_kit_state(const KitStateRow& row) {
  const std::string updated_text = timestamp_text(row.updated_at);
  impl_->run("recording a kit state", [&](soci::session& sql) {
    sql << kRecordKitState, soci::use(row.kit_id, "kit"), soci::use(row.version, "version"),
        soci::use(row.digest, "digest"), soci::use(row.state, "state"),
        soci::use(row.error, "error"), soci::use(updated_text, "updated_at");
  });
}

std::vector<KitStateRow> Store::kit_states() {
  return impl_->run("reading kit states", [](soci::session& sql) {
    KitStateRow row;
    long long updated = 0;
    soci::statement st = (sql.prepare << "SELECT kit_id, version, digest, state, error,"
                                         " CAST(extract(epoch FROM updated_at) AS bigint)"
                                         " FROM kit_state ORDER BY kit_id",
                          soci::into(row.kit_id), soci::into(row.version), soci::into(row.digest),
                          soci::into(row.state), soci::into(row.error), soci::into(updated));
    st.execute();
    std::vector<KitStateRow> rows;
    while (st.fetch()) {
      row.updated_at = from_epoch(updated);
      rows.push_back(row);
    }
    return rows;
  });
}

// ---- results --------------------------------------------------------------------------------

std::vector<DeliveryCount> Store::delivery_counts() {
  return impl_->run("counting deliveries", [](soci::session& sql) {
    DeliveryCount row;
    long long count = 0;
    soci::statement st =
        (sql.prepare << "SELECT kit_id, partner_id, state, count(*) FROM outbox"
                        " GROUP BY kit_id, partner_id, state ORDER BY kit_id, partner_id, state",
         soci::into(row.kit_id), soci::into(row.partner_id), soci::into(row.state),
         soci::into(count));
    st.execute();
    std::vector<DeliveryCount> counts;
    while (st.fetch()) {
      row.count = count;
      counts.push_back(row);
    }
    return counts;
  });
}

std::map<std::string, std::int64_t> Store::counts_by_state() {
  return impl_->run("counting messages by state", [](soci::session& sql) {
    std::string state;
    long long count = 0;
    soci::statement st = (sql.prepare << "SELECT state, count(*) FROM outbox GROUP BY state",
                          soci::into(state), soci::into(count));
    st.execute();
    std::map<std::string, std::int64_t> counts;
    while (st.fetch()) counts[state] = count;
    return counts;
  });
}

std::int64_t Store::reclaimed_total() {
  return impl_->run("counting reclaimed messages", [](soci::session& sql) {
    long long count = 0;
    sql << "SELECT count(*) FROM outbox WHERE reclaimed AND state = 'sent'", soci::into(count);
    return static_cast<std::int64_t>(count);
  });
}

}  // namespace channeld::store
