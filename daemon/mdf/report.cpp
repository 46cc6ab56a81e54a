// The finance report in its three formats. Everything here is a function of the Report value:
// no clock, no locale, integer arithmetic only, rows sorted, so the same inputs give the same
// bytes.
#include <algorithm>

#include "mdf/mdf.hpp"

namespace channeld::mdf {

namespace {

using ordered_json = nlohmann::ordered_json;

std::string money(std::int64_t minor) {
  return format_minor_units(minor);
}

std::string join_reasons(const std::vector<std::string>& reasons) {
  std::string joined;
  for (const auto& r : reasons) joined += (joined.empty() ? "" : "; ") + r;
  return joined;
}

std::string csv_field(const std::string& value, bool always_quote = false) {
  if (!always_quote && value.find_first_of(",\"\r\n") == std::string::npos) return value;
  std::string out = "\"";
  for (char c : value) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::vector<const ReportRow*> sorted_rows(const Report& report) {
  std::vector<const ReportRow*> rows;
  for (const auto& r : report.rows) rows.push_back(&r);
  std::sort(rows.begin(), rows.end(), [](const ReportRow* a, const ReportRow* b) {
    return std::tie(a->claim.partner_id, a->claim.claim_id) <
           std::tie(b->claim.partner_id, b->claim.claim_id);
  });
  return rows;
}

std::vector<const PartnerSummary*> sorted_partners(const Report& report) {
  std::vector<const PartnerSummary*> partners;
  for (const auto& p : report.partners) partners.push_back(&p);
  std::sort(partners.begin(), partners.end(), [](const PartnerSummary* a, const PartnerSummary* b) {
    return a->partner_id < b->partner_id;
  });
  return partners;
}

// The program's figures, once, for JSON and HTML alike.
struct Program {
  std::int64_t claimed = 0, approved = 0, rejected = 0, pending = 0;
  std::int64_t won = 0, gross_margin = 0, total_cost = 0;
  std::optional<std::int64_t> ropi_hundredths;
};

std::int64_t share(std::int64_t amount, std::int64_t bp) {
  return amount / 10000 * bp + amount % 10000 * bp / 10000;
}

Program program_of(const Report& report) {
  Program p;
  // Totals are in the fund currency; a claim in another one was rejected and is listed, but
  // adding its amount to these would mix currencies.
  for (const auto& row : report.rows) {
    if (row.claim.currency != report.currency) continue;
    p.claimed += row.claim.amount_claimed;
    p.approved += row.decision.amount_approved;
    if (row.decision.verdict == Verdict::rejected) p.rejected += row.claim.amount_claimed;
    if (row.decision.verdict == Verdict::pending) p.pending += row.claim.amount_claimed;
  }
  p.won = report.leads.sourced_won + report.leads.influenced_won;
  p.gross_margin = share(p.won, report.gross_margin_rate_bp);
  p.total_cost = p.approved + report.program_costs;
  if (p.total_cost > 0) {
    // Rounded down to the hundredth, like every ratio here.
    const std::int64_t q = p.gross_margin / p.total_cost, r = p.gross_margin % p.total_cost;
    p.ropi_hundredths = q * 100 + r * 100 / p.total_cost;
  }
  return p;
}

std::optional<std::int64_t> per_lead(const PartnerSummary& p) {
  if (p.leads == 0) return std::nullopt;
  return p.approved / p.leads;
}

// A figure the browser test reads back and compares with the JSON: `key` is its JSON path.
std::string figure(const std::string& key, const std::string& value) {
  return "<span data-figure=\"" + escape_html(key) + "\">" + escape_html(value) + "</span>";
}

std::int64_t scaled(std::int64_t value, std::int64_t max, std::int64_t width) {
  return max <= 0 ? 0 : value * width / max;
}

}  // namespace

std::string render_csv(const Report& report) {
  std::string out =
      "claim_id,partner_id,partner_tier,kit_id,currency,amount_claimed,actual_spend,"
      "amount_approved,decision,reasons,delivered,unique_clicks,leads\n";
  for (const ReportRow* row : sorted_rows(report)) {
    const Claim& c = row->claim;
    out +=
        csv_field(c.claim_id) + "," + csv_field(c.partner_id) + "," + csv_field(row->partner_tier) +
        "," + csv_field(c.kit_id) + "," + c.currency + "," + money(c.amount_claimed) + "," +
        money(c.actual_spend) + "," + money(row->decision.amount_approved) + "," +
        std::string(to_string(row->decision.verdict)) + "," +
        csv_field(join_reasons(row->decision.reasons), true) + "," +
        std::to_string(row->results.delivered) + "," + std::to_string(row->results.unique_clicks) +
        "," + std::to_string(row->results.leads) + "\n";
  }
  return out;
}

std::string render_json(const Report& report) {
  ordered_json claims = ordered_json::array();
  for (const ReportRow* row : sorted_rows(report)) {
    const Claim& c = row->claim;
    claims.push_back(ordered_json{{"claim_id", c.claim_id},
                                  {"partner_id", c.partner_id},
                                  {"partner_tier", row->partner_tier},
                                  {"kit_id", c.kit_id},
                                  {"currency", c.currency},
                                  {"amount_claimed", money(c.amount_claimed)},
                                  {"actual_spend", money(c.actual_spend)},
                                  {"amount_approved", money(row->decision.amount_approved)},
                                  {"decision", to_string(row->decision.verdict)},
                                  {"reasons", join_reasons(row->decision.reasons)},
                                  {"delivered", row->results.delivered},
                                  {"unique_clicks", row->results.unique_clicks},
                                  {"leads", row->results.leads}});
  }
  ordered_json partners = ordered_json::array();
  for (const PartnerSummary* p : sorted_partners(report)) {
    auto lead = per_lead(*p);
    partners.push_back(ordered_json{
        {"partner_id", p->partner_id},
        {"tier", p->tier},
        {"allocated", money(p->allocated)},
        {"claimed", money(p->claimed)},
        {"approved", money(p->approved)},
        {"remaining", money(std::max<std::int64_t>(0, p->allocated - p->approved))},
        {"delivered", p->delivered},
        {"unique_clicks", p->unique_clicks},
        {"leads", p->leads},
        {"approved_per_lead", lead ? ordered_json(money(*lead)) : ordered_json(nullptr)}});
  }
  const Program p = program_of(report);
  ordered_json program{{"claimed", money(p.claimed)},
                       {"approved", money(p.approved)},
                       {"rejected", money(p.rejected)},
                       {"pending", money(p.pending)},
                       {"sourced_pipeline", money(report.leads.sourced_pipeline)},
                       {"sourced_won", money(report.leads.sourced_won)},
                       {"influenced_pipeline", money(report.leads.influenced_pipeline)},
                       {"influenced_won", money(report.leads.influenced_won)},
                       {"won", money(p.won)},
                       {"gross_margin_rate", basis_points_text(report.gross_margin_rate_bp)},
                       {"gross_margin", money(p.gross_margin)},
                       {"program_costs", money(report.program_costs)},
                       {"total_cost", money(p.total_cost)},
                       {"ropi", p.ropi_hundredths ? ordered_json(money(*p.ropi_hundredths))
                                                  : ordered_json(nullptr)}};
  ordered_json document{{"period", report.period.text()},
                        {"currency", report.currency},
                        {"claims", claims},
                        {"partners", partners},
                        {"program", program}};
  return document.dump(2) + "\n";
}

std::string render_html(const Report& report) {
  const Program p = program_of(report);
  const std::string title = "MDF reconciliation " + report.period.text();
  std::string out = R"(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>)" + escape_html(title) +
                    R"(</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; color: #222; margin: 2em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.approved { color: #17653a; } .partially_approved { color: #8a5a00; }
.rejected { color: #a11; } .pending { color: #555; }
svg text { font: 12px system-ui, sans-serif; }
@media print { body { margin: 0; } h2 { break-after: avoid; } tr { break-inside: avoid; } }
</style>
</head>
<body>
<h1>)" + escape_html(title) +
                    R"(</h1>
<p>All amounts in )" +
                    escape_html(report.currency) + R"(.</p>
<h2>Program</h2>
<table>
)";
  auto line = [&](const std::string& label, const std::string& key, const std::string& value) {
    out += "<tr><th>" + escape_html(label) + "</th><td class=\"n\">" + figure(key, value) +
           "</td></tr>\n";
  };
  line("Claimed", "program.claimed", money(p.claimed));
  line("Approved", "program.approved", money(p.approved));
  line("Rejected", "program.rejected", money(p.rejected));
  line("Pending", "program.pending", money(p.pending));
  line("Partner-sourced pipeline", "program.sourced_pipeline",
       money(report.leads.sourced_pipeline));
  line("Partner-sourced won", "program.sourced_won", money(report.leads.sourced_won));
  line("Influenced pipeline", "program.influenced_pipeline",
       money(report.leads.influenced_pipeline));
  line("Influenced won", "program.influenced_won", money(report.leads.influenced_won));
  line("Won", "program.won", money(p.won));
  line("Gross margin rate", "program.gross_margin_rate",
       basis_points_text(report.gross_margin_rate_bp));
  line("Gross margin (won x rate)", "program.gross_margin", money(p.gross_margin));
  line("Program costs", "program.program_costs", money(report.program_costs));
  line("Total cost (approved MDF + program costs)", "program.total_cost", money(p.total_cost));
  line("Return on partner investment (gross margin / total cost)", "program.ropi",
       p.ropi_hundredths ? money(*p.ropi_hundredths) : "n/a");
  out += "</table>\n";

  // Claimed against approved per partner: two bars each, scaled to the largest claim total.
  const auto partners = sorted_partners(report);
  std::int64_t max_amount = 0;
  for (const PartnerSummary* s : partners) {
    max_amount = std::max({max_amount, s->claimed, s->approved, s->allocated});
  }
  constexpr std::int64_t kBarWidth = 420, kLabel = 160, kRow = 44;
  const std::int64_t height = 30 + kRow * static_cast<std::int64_t>(partners.size());
  out += "<h2>Claimed and approved per partner</h2>\n";
  out +=
      "<svg role=\"img\" aria-label=\"claimed and approved per partner\" "
      "xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
      std::to_string(kLabel + kBarWidth + 120) + "\" height=\"" + std::to_string(height) + "\">\n";
  out += "<rect x=\"" + std::to_string(kLabel) +
         "\" y=\"4\" width=\"12\" height=\"12\" fill=\"#9bb7d4\"/><text x=\"" +
         std::to_string(kLabel + 16) + "\" y=\"14\">claimed</text>\n";
  out += "<rect x=\"" + std::to_string(kLabel + 90) +
         "\" y=\"4\" width=\"12\" height=\"12\" fill=\"#17653a\"/><text x=\"" +
         std::to_string(kLabel + 106) + "\" y=\"14\">approved</text>\n";
  std::int64_t y = 30;
  for (const PartnerSummary* s : partners) {
    const std::int64_t claimed_w = scaled(s->claimed, max_amount, kBarWidth);
    const std::int64_t approved_w = scaled(s->approved, max_amount, kBarWidth);
    out += "<text x=\"0\" y=\"" + std::to_string(y + 16) + "\">" + escape_html(s->partner_id) +
           "</text>\n";
    out += "<rect x=\"" + std::to_string(kLabel) + "\" y=\"" + std::to_string(y) + "\" width=\"" +
           std::to_string(claimed_w) + "\" height=\"16\" fill=\"#9bb7d4\"/><text x=\"" +
           std::to_string(kLabel + claimed_w + 6) + "\" y=\"" + std::to_string(y + 13) + "\">" +
           money(s->claimed) + "</text>\n";
    out += "<rect x=\"" + std::to_string(kLabel) + "\" y=\"" + std::to_string(y + 20) +
           "\" width=\"" + std::to_string(approved_w) +
           "\" height=\"16\" fill=\"#17653a\"/><text x=\"" +
           std::to_string(kLabel + approved_w + 6) + "\" y=\"" + std::to_string(y + 33) + "\">" +
           money(s->approved) + "</text>\n";
    y += kRow;
  }
  out += "</svg>\n";

  out += R"(<h2>Fund use per partner</h2>
<table>
<thead><tr><th>Partner</th><th>Tier</th><th class="n">Allocated</th><th class="n">Claimed</th><th class="n">Approved</th><th class="n">Remaining</th><th>Used</th><th class="n">Delivered</th><th class="n">Unique clicks</th><th class="n">Leads</th><th class="n">Approved per lead</th></tr></thead>
<tbody>
)";
  for (std::size_t i = 0; i < partners.size(); ++i) {
    const PartnerSummary& s = *partners[i];
    const std::string at = "partners." + std::to_string(i) + ".";
    const std::int64_t remaining = std::max<std::int64_t>(0, s.allocated - s.approved);
    const std::int64_t used_w = scaled(std::min(s.approved, s.allocated), s.allocated, 120);
    auto lead = per_lead(s);
    out +=
        "<tr><td>" + figure(at + "partner_id", s.partner_id) + "</td><td>" + escape_html(s.tier) +
        "</td><td class=\"n\">" + figure(at + "allocated", money(s.allocated)) +
        "</td><td class=\"n\">" + figure(at + "claimed", money(s.claimed)) +
        "</td><td class=\"n\">" + figure(at + "approved", money(s.approved)) +
        "</td><td class=\"n\">" + figure(at + "remaining", money(remaining)) +
        "</td><td><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"122\" height=\"12\">"
        "<rect x=\"0.5\" y=\"0.5\" width=\"121\" height=\"11\" fill=\"none\" stroke=\"#999\"/>"
        "<rect x=\"1\" y=\"1\" width=\"" +
        std::to_string(used_w) + "\" height=\"10\" fill=\"#17653a\"/></svg></td><td class=\"n\">" +
        figure(at + "delivered", std::to_string(s.delivered)) + "</td><td class=\"n\">" +
        figure(at + "unique_clicks", std::to_string(s.unique_clicks)) + "</td><td class=\"n\">" +
        figure(at + "leads", std::to_string(s.leads)) + "</td><td class=\"n\">" +
        figure(at + "approved_per_lead", lead ? money(*lead) : "n/a") + "</td></tr>\n";
  }
  out += R"(</tbody>
</table>
<h2>Claims</h2>
<table>
<thead><tr><th>Claim</th><th>Partner</th><th>Kit</th><th class="n">Claimed</th><th class="n">Actual spend</th><th class="n">Approved</th><th>Decision</th><th>Reasons</th></tr></thead>
<tbody>
)";
  const auto rows = sorted_rows(report);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const ReportRow& r = *rows[i];
    const std::string at = "claims." + std::to_string(i) + ".";
    const std::string verdict(to_string(r.decision.verdict));
    std::string reasons;
    for (const auto& reason : r.decision.reasons) reasons += "<li>" + escape_html(reason) + "</li>";
    out += "<tr><td>" + figure(at + "claim_id", r.claim.claim_id) + "</td><td>" +
           escape_html(r.claim.partner_id) + "</td><td>" + escape_html(r.claim.kit_id) +
           "</td><td class=\"n\">" + figure(at + "amount_claimed", money(r.claim.amount_claimed)) +
           " " + escape_html(r.claim.currency) + "</td><td class=\"n\">" +
           figure(at + "actual_spend", money(r.claim.actual_spend)) + "</td><td class=\"n\">" +
           figure(at + "amount_approved", money(r.decision.amount_approved)) + "</td><td class=\"" +
           verdict + "\">" + figure(at + "decision", verdict) + "</td><td><ul>" + reasons +
           "</ul></td></tr>\n";
  }
  out += "</tbody>\n</table>\n</body>\n</html>\n";
  return out;
}

}  // namespace channeld::mdf
