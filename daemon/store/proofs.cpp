#include "store/proofs.hpp"

#include "store/session.hpp"

namespace channeld::store {

namespace {

// One statement: the opt-out, the queued rows it settles, and their events.
constexpr const char* kOptOut = R"(
  WITH recorded AS (
    INSERT INTO proof_opt_out (kit_id, partner_id, opted_out_at, via)
    VALUES (:kit, :partner, CAST(:now AS timestamptz), :via)
    ON CONFLICT (kit_id, partner_id) DO NOTHING
    RETURNING 1),
  cancelled AS (
    UPDATE outbox SET state = 'expired', last_error = :detail,
                      updated_at = CAST(:now AS timestamptz)
    WHERE kit_id = :kit AND partner_id = :partner AND state = 'queued'
    RETURNING id),
  events AS (
    INSERT INTO delivery_event (outbox_id, at, kind, detail)
    SELECT id, CAST(:now AS timestamptz), 'expired', :detail FROM cancelled)
  SELECT (SELECT count(*) FROM recorded), (SELECT count(*) FROM cancelled))";

}  // namespace

std::string proof_key(const std::string& kit_id, int kit_version, const std::string& step_id,
                      const std::string& partner_id) {
  // Contact keys are kit/step/partner/email and kit ids never hold '/': no proof key can equal
  // a contact's.
  return "proof/" + kit_id + "/v" + std::to_string(kit_version) + "/" + step_id + "/" + partner_id;
}

OptOutResult Proofs::opt_out(const std::string& kit_id, const std::string& partner_id,
                             const std::string& via, SysTime now) {
  const std::string at = timestamp_text(now);
  const std::string detail = kOptedOutDetail;
  return store_.impl().run("recording an opt-out", [&](soci::session& sql) {
    long long recorded = 0, cancelled = 0;
    sql << kOptOut, soci::use(kit_id, "kit"), soci::use(partner_id, "partner"),
        soci::use(at, "now"), soci::use(via, "via"), soci::use(detail, "detail"),
        soci::into(recorded), soci::into(cancelled);
    return OptOutResult{recorded > 0, static_cast<std::size_t>(cancelled)};
  });
}

std::vector<OptOut> Proofs::opt_outs() {
  return store_.impl().run("reading opt-outs", [&](soci::session& sql) {
    OptOut o;
    long long at = 0;
    soci::statement st =
        (sql.prepare << "SELECT kit_id, partner_id, CAST(extract(epoch FROM opted_out_at) AS"
                        " bigint), via FROM proof_opt_out ORDER BY kit_id, partner_id",
         soci::into(o.kit_id), soci::into(o.partner_id), soci::into(at), soci::into(o.via));
    st.execute();
    std::vector<OptOut> out;
    while (st.fetch()) {
      o.at = from_epoch(at);
      out.push_back(o);
    }
    return out;
  });
}

std::set<std::pair<std::string, std::string>> Proofs::opted_out_pairs() {
  std::set<std::pair<std::string, std::string>> out;
  for (auto& o : opt_outs()) out.emplace(std::move(o.kit_id), std::move(o.partner_id));
  return out;
}

std::set<std::string> Proofs::existing(const std::vector<std::string>& keys) {
  std::set<std::string> out;
  if (keys.empty()) return out;
  ArrayLiteral list;
  for (const auto& k : keys) list.add(k);
  const std::string text = list.text();
  return store_.impl().run("reading queued proofs", [&](soci::session& sql) {
    std::string key;
    soci::statement st = (sql.prepare << "SELECT idem_key FROM outbox"
                                         " WHERE idem_key = ANY(CAST(:keys AS text[]))",
                          soci::use(text, "keys"), soci::into(key));
    st.execute();
    while (st.fetch()) out.insert(key);
    return out;
  });
}

std::size_t Proofs::suppressed_among(const std::string& partner_id,
                                     const std::vector<std::string>& emails) {
  if (emails.empty()) return 0;
  ArrayLiteral list;
  for (const auto& e : emails) list.add(e);
  const std::string text = list.text();
  return store_.impl().run("counting suppressed contacts", [&](soci::session& sql) {
    long long n = 0;
    sql << "SELECT count(DISTINCT email) FROM suppression"
           " WHERE email = ANY(CAST(:emails AS text[])) AND partner_id IN ('', :partner)",
        soci::use(text, "emails"), soci::use(partner_id, "partner"), soci::into(n);
    return static_cast<std::size_t>(n);
  });
}

}  // namespace channeld::store
