#include "app/claims.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "schedule/schedule.hpp"

namespace channeld::app {

namespace fs = std::filesystem;

namespace {

std::string csv_cell(const std::string& value) {
  if (value.find_first_of(",\"\r\n") == std::string::npos) return value;
  std::string out = "\"";
  for (char c : value) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string line_of(const std::string& where) {
  const auto colon = where.rfind(':');
  return colon == std::string::npos ? "" : where.substr(colon + 1);
}

// processed/<name>, or <stem>-2.csv, -3... when a file of that name was processed before.
fs::path processed_path(const fs::path& processed, const fs::path& name) {
  fs::path target = processed / name;
  for (int n = 2; fs::exists(target); ++n) {
    target =
        processed / (name.stem().string() + "-" + std::to_string(n) + name.extension().string());
  }
  return target;
}

std::int64_t allocation_of(const Config& config, const Partner& partner) {
  if (partner.mdf_allocation_minor) return *partner.mdf_allocation_minor;
  auto it = config.mdf.allocation_minor.find(partner.tier);
  return it == config.mdf.allocation_minor.end() ? 0 : it->second;
}

}  // namespace

IntakeSummary take_in_claims(store::Store& store, const std::string& dir, SysTime now) {
  IntakeSummary summary;
  std::error_code ec;
  if (dir.empty() || !fs::is_directory(dir, ec)) return summary;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && !name.starts_with(".") && name.ends_with(".csv")) {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) return summary;

  store::MdfStore mdf_store(store);
  const fs::path processed = fs::path(dir) / "processed";
  fs::create_directories(processed);
  for (const fs::path& file : files) {
    ++summary.files;
    const std::string name = file.filename().string();
    std::string result = "line,claim_id,partner_id,outcome,detail\n";
    try {
      std::ifstream in(file, std::ios::binary);
      std::stringstream text;
      text << in.rdbuf();
      if (!in) throw InputError(name, "cannot be read");
      for (const mdf::ClaimRow& row : mdf::read_claims_csv(text.str(), name)) {
        if (!row.claim) {
          ++summary.refused;
          summary.problems.push_back(row.where + ": " + row.error);
          result += line_of(row.where) + ",,,refused," + csv_cell(row.error) + "\n";
          continue;
        }
        const auto intake = mdf_store.add_claim(*row.claim, row.where, now);
        const bool ok =
            intake == store::ClaimIntake::added || intake == store::ClaimIntake::invoice_supplied;
        const std::string outcome(store::to_string(intake));
        if (ok) {
          ++summary.added;
        } else {
          ++summary.refused;
          summary.problems.push_back(row.where + ": claim " + row.claim->claim_id + " of " +
                                     row.claim->partner_id + " refused: " + outcome);
        }
        result += line_of(row.where) + "," + csv_cell(row.claim->claim_id) + "," +
                  csv_cell(row.claim->partner_id) + "," + (ok ? outcome : "refused") + "," +
                  (ok ? "" : outcome) + "\n";
      }
    } catch (const InputError& e) {
      // The whole file is unusable (no header, unreadable): say so and set it aside.
      ++summary.refused;
      summary.problems.push_back(e.what());
      result += ",,,refused," + csv_cell(e.what()) + "\n";
    }
    const fs::path target = processed_path(processed, file.filename());
    fs::rename(file, target);
    std::ofstream(target.string() + ".result.csv", std::ios::binary) << result;
  }
  return summary;
}

mdf::Facts facts_from(const Snapshot& snapshot) {
  mdf::Facts facts;
  facts.fund_currency = snapshot.config.mdf.currency;
  for (const auto& [id, partner] : snapshot.partners.partners) {
    facts.partners[id] = {partner.active, std::string(to_string(partner.tier)),
                          allocation_of(snapshot.config, partner)};
  }
  for (const auto& [id, entry] : snapshot.kits) {
    if (!entry.live) continue;
    const Kit& kit = entry.live->kit;
    mdf::Facts::KitFacts& k = facts.kits[id];
    k.terms = kit.mdf;
    for (const auto& [partner_id, partner] : snapshot.partners.partners) {
      // Suspension has its own reason; the audience question is about tier, type, region, opt-in.
      Partner as_active = partner;
      as_active.active = true;
      k.in_audience[partner_id] = !schedule::ineligibility(kit, as_active).has_value();
    }
  }
  return facts;
}

std::size_t reconcile_claims(store::Store& store, const Snapshot& snapshot, SysTime now) {
  store::MdfStore mdf_store(store);
  const auto stored = mdf_store.claims_in_fund_order();
  if (stored.empty()) return 0;
  mdf::Facts facts = facts_from(snapshot);
  facts.results = mdf_store.campaign_results();
  std::vector<mdf::ReceivedClaim> ordered;
  ordered.reserve(stored.size());
  for (const auto& s : stored) ordered.push_back({s.claim, s.received_at});
  const auto decided = mdf::reconcile_all(ordered, facts);
  std::vector<store::NewDecision> decisions;
  decisions.reserve(decided.size());
  for (std::size_t i = 0; i < decided.size(); ++i) {
    decisions.push_back(
        {stored[i].id, decided[i].decision, mdf::to_json(decided[i].inputs).dump()});
  }
  return mdf_store.record_decisions(decisions, now);
}

mdf::Report build_report(store::Store& store, const Config& config,
                         const catalog::PartnerSet& partners, const mdf::Period& period) {
  store::MdfStore mdf_store(store);
  mdf::Report report;
  report.period = period;
  report.currency = config.mdf.currency;
  report.gross_margin_rate_bp = config.mdf.gross_margin_rate_bp;
  if (auto it = config.mdf.program_costs_minor.find(period.text());
      it != config.mdf.program_costs_minor.end()) {
    report.program_costs = it->second;
  }
  report.leads = mdf_store.lead_totals(period, config.mdf.currency);

  const auto latest = mdf_store.latest_decisions();
  std::map<std::string, mdf::PartnerSummary> summaries;
  for (const auto& [id, partner] : partners.partners) {
    mdf::PartnerSummary& s = summaries[id];
    s.partner_id = id;
    s.tier = std::string(to_string(partner.tier));
    s.allocated = allocation_of(config, partner);
  }
  // Per (partner, kit): the results the most recent decision used.
  std::map<std::pair<std::string, std::string>, std::pair<std::int64_t, mdf::CampaignResults>>
      kit_results;
  for (const store::StoredClaim& stored : mdf_store.claims(period.text())) {
    mdf::ReportRow row;
    row.claim = stored.claim;
    if (auto p = partners.partners.find(stored.claim.partner_id); p != partners.partners.end()) {
      row.partner_tier = std::string(to_string(p->second.tier));
    }
    if (auto d = latest.find(stored.id); d != latest.end()) {
      row.decision = d->second.decision;
      const auto inputs = nlohmann::json::parse(d->second.inputs);
      const auto& r = inputs.at("results");
      row.results.delivered = r.at("delivered").get<std::int64_t>();
      row.results.unique_clicks = r.at("unique_clicks").get<std::int64_t>();
      row.results.leads = r.at("leads").get<std::int64_t>();
      auto& seen = kit_results[{stored.claim.partner_id, stored.claim.kit_id}];
      if (d->second.id > seen.first) seen = {d->second.id, row.results};
    } else {
      row.decision = {
          mdf::Verdict::pending, 0, {"not reconciled yet: the daemon decides it on its next pass"}};
    }
    if (auto s = summaries.find(stored.claim.partner_id);
        s != summaries.end() && stored.claim.currency == report.currency) {
      s->second.claimed += stored.claim.amount_claimed;
      s->second.approved += row.decision.amount_approved;
    }
    report.rows.push_back(std::move(row));
  }
  for (const auto& [key, value] : kit_results) {
    auto s = summaries.find(key.first);
    if (s == summaries.end()) continue;
    s->second.delivered += value.second.delivered;
    s->second.unique_clicks += value.second.unique_clicks;
    s->second.leads += value.second.leads;
  }
  for (auto& [id, s] : summaries) report.partners.push_back(std::move(s));
  return report;
}

std::string claim_history_text(store::Store& store, const std::string& claim_id,
                               const std::string& partner) {
  store::MdfStore mdf_store(store);
  const auto found = mdf_store.find_claim(claim_id, partner);
  if (found.empty()) {
    throw InputError("", "no claim '" + claim_id + "'" +
                             (partner.empty() ? "" : " of partner '" + partner + "'"));
  }
  std::string out;
  for (const store::StoredClaim& s : found) {
    const mdf::Claim& c = s.claim;
    if (!out.empty()) out += "\n";
    out += "claim " + c.claim_id + " of partner " + c.partner_id + "\n";
    out += "  kit " + c.kit_id + ", period " + c.period.text() + ", activity " +
           mdf::date_text(c.activity_start) + " to " + mdf::date_text(c.activity_end) + "\n";
    out += "  claimed " + format_minor_units(c.amount_claimed) + " " + c.currency +
           ", actual spend " + format_minor_units(c.actual_spend) + ", invoice_ref " +
           (c.invoice_ref.empty() ? "(none)" : c.invoice_ref) + "\n";
    out += "  received from " + s.source + "\n";
    const auto records = mdf_store.history(s.id);
    if (records.empty()) out += "  no decision yet\n";
    for (std::size_t i = 0; i < records.size(); ++i) {
      const store::DecisionRecord& r = records[i];
      const auto day = std::chrono::floor<std::chrono::days>(r.decided_at);
      const std::chrono::hh_mm_ss time{r.decided_at - day};
      char at[32];
      std::snprintf(at, sizeof at, "%sT%02d:%02d:%02dZ",
                    mdf::date_text(std::chrono::year_month_day{day}).c_str(),
                    static_cast<int>(time.hours().count()),
                    static_cast<int>(time.minutes().count()),
                    static_cast<int>(time.seconds().count()));
      out += "decision " + std::to_string(i + 1) + " of " + std::to_string(records.size()) +
             (i + 1 == records.size() ? " (current)" : " (superseded)") + ", " + at + ": " +
             std::string(mdf::to_string(r.decision.verdict)) + ", approved " +
             format_minor_units(r.decision.amount_approved) + "\n";
      for (const auto& reason : r.decision.reasons) out += "  - " + reason + "\n";
      out += "  inputs: " + r.inputs + "\n";
    }
  }
  return out;
}

}  // namespace channeld::app
