// mdf: market development funds. Owns the claim formats (CSV rows and JSON objects of the
// contract, into Claim values with per-row errors), the reconciliation rules (one pure function
// from a claim and what is known about it to a Decision with plain-sentence reasons), funds per
// partner per quarter drawn down in receipt order, and the finance report (CSV, JSON, HTML).
//
// Pure: no I/O, no clock, no database. Depends on model only (and nlohmann-json for the JSON
// formats). The app gathers the facts (partners and kits from the snapshot, results and earlier
// decisions from the store), calls in here on a database-pool thread, and stores the outcome.
// Money is integer minor units throughout; the only currency of a fund is `[mdf] currency`.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/model.hpp"

namespace channeld::mdf {

// ---- periods --------------------------------------------------------------------------------

// A calendar quarter, "2026-Q4". Quarters are UTC: a claim's period is what it says, and results
// are not split by quarter, so no local-time boundary ever decides anything.
struct Period {
  int year = 0;
  int quarter = 0;  // 1..4

  std::string text() const;
  friend auto operator<=>(const Period&, const Period&) = default;
};
// Throws InputError naming `where` unless `text` is YYYY-Qn.
Period parse_period(std::string_view text, const std::string& where);

// ---- claims ---------------------------------------------------------------------------------

// The contract's claim fields, in CSV column order.
inline constexpr std::string_view kClaimFields[] = {
    "claim_id",     "partner_id",     "kit_id",       "period",   "activity_start",
    "activity_end", "amount_claimed", "actual_spend", "currency", "invoice_ref"};

struct Claim {
  std::string claim_id;
  std::string partner_id;
  std::string kit_id;
  Period period;
  std::chrono::year_month_day activity_start{};
  std::chrono::year_month_day activity_end{};
  std::int64_t amount_claimed = 0;  // minor units
  std::int64_t actual_spend = 0;
  std::string currency;
  std::string invoice_ref;  // empty: none yet (the claim is pending until one is supplied)

  friend bool operator==(const Claim&, const Claim&) = default;
};

// One claim as read, or why it could not be: a bad row costs only itself.
struct ClaimRow {
  std::optional<Claim> claim;
  std::string where;  // "claims/q4.csv:7" or "request body: claim 2"
  std::string error;  // "amount_claimed: '12,50' is not an amount: ..." when !claim
};

// Where a claim's fields come from. Rules added over time (the amount cap, ids a spreadsheet
// would run as formulas) refuse new claims only: a claim stored before them must still be read.
enum class ClaimSource { intake, stored };

// Builds a claim from field values by name (absent = missing). Throws InputError naming `where`
// and the field. Amounts at most two decimals; ids as the contract writes them.
Claim parse_claim(const std::map<std::string, std::string>& fields, const std::string& where,
                  ClaimSource source = ClaimSource::intake);

// Reads a whole claims CSV (RFC 4180, header row with at least the contract's columns, any
// order; extra columns ignored). A bad header throws InputError naming the file; a bad row is
// one ClaimRow with its error and line, and the other rows still load.
std::vector<ClaimRow> read_claims_csv(std::string_view text, const std::string& file);

// A JSON object of the contract's fields, or an array of them (POST /v1/claims). Amounts and
// dates must be strings. Unknown fields are ignored. A body that is neither throws InputError.
std::vector<ClaimRow> read_claims_json(const nlohmann::json& body, const std::string& where);

// A claim as the JSON object of the contract, for result files and the API.
nlohmann::json to_json(const Claim& claim);

// "2026-12-01"
std::string date_text(std::chrono::year_month_day day);

// ---- reconciliation -------------------------------------------------------------------------

enum class Verdict { approved, partially_approved, rejected, pending };
std::string_view to_string(Verdict v);
std::optional<Verdict> verdict_from_string(std::string_view s);

// What the campaign did for one (kit, partner).
struct CampaignResults {
  std::int64_t delivered = 0;      // messages sent (the relay said 250)
  std::int64_t unique_clicks = 0;  // distinct contacts who clicked a tracked link
  std::int64_t leads = 0;
  std::optional<SysTime> last_send;  // the partner's last send of the kit

  friend bool operator==(const CampaignResults&, const CampaignResults&) = default;
};

// Everything a decision depends on besides the claim itself. Plain values, so it is recorded
// with the decision (see to_json) and a changed input is noticed by comparing records.
struct Inputs {
  bool partner_known = false;
  bool partner_active = false;
  std::string partner_tier;
  bool kit_known = false;
  MdfTerms terms;
  bool in_audience = false;
  CampaignResults results;
  SysTime received_at{};
  // The partner's fund for the claim's period.
  std::string fund_currency;
  std::int64_t fund_allocated = 0;
  std::int64_t fund_used_before = 0;  // approved to claims received earlier in the period
  // Approved to this partner's earlier claims on the same kit, any period (max_per_partner).
  std::int64_t kit_approved_before = 0;
};
nlohmann::json to_json(const Inputs& inputs);

struct Decision {
  Verdict verdict = Verdict::pending;
  std::int64_t amount_approved = 0;
  std::vector<std::string> reasons;  // plain sentences, never empty

  friend bool operator==(const Decision&, const Decision&) = default;
};

// The rules of docs/mdf.md, in one place:
//  - unknown or suspended partner, unknown kit, kit not MDF-eligible, claim currency other than
//    the fund's or the kit's: rejected;
//  - partner not in the kit's audience, or no delivered messages: rejected;
//  - min_delivered / min_unique_clicks not met: rejected, naming threshold and measured value;
//  - received more than claim_window_days after the last send (exactly at the limit is in time):
//    rejected;
//  - no invoice_ref: pending;
//  - else approved = least of amount claimed, coop_ratio x actual spend (rounded down to the
//    minor unit), max_per_partner less kit_approved_before, fund remaining; less than claimed is
//    partially_approved naming the limit that bound; zero is rejected.
// Every rejection reason that applies is given, not only the first.
Decision reconcile(const Claim& claim, const Inputs& inputs);

// ---- funds: every claim in receipt order ------------------------------------------------------

// A claim as stored, with what reconciliation needs that is not in the claim itself.
struct ReceivedClaim {
  Claim claim;
  SysTime received_at{};
};

// What reconcile_all needs to know about partners and kits, from the snapshot and the store.
struct Facts {
  struct PartnerFacts {
    bool active = true;
    std::string tier;
    std::int64_t allocation = 0;  // fund per quarter: the partner file's, else its tier's
  };
  struct KitFacts {
    MdfTerms terms;
    std::map<std::string, bool> in_audience;  // by partner id
  };
  std::string fund_currency;
  std::map<std::string, PartnerFacts> partners;  // by id; absent = unknown
  std::map<std::string, KitFacts> kits;          // by id; absent = unknown
  // By (kit, partner); absent = nothing sent.
  std::map<std::pair<std::string, std::string>, CampaignResults> results;

  Inputs inputs_for(const ReceivedClaim& claim) const;  // funds and caps left at zero
};

struct Reconciled {
  Inputs inputs;
  Decision decision;
};

// Decides every claim, given in receipt order: each approval draws down its partner's fund for
// its period and its kit cap before the next claim is decided. Pending and rejected claims draw
// nothing. Returns one Reconciled per claim, in the same order.
std::vector<Reconciled> reconcile_all(const std::vector<ReceivedClaim>& in_receipt_order,
                                      const Facts& facts);

// ---- the finance report ---------------------------------------------------------------------

struct ReportRow {
  Claim claim;
  std::string partner_tier;  // empty if the partner is unknown
  Decision decision;
  CampaignResults results;
};

struct PartnerSummary {
  std::string partner_id;
  std::string tier;
  std::int64_t allocated = 0;
  std::int64_t claimed = 0;
  std::int64_t approved = 0;
  std::int64_t delivered = 0;  // over the kits its claims in the period name
  std::int64_t unique_clicks = 0;
  std::int64_t leads = 0;
};

// Pipeline and won amounts of the period's leads, in the fund currency.
struct LeadTotals {
  // partner_sourced: the attributed last touch was clicked
  std::int64_t sourced_pipeline = 0;
  std::int64_t sourced_won = 0;
  // influenced: a message reached the contact, no click
  std::int64_t influenced_pipeline = 0;
  std::int64_t influenced_won = 0;
};

struct Report {
  Period period;
  std::string currency;
  std::vector<ReportRow> rows;  // any order: rendering sorts by partner_id, claim_id
  std::vector<PartnerSummary> partners;
  LeadTotals leads;
  std::int64_t gross_margin_rate_bp = 0;  // [mdf] gross_margin_rate, parts per 10,000
  std::int64_t program_costs = 0;         // [mdf] program_costs of the period
};

// The contract's CSV: header, then one row per claim sorted by partner_id then claim_id.
std::string render_csv(const Report& report);
// {"period", "currency", "claims", "partners", "program"}; keys in a fixed order, two-space
// indentation, trailing newline. Byte-identical for the same report.
std::string render_json(const Report& report);
// One self-contained page: no scripts, no external resources; charts are inline SVG.
std::string render_html(const Report& report);

// Formats parts per 10,000 as a plain decimal: 5000 -> "0.5", 3333 -> "0.3333", 10000 -> "1".
std::string basis_points_text(std::int64_t bp);

}  // namespace channeld::mdf
