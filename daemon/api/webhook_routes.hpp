// api/webhook_routes: failed webhook deliveries over the API, as `channeld webhooks
// failed|replay|enable` on the command line:
//   GET  /v1/webhooks/failed?partner=   a partner's failed webhook steps and feed events, and
//                                       its disabled endpoint (admin; partner: own)
//   POST /v1/webhooks/replay            queue them again, all or the listed ones, and enable the
//                                       endpoint (admin; partner: own)
//   POST /v1/webhooks/enable            enable the endpoint without replaying (admin; partner: own)
// Handlers run on HTTP worker threads and reach PostgreSQL through store::WebhookEndpoints; the
// running daemon's dispatcher and event feed pick replayed rows up at their next claim.
#pragma once

#include <functional>
#include <vector>

#include "api/http_server.hpp"
#include "store/webhooks.hpp"

namespace channeld::api {

struct WebhookDeps {
  store::Store* store = nullptr;
  std::function<SysTime()> clock;
};

// At most this many failed deliveries are listed; a replay of all replays every one.
inline constexpr std::size_t kMaxFailedListed = 1000;

std::vector<Route> webhook_routes(WebhookDeps deps);

}  // namespace channeld::api
