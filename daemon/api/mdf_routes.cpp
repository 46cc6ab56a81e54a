#include "api/mdf_routes.hpp"

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <variant>

#include "store/mdf.hpp"

namespace channeld::api {

namespace {

using nlohmann::json;

constexpr std::string_view kJson = "application/json";

Response json_response(int status, const json& body) {
  return Response{status, std::string(kJson), body.dump(2) + "\n", {}};
}

// The period parameter, or the 400 to send. Empty is allowed only when `required` is false.
std::variant<std::string, Response> period_of(const Request& request, bool required) {
  auto it = request.query.find("period");
  if (it == request.query.end() || it->second.empty()) {
    if (required) return json_error(400, "parameter 'period' is required, such as 2026-Q4");
    return std::string();
  }
  try {
    return mdf::parse_period(it->second, "period").text();
  } catch (const InputError& e) {
    return json_error(400, e.what());
  }
}

Response post_claims(const MdfDeps& deps, const Request& request, const Principal& who) {
  json body = json::parse(request.body, nullptr, false);
  if (body.is_discarded()) return json_error(400, "request body is not JSON");
  std::vector<mdf::ClaimRow> rows;
  try {
    rows = mdf::read_claims_json(body, "request body");
  } catch (const InputError& e) {
    return json_error(400, e.what());
  }
  // A partner may send only its own claims: one claim for another partner refuses the whole
  // request, before anything is stored, so a request is never half-applied on a 403.
  for (const auto& row : rows) {
    if (row.claim && !who.may_see_partner(row.claim->partner_id)) {
      return json_error(403, row.where +
                                 ": a partner token may send claims for its own partner "
                                 "only, not '" +
                                 row.claim->partner_id + "'");
    }
  }
  store::MdfStore mdf_store(*deps.store);
  const std::string source = "api:" + who.token_name;
  const SysTime now = deps.clock();
  json results = json::array();
  std::size_t accepted = 0;
  for (const auto& row : rows) {
    json result{{"where", row.where}};
    if (!row.claim) {
      result["claim_id"] = nullptr;
      result["partner_id"] = nullptr;
      result["outcome"] = "refused";
      result["detail"] = row.error;
    } else {
      result["claim_id"] = row.claim->claim_id;
      result["partner_id"] = row.claim->partner_id;
      const store::ClaimIntake intake = mdf_store.add_claim(*row.claim, source, now);
      const bool ok =
          intake == store::ClaimIntake::added || intake == store::ClaimIntake::invoice_supplied;
      accepted += ok ? 1 : 0;
      result["outcome"] = ok ? std::string(store::to_string(intake)) : "refused";
      result["detail"] = ok ? "" : std::string(store::to_string(intake));
    }
    results.push_back(std::move(result));
  }
  return json_response(200, json{{"accepted", accepted},
                                 {"refused", rows.size() - accepted},
                                 {"results", std::move(results)}});
}

Response get_claims(const MdfDeps& deps, const Request& request, const Principal& who) {
  auto period = period_of(request, false);
  if (auto* error = std::get_if<Response>(&period)) return *error;
  store::MdfStore mdf_store(*deps.store);
  const std::string partner = who.role == Role::partner ? who.partner_id : "";
  const auto claims = mdf_store.claims(std::get<std::string>(period), partner);
  const auto decisions = mdf_store.latest_decisions();
  json out = json::array();
  for (const auto& stored : claims) {
    json claim = mdf::to_json(stored.claim);
    auto it = decisions.find(stored.id);
    if (it == decisions.end()) {
      claim["decision"] = "pending";
      claim["amount_approved"] = format_minor_units(0);
      claim["reasons"] = json::array({"not reconciled yet"});
    } else {
      claim["decision"] = std::string(mdf::to_string(it->second.decision.verdict));
      claim["amount_approved"] = format_minor_units(it->second.decision.amount_approved);
      claim["reasons"] = it->second.decision.reasons;
    }
    out.push_back(std::move(claim));
  }
  return json_response(200, json{{"claims", std::move(out)}});
}

Response get_report(const MdfDeps& deps, const Request& request) {
  auto period = period_of(request, true);
  if (auto* error = std::get_if<Response>(&period)) return *error;
  auto it = request.query.find("format");
  const std::string format = it == request.query.end() || it->second.empty() ? "csv" : it->second;
  if (format != "csv" && format != "json" && format != "html") {
    return json_error(400, "parameter 'format' must be csv, json or html, not '" + format + "'");
  }
  const mdf::Report report =
      deps.report(mdf::parse_period(std::get<std::string>(period), "period"));
  if (format == "csv") return Response{200, "text/csv; charset=utf-8", mdf::render_csv(report), {}};
  if (format == "json") return Response{200, std::string(kJson), mdf::render_json(report), {}};
  return Response{200, "text/html; charset=utf-8", mdf::render_html(report), {}};
}

}  // namespace

std::vector<Route> mdf_routes(MdfDeps deps) {
  auto shared = std::make_shared<const MdfDeps>(std::move(deps));
  std::vector<Route> routes;
  routes.push_back(Route{"POST",
                         "/v1/claims",
                         {Role::admin, Role::finance, Role::partner},
                         [shared](const Request& request, const Principal* who) {
                           return post_claims(*shared, request, *who);
                         },
                         kMaxClaimsBody});
  routes.push_back(Route{"GET",
                         "/v1/claims",
                         {Role::admin, Role::finance, Role::partner},
                         [shared](const Request& request, const Principal* who) {
                           return get_claims(*shared, request, *who);
                         }});
  routes.push_back(Route{
      "GET",
      "/v1/reports/mdf",
      {Role::admin, Role::finance},
      [shared](const Request& request, const Principal*) { return get_report(*shared, request); }});
  return routes;
}

}  // namespace channeld::api
