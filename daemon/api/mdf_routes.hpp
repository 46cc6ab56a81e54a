// api/mdf_routes: MDF over the API, for partners' portals and finance:
//   POST /v1/claims        claims as JSON, one object or an array (admin, finance; partner: own)
//   GET  /v1/claims        claims of a period with their latest decision (admin, finance;
//                          partner: own)
//   GET  /v1/reports/mdf   the finance report, CSV, JSON or HTML (admin, finance)
// Claims go through the same parser and store intake as the claims folder, and the report is
// built and rendered by the same functions as `channeld report mdf`, so the bytes are the same.
// What the report needs from the running daemon (config, partner files) comes from a callback.
#pragma once

#include <functional>
#include <vector>

#include "api/http_server.hpp"
#include "mdf/mdf.hpp"
#include "store/store.hpp"

namespace channeld::api {

struct MdfDeps {
  store::Store* store = nullptr;
  // The period's report from the config and partner files in force (app::build_report).
  std::function<mdf::Report(const mdf::Period&)> report;
  std::function<SysTime()> clock;
};

// Largest POST /v1/claims body; larger is 413.
inline constexpr std::size_t kMaxClaimsBody = 1024 * 1024;

std::vector<Route> mdf_routes(MdfDeps deps);

}  // namespace channeld::api
