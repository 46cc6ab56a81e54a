// api/proof_routes: how a partner opts out of a kit it got a proof of (app/proofs.hpp):
//   GET  /p/<token>            confirmation page (a GET never opts out: scanners fetch links)
//   POST /p/<token>            opts the token's partner out of the token's kit (no auth, as /u/)
//   POST /v1/proofs/opt-out    the same for a partner's own tools: {"kit": "..."} with a partner
//                              token (own only), or admin with "partner_id"
// Handlers run on HTTP worker threads; the daemon's callbacks reach the store and the snapshot.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "api/http_server.hpp"
#include "store/proofs.hpp"

namespace channeld::api {

struct ProofDeps {
  std::function<std::string()> link_secret;  // verifies /p/ tokens
  // The kit's name and the partner's display name, or nullopt when either is unknown.
  struct Names {
    std::string kit, partner;
  };
  std::function<std::optional<Names>(const std::string& kit_id, const std::string& partner_id)>
      names;
  // Records the opt-out and settles the pair's queued messages; `via` is "link" or
  // "api:<token name>". Logs and counts it.
  std::function<store::OptOutResult(const std::string& kit_id, const std::string& partner_id,
                                    const std::string& via)>
      opt_out;
};

std::vector<Route> proof_routes(ProofDeps deps);

}  // namespace channeld::api
