#include "store/mdf.hpp"

#include <soci/soci.h>

#include "store/session.hpp"

namespace channeld::store {

namespace {

// Held while decisions are recorded, so concurrent reconciliations compare against the same
// latest record. The bytes spell "mdf-dec".
constexpr long long kDecisionLock = 0x6d64662d646563;

constexpr const char* kClaimColumns = R"(
  id, claim_id, partner_id, kit_id, period, to_char(activity_start, 'YYYY-MM-DD'),
  to_char(activity_end, 'YYYY-MM-DD'), amount_claimed, actual_spend, currency,
  COALESCE(invoice_ref, ''), source, CAST(extract(epoch FROM received_at) AS bigint))";

// Rows come back through the claim parser, so a stored claim is exactly what a file could say.
StoredClaim claim_from_row(const soci::row& r) {
  StoredClaim stored;
  stored.id = r.get<long long>(0);
  const std::map<std::string, std::string> fields{
      {"claim_id", r.get<std::string>(1)},
      {"partner_id", r.get<std::string>(2)},
      {"kit_id", r.get<std::string>(3)},
      {"period", r.get<std::string>(4)},
      {"activity_start", r.get<std::string>(5)},
      {"activity_end", r.get<std::string>(6)},
      {"amount_claimed", format_minor_units(r.get<long long>(7))},
      {"actual_spend", format_minor_units(r.get<long long>(8))},
      {"currency", r.get<std::string>(9)},
      {"invoice_ref", r.get<std::string>(10)}};
  stored.claim =
      mdf::parse_claim(fields, "mdf_claim " + std::to_string(stored.id), mdf::ClaimSource::stored);
  stored.source = r.get<std::string>(11);
  stored.received_at = from_epoch(r.get<long long>(12));
  return stored;
}

std::vector<StoredClaim> claims_where(
    soci::session& sql, const std::string& tail,
    const std::vector<std::pair<std::string, std::string>>& uses) {
  soci::statement st(sql);
  soci::row r;
  std::vector<StoredClaim> out;
  // Parameters by name; SOCI needs each bound before execution.
  std::string query = std::string("SELECT") + kClaimColumns + " FROM mdf_claim " + tail;
  soci::rowset<soci::row> rows = [&]() -> soci::rowset<soci::row> {
    switch (uses.size()) {
      case 0:
        return sql.prepare << query;
      case 1:
        return (sql.prepare << query, soci::use(uses[0].second, uses[0].first));
      default:
        return (sql.prepare << query, soci::use(uses[0].second, uses[0].first),
                soci::use(uses[1].second, uses[1].first));
    }
  }();
  for (const soci::row& row : rows) out.push_back(claim_from_row(row));
  return out;
}

DecisionRecord decision_from(long long id, long long claim, long long at,
                             const std::string& verdict, long long amount,
                             const std::string& reasons, const std::string& inputs) {
  DecisionRecord d;
  d.id = id;
  d.claim = claim;
  d.decided_at = from_epoch(at);
  // The table's CHECK admits only the four verdicts.
  d.decision.verdict = mdf::verdict_from_string(verdict).value_or(mdf::Verdict::pending);
  d.decision.amount_approved = amount;
  for (const auto& r : nlohmann::json::parse(reasons)) d.decision.reasons.push_back(r);
  d.inputs = inputs;
  return d;
}

}  // namespace

std::string_view to_string(ClaimIntake intake) {
  switch (intake) {
    case ClaimIntake::added:
      return "added";
    case ClaimIntake::invoice_supplied:
      return "invoice supplied";
    case ClaimIntake::duplicate_claim:
      return "duplicate claim_id";
    case ClaimIntake::duplicate_invoice:
      return "duplicate invoice_ref";
  }
  return "added";
}

ClaimIntake MdfStore::add_claim(const mdf::Claim& c, const std::string& source, SysTime now) {
  const std::string period = c.period.text(), start = mdf::date_text(c.activity_start),
                    end = mdf::date_text(c.activity_end), now_text = timestamp_text(now);
  const long long claimed = c.amount_claimed, spend = c.actual_spend;
  return store_.impl().run("adding a claim", [&](soci::session& sql) {
    soci::transaction tx(sql);
    long long id = 0;
    soci::indicator inserted = soci::i_null;
    // No conflict target: either uniqueness (claim_id, or invoice_ref) makes it a duplicate.
    sql << "INSERT INTO mdf_claim (partner_id, claim_id, kit_id, period, activity_start,"
           " activity_end, amount_claimed, actual_spend, currency, invoice_ref, source,"
           " received_at, invoice_at)"
           " VALUES (:partner, :claim, :kit, :period, CAST(:start AS date), CAST(:end AS date),"
           " :claimed, :spend, :currency, NULLIF(:invoice, ''), :source,"
           " CAST(:now AS timestamptz),"
           " CASE WHEN :invoice = '' THEN NULL ELSE CAST(:now AS timestamptz) END)"
           " ON CONFLICT DO NOTHING RETURNING id",
        soci::use(c.partner_id, "partner"), soci::use(c.claim_id, "claim"),
        soci::use(c.kit_id, "kit"), soci::use(period, "period"), soci::use(start, "start"),
        soci::use(end, "end"), soci::use(claimed, "claimed"), soci::use(spend, "spend"),
        soci::use(c.currency, "currency"), soci::use(c.invoice_ref, "invoice"),
        soci::use(source, "source"), soci::use(now_text, "now"), soci::into(id, inserted);
    if (inserted == soci::i_ok) {
      tx.commit();
      return ClaimIntake::added;
    }
    auto existing = claims_where(sql, "WHERE partner_id = :partner AND claim_id = :claim",
                                 {{"partner", c.partner_id}, {"claim", c.claim_id}});
    if (existing.empty()) return ClaimIntake::duplicate_invoice;
    mdf::Claim without_invoice = c;
    without_invoice.invoice_ref.clear();
    if (!existing.front().claim.invoice_ref.empty() || c.invoice_ref.empty() ||
        existing.front().claim != without_invoice) {
      return ClaimIntake::duplicate_claim;
    }
    int used = 0;
    sql << "SELECT CAST(EXISTS (SELECT 1 FROM mdf_claim WHERE partner_id = :partner"
           " AND invoice_ref = :invoice) AS integer)",
        soci::use(c.partner_id, "partner"), soci::use(c.invoice_ref, "invoice"), soci::into(used);
    if (used != 0) return ClaimIntake::duplicate_invoice;
    const long long row = existing.front().id;
    sql << "UPDATE mdf_claim SET invoice_ref = :invoice, invoice_at = CAST(:now AS timestamptz)"
           " WHERE id = :id AND invoice_ref IS NULL",
        soci::use(c.invoice_ref, "invoice"), soci::use(now_text, "now"), soci::use(row, "id");
    tx.commit();
    return ClaimIntake::invoice_supplied;
  });
}

std::vector<StoredClaim> MdfStore::claims_in_fund_order() {
  return store_.impl().run("reading claims", [&](soci::session& sql) {
    return claims_where(sql, "ORDER BY invoice_at NULLS LAST, received_at, id", {});
  });
}

std::vector<StoredClaim> MdfStore::claims(const std::string& period, const std::string& partner) {
  return store_.impl().run("reading claims", [&](soci::session& sql) {
    return claims_where(sql,
                        "WHERE (:period = '' OR period = :period)"
                        " AND (:partner = '' OR partner_id = :partner)"
                        " ORDER BY partner_id, claim_id",
                        {{"period", period}, {"partner", partner}});
  });
}

std::vector<StoredClaim> MdfStore::find_claim(const std::string& claim_id,
                                              const std::string& partner) {
  return store_.impl().run("reading a claim", [&](soci::session& sql) {
    return claims_where(sql,
                        "WHERE claim_id = :claim AND (:partner = '' OR partner_id = :partner)"
                        " ORDER BY partner_id",
                        {{"claim", claim_id}, {"partner", partner}});
  });
}

std::size_t MdfStore::record_decisions(const std::vector<NewDecision>& decisions, SysTime now) {
  if (decisions.empty()) return 0;
  const std::string now_text = timestamp_text(now);
  return store_.impl().run("recording decisions", [&](soci::session& sql) {
    soci::transaction tx(sql);
    sql << "SELECT pg_advisory_xact_lock(" << kDecisionLock << ")";
    std::size_t added = 0;
    for (const NewDecision& d : decisions) {
      const long long claim = d.claim, amount = d.decision.amount_approved;
      const std::string verdict(mdf::to_string(d.decision.verdict));
      const std::string reasons = nlohmann::json(d.decision.reasons).dump();
      long long inserted = 0;
      sql << "WITH latest AS (SELECT decision, amount_approved, reasons, inputs FROM mdf_decision"
             "   WHERE claim = :claim ORDER BY id DESC LIMIT 1),"
             " added AS (INSERT INTO mdf_decision (claim, decided_at, decision, amount_approved,"
             "   reasons, inputs)"
             "   SELECT :claim, CAST(:now AS timestamptz), :decision, :amount, :reasons, :inputs"
             "   WHERE NOT EXISTS (SELECT 1 FROM latest WHERE decision = :decision"
             "     AND amount_approved = :amount AND reasons = :reasons AND inputs = :inputs)"
             "   RETURNING 1)"
             " SELECT count(*) FROM added",
          soci::use(claim, "claim"), soci::use(now_text, "now"), soci::use(verdict, "decision"),
          soci::use(amount, "amount"), soci::use(reasons, "reasons"), soci::use(d.inputs, "inputs"),
          soci::into(inserted);
      added += static_cast<std::size_t>(inserted);
    }
    tx.commit();
    return added;
  });
}

std::map<std::int64_t, DecisionRecord> MdfStore::latest_decisions() {
  return store_.impl().run("reading decisions", [&](soci::session& sql) {
    std::map<std::int64_t, DecisionRecord> latest;
    soci::rowset<soci::row> rows = sql.prepare
                                   << "SELECT DISTINCT ON (claim) id, claim,"
                                      " CAST(extract(epoch FROM decided_at) AS bigint), decision,"
                                      " amount_approved, reasons, inputs FROM mdf_decision"
                                      " ORDER BY claim, id DESC";
    for (const soci::row& r : rows) {
      auto d = decision_from(r.get<long long>(0), r.get<long long>(1), r.get<long long>(2),
                             r.get<std::string>(3), r.get<long long>(4), r.get<std::string>(5),
                             r.get<std::string>(6));
      latest.emplace(d.claim, std::move(d));
    }
    return latest;
  });
}

std::vector<DecisionRecord> MdfStore::history(std::int64_t claim) {
  const long long id = claim;
  return store_.impl().run("reading a claim's decisions", [&](soci::session& sql) {
    std::vector<DecisionRecord> records;
    soci::rowset<soci::row> rows =
        (sql.prepare << "SELECT id, claim, CAST(extract(epoch FROM decided_at) AS bigint),"
                        " decision, amount_approved, reasons, inputs FROM mdf_decision"
                        " WHERE claim = :claim ORDER BY id",
         soci::use(id, "claim"));
    for (const soci::row& r : rows) {
      records.push_back(decision_from(r.get<long long>(0), r.get<long long>(1), r.get<long long>(2),
                                      r.get<std::string>(3), r.get<long long>(4),
                                      r.get<std::string>(5), r.get<std::string>(6)));
    }
    return records;
  });
}

std::map<std::pair<std::string, std::string>, mdf::CampaignResults> MdfStore::campaign_results() {
  return store_.impl().run("reading campaign results", [&](soci::session& sql) {
    std::map<std::pair<std::string, std::string>, mdf::CampaignResults> results;
    soci::rowset<soci::row> sent = sql.prepare
                                   << "SELECT kit_id, partner_id, count(*),"
                                      " CAST(extract(epoch FROM max(sent_at)) AS bigint)"
                                      " FROM outbox WHERE state = 'sent' AND channel = 'email'"
                                      " GROUP BY kit_id, partner_id";
    for (const soci::row& r : sent) {
      mdf::CampaignResults& out = results[{r.get<std::string>(0), r.get<std::string>(1)}];
      out.delivered = r.get<long long>(2);
      out.last_send = from_epoch(r.get<long long>(3));
    }
    // A contact who clicked in several messages of the campaign counts once; clicks by link
    // scanners (human_clicks stays 0) do not count at all, as in the engagement results.
    soci::rowset<soci::row> clicks =
        sql.prepare << "SELECT o.kit_id, o.partner_id, count(DISTINCT lower(o.email))"
                       " FROM message_engagement e JOIN outbox o ON o.id = e.outbox_id"
                       " WHERE e.human_clicks > 0 AND o.channel = 'email'"
                       " GROUP BY o.kit_id, o.partner_id";
    for (const soci::row& r : clicks) {
      results[{r.get<std::string>(0), r.get<std::string>(1)}].unique_clicks = r.get<long long>(2);
    }
    // Leads attributed to the campaign (a kit is recorded only with an origin other than
    // unattributed), at any stage.
    soci::rowset<soci::row> leads = sql.prepare
                                    << "SELECT kit_id, partner_id, count(*) FROM lead"
                                       " WHERE kit_id IS NOT NULL AND origin <> 'unattributed'"
                                       " GROUP BY kit_id, partner_id";
    for (const soci::row& r : leads) {
      results[{r.get<std::string>(0), r.get<std::string>(1)}].leads = r.get<long long>(2);
    }
    return results;
  });
}

mdf::LeadTotals MdfStore::lead_totals(const mdf::Period& period, const std::string& currency) {
  const int year = period.year, first_month = 3 * (period.quarter - 1) + 1;
  return store_.impl().run("reading lead totals", [&](soci::session& sql) {
    mdf::LeadTotals totals;
    long long sourced_pipeline = 0, sourced_won = 0, influenced_pipeline = 0, influenced_won = 0;
    // The period's leads are those first reported in its quarter (UTC). Pipeline is every stage
    // before won, as in the engagement results; amounts in another currency cannot be added to
    // the fund's and are left out.
    sql << "WITH quarter AS (SELECT make_timestamptz(:year, :month, 1, 0, 0, 0, 'UTC') AS start),"
           " period_lead AS (SELECT origin, stage, amount_minor FROM lead, quarter"
           "   WHERE created_at >= quarter.start"
           "   AND created_at < quarter.start + interval '3 months' AND currency = :currency)"
           " SELECT"
           " COALESCE(sum(amount_minor) FILTER (WHERE origin = 'partner_sourced'"
           "   AND stage <> 'won'), 0),"
           " COALESCE(sum(amount_minor) FILTER (WHERE origin = 'partner_sourced'"
           "   AND stage = 'won'), 0),"
           " COALESCE(sum(amount_minor) FILTER (WHERE origin = 'influenced' AND stage <> 'won'),"
           "   0),"
           " COALESCE(sum(amount_minor) FILTER (WHERE origin = 'influenced' AND stage = 'won'), 0)"
           " FROM period_lead",
        soci::use(year, "year"), soci::use(first_month, "month"), soci::use(currency, "currency"),
        soci::into(sourced_pipeline), soci::into(sourced_won), soci::into(influenced_pipeline),
        soci::into(influenced_won);
    totals.sourced_pipeline = sourced_pipeline;
    totals.sourced_won = sourced_won;
    totals.influenced_pipeline = influenced_pipeline;
    totals.influenced_won = influenced_won;
    return totals;
  });
}

}  // namespace channeld::store
