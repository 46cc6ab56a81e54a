// store/mdf: MDF claims, their append-only decision records, and the campaign results
// reconciliation reads (tables mdf_claim and mdf_decision, migration 0009). Called from the
// database pool like every Store call; safe from many threads. Decisions are recorded under an
// advisory lock, so two daemons reconciling at once never both add the same record.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mdf/mdf.hpp"
#include "store/store.hpp"

namespace channeld::store {

// What happened to one claim handed to add_claim.
enum class ClaimIntake {
  added,
  invoice_supplied,   // a pending claim, received again with its invoice_ref: now complete
  duplicate_claim,    // the partner already has this claim_id (and nothing new came with it)
  duplicate_invoice,  // the partner already claimed this invoice_ref under another claim_id
};
std::string_view to_string(ClaimIntake intake);

struct StoredClaim {
  std::int64_t id = 0;
  mdf::Claim claim;
  std::string source;
  SysTime received_at{};
};

struct DecisionRecord {
  std::int64_t id = 0;
  std::int64_t claim = 0;  // StoredClaim::id
  SysTime decided_at{};
  mdf::Decision decision;
  std::string inputs;  // JSON text as recorded
};

struct NewDecision {
  std::int64_t claim = 0;
  mdf::Decision decision;
  std::string inputs;  // JSON text (mdf::to_json(Inputs).dump())
};

class MdfStore {
 public:
  explicit MdfStore(Store& store) : store_(store) {}

  // Adds a claim received at `now`. Duplicates (same partner and claim_id, or same partner and
  // invoice_ref) are refused, never double-counted; the one exception is a claim received
  // before without an invoice_ref and now with one, otherwise unchanged: it gets the invoice.
  ClaimIntake add_claim(const mdf::Claim& claim, const std::string& source, SysTime now);

  // Every claim, in the order funds are drawn: by when it became complete (had an invoice_ref),
  // then by receipt; claims still without an invoice last, by receipt.
  std::vector<StoredClaim> claims_in_fund_order();
  // Claims of one period ("2026-Q4"), or all of them if `period` is empty, optionally of one
  // partner, ordered by partner then claim_id.
  std::vector<StoredClaim> claims(const std::string& period, const std::string& partner = "");
  // One claim by claim_id (and partner, when several partners used the same claim_id).
  std::vector<StoredClaim> find_claim(const std::string& claim_id, const std::string& partner);

  // Appends, in one transaction under an advisory lock, each decision that differs (verdict,
  // amount, reasons or inputs) from its claim's latest record. Returns how many were added.
  std::size_t record_decisions(const std::vector<NewDecision>& decisions, SysTime now);
  // The latest record of every claim that has one, by claim id.
  std::map<std::int64_t, DecisionRecord> latest_decisions();
  // Every record of one claim, oldest first.
  std::vector<DecisionRecord> history(std::int64_t claim);

  // What each (kit, partner) campaign did: delivered = email messages sent, last_send = the last
  // one's time, unique_clicks = distinct contacts with a human click (message_engagement),
  // leads = leads attributed to the kit (lead, any stage).
  std::map<std::pair<std::string, std::string>, mdf::CampaignResults> campaign_results();
  // Pipeline (stages before won) and won amounts of the leads first reported in the period's
  // quarter, in `currency`, by origin as engagement attributes it: partner_sourced (the last
  // touch was clicked) and influenced (delivered, not clicked); unattributed leads count in
  // neither.
  mdf::LeadTotals lead_totals(const mdf::Period& period, const std::string& currency);

 private:
  Store& store_;
};

}  // namespace channeld::store
