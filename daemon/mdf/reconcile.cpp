// The reconciliation rules and the funds they draw down. See docs/mdf.md for the rules as
// finance reads them; every sentence a decision gives comes from this file.
#include <algorithm>
#include <cstdio>

#include "mdf/mdf.hpp"

namespace channeld::mdf {

namespace {

std::string money(std::int64_t minor) {
  return format_minor_units(minor);
}

std::string utc_text(SysTime t) {
  const auto day = std::chrono::floor<std::chrono::days>(t);
  const std::chrono::hh_mm_ss time{t - day};
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "T%02d:%02d:%02dZ", static_cast<int>(time.hours().count()),
                static_cast<int>(time.minutes().count()), static_cast<int>(time.seconds().count()));
  return date_text(std::chrono::year_month_day{day}) + buffer;
}

std::string day_text(SysTime t) {
  return date_text(std::chrono::year_month_day{std::chrono::floor<std::chrono::days>(t)});
}

// floor(amount x bp / 10000) without overflow: amount = q x 10000 + r, and bp <= 10000 keeps
// q x bp within amount.
std::int64_t share(std::int64_t amount, std::int64_t bp) {
  return amount / 10000 * bp + amount % 10000 * bp / 10000;
}

}  // namespace

std::string_view to_string(Verdict v) {
  switch (v) {
    case Verdict::approved:
      return "approved";
    case Verdict::partially_approved:
      return "partially_approved";
    case Verdict::rejected:
      return "rejected";
    case Verdict::pending:
      return "pending";
  }
  return "pending";
}

std::optional<Verdict> verdict_from_string(std::string_view s) {
  for (Verdict v :
       {Verdict::approved, Verdict::partially_approved, Verdict::rejected, Verdict::pending}) {
    if (to_string(v) == s) return v;
  }
  return std::nullopt;
}

std::string basis_points_text(std::int64_t bp) {
  std::string text = std::to_string(bp / 10000);
  std::int64_t fraction = bp % 10000;
  if (fraction == 0) return text;
  char digits[8];
  std::snprintf(digits, sizeof digits, "%04lld", static_cast<long long>(fraction));
  std::string decimals = digits;
  while (decimals.back() == '0') decimals.pop_back();
  return text + "." + decimals;
}

nlohmann::json to_json(const Inputs& in) {
  nlohmann::json terms{{"eligible", in.terms.eligible},
                       {"coop_ratio", basis_points_text(in.terms.coop_ratio_bp)},
                       {"currency", in.terms.currency},
                       {"claim_window_days", in.terms.claim_window_days}};
  terms["max_per_partner"] = in.terms.max_per_partner_minor
                                 ? nlohmann::json(money(*in.terms.max_per_partner_minor))
                                 : nlohmann::json(nullptr);
  terms["min_delivered"] =
      in.terms.min_delivered ? nlohmann::json(*in.terms.min_delivered) : nlohmann::json(nullptr);
  terms["min_unique_clicks"] = in.terms.min_unique_clicks
                                   ? nlohmann::json(*in.terms.min_unique_clicks)
                                   : nlohmann::json(nullptr);
  nlohmann::json results{{"delivered", in.results.delivered},
                         {"unique_clicks", in.results.unique_clicks},
                         {"leads", in.results.leads}};
  results["last_send"] = in.results.last_send ? nlohmann::json(utc_text(*in.results.last_send))
                                              : nlohmann::json(nullptr);
  return nlohmann::json{{"partner_known", in.partner_known},
                        {"partner_active", in.partner_active},
                        {"partner_tier", in.partner_tier},
                        {"kit_known", in.kit_known},
                        {"kit_terms", terms},
                        {"in_audience", in.in_audience},
                        {"results", results},
                        {"received_at", utc_text(in.received_at)},
                        {"fund_currency", in.fund_currency},
                        {"fund_allocated", money(in.fund_allocated)},
                        {"fund_used_before", money(in.fund_used_before)},
                        {"kit_approved_before", money(in.kit_approved_before)}};
}

Decision reconcile(const Claim& claim, const Inputs& in) {
  Decision d;
  std::vector<std::string>& why = d.reasons;
  const std::string& partner = claim.partner_id;
  const std::string& kit = claim.kit_id;

  if (claim.currency != in.fund_currency) {
    why.push_back("claim currency " + claim.currency + " is not the fund's currency " +
                  in.fund_currency + ": currencies never mix");
  }
  if (!in.partner_known) {
    why.push_back("partner " + partner + " is unknown");
  } else if (!in.partner_active) {
    why.push_back("partner " + partner + " is suspended");
  }
  const bool kit_usable = in.kit_known && in.terms.eligible;
  if (!in.kit_known) {
    why.push_back("kit " + kit + " is unknown");
  } else if (!in.terms.eligible) {
    why.push_back("kit " + kit + " is not MDF-eligible");
  } else if (claim.currency != in.terms.currency) {
    why.push_back("claim currency " + claim.currency + " is not the kit's currency " +
                  in.terms.currency);
  }

  if (in.partner_known && kit_usable) {
    const CampaignResults& r = in.results;
    if (!in.in_audience) {
      why.push_back("partner " + partner + " is not in the audience of kit " + kit);
    } else if (r.delivered == 0) {
      why.push_back("partner " + partner + " did not run kit " + kit + ": no delivered messages");
    }
    if (r.delivered > 0 && in.terms.min_delivered && r.delivered < *in.terms.min_delivered) {
      why.push_back("delivered " + std::to_string(r.delivered) +
                    " messages, below the kit's min_delivered of " +
                    std::to_string(*in.terms.min_delivered));
    }
    if (r.delivered > 0 && in.terms.min_unique_clicks &&
        r.unique_clicks < *in.terms.min_unique_clicks) {
      why.push_back(std::to_string(r.unique_clicks) +
                    " unique clicks, below the kit's min_unique_clicks of " +
                    std::to_string(*in.terms.min_unique_clicks));
    }
    if (r.last_send) {
      const SysTime limit = *r.last_send + std::chrono::days{in.terms.claim_window_days};
      if (in.received_at > limit) {
        why.push_back("received " + day_text(in.received_at) + ", more than the kit's " +
                      std::to_string(in.terms.claim_window_days) +
                      " claim_window_days after the last send on " + day_text(*r.last_send));
      }
    }
  }

  if (!why.empty()) {
    d.verdict = Verdict::rejected;
    return d;
  }
  if (claim.invoice_ref.empty()) {
    d.verdict = Verdict::pending;
    why.push_back("no invoice_ref: the claim waits until an invoice is supplied");
    return d;
  }

  struct Limit {
    std::int64_t amount;
    std::string sentence;
  };
  std::vector<Limit> limits;
  limits.push_back({share(claim.actual_spend, in.terms.coop_ratio_bp),
                    "coop_ratio " + basis_points_text(in.terms.coop_ratio_bp) +
                        " of actual spend " + money(claim.actual_spend) + " allows " +
                        money(share(claim.actual_spend, in.terms.coop_ratio_bp))});
  if (in.terms.max_per_partner_minor) {
    const std::int64_t left =
        std::max<std::int64_t>(0, *in.terms.max_per_partner_minor - in.kit_approved_before);
    limits.push_back({left, "the kit's max_per_partner " + money(*in.terms.max_per_partner_minor) +
                                " less " + money(in.kit_approved_before) +
                                " already approved on kit " + kit + " leaves " + money(left)});
  }
  const std::int64_t fund_left = std::max<std::int64_t>(0, in.fund_allocated - in.fund_used_before);
  limits.push_back({fund_left, "the " + claim.period.text() + " fund of " +
                                   money(in.fund_allocated) + " has " + money(fund_left) +
                                   " left after earlier claims"});

  std::int64_t approved = claim.amount_claimed;
  for (const Limit& l : limits) approved = std::min(approved, l.amount);
  d.amount_approved = approved;
  if (approved == claim.amount_claimed) {
    d.verdict = Verdict::approved;
    why.push_back("approved in full: " + money(approved) +
                  " is within the co-op share, the kit cap and the fund");
    return d;
  }
  d.verdict = approved == 0 ? Verdict::rejected : Verdict::partially_approved;
  why.push_back(approved == 0
                    ? "nothing left to approve of " + money(claim.amount_claimed) + " claimed"
                    : "approved " + money(approved) + " of " + money(claim.amount_claimed) +
                          " claimed");
  for (const Limit& l : limits) {
    if (l.amount == approved) why.push_back(l.sentence);
  }
  return d;
}

Inputs Facts::inputs_for(const ReceivedClaim& received) const {
  const Claim& c = received.claim;
  Inputs in;
  in.received_at = received.received_at;
  in.fund_currency = fund_currency;
  if (auto p = partners.find(c.partner_id); p != partners.end()) {
    in.partner_known = true;
    in.partner_active = p->second.active;
    in.partner_tier = p->second.tier;
    in.fund_allocated = p->second.allocation;
  }
  if (auto k = kits.find(c.kit_id); k != kits.end()) {
    in.kit_known = true;
    in.terms = k->second.terms;
    auto audience = k->second.in_audience.find(c.partner_id);
    in.in_audience = audience != k->second.in_audience.end() && audience->second;
  }
  if (auto r = results.find({c.kit_id, c.partner_id}); r != results.end()) in.results = r->second;
  return in;
}

std::vector<Reconciled> reconcile_all(const std::vector<ReceivedClaim>& in_receipt_order,
                                      const Facts& facts) {
  std::map<std::pair<std::string, Period>, std::int64_t> fund_used;      // (partner, period)
  std::map<std::pair<std::string, std::string>, std::int64_t> kit_used;  // (partner, kit)
  std::vector<Reconciled> out;
  out.reserve(in_receipt_order.size());
  for (const ReceivedClaim& received : in_receipt_order) {
    const Claim& c = received.claim;
    Reconciled r;
    r.inputs = facts.inputs_for(received);
    std::int64_t& used = fund_used[{c.partner_id, c.period}];
    std::int64_t& on_kit = kit_used[{c.partner_id, c.kit_id}];
    r.inputs.fund_used_before = used;
    r.inputs.kit_approved_before = on_kit;
    r.decision = reconcile(c, r.inputs);
    used += r.decision.amount_approved;
    on_kit += r.decision.amount_approved;
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace channeld::mdf
