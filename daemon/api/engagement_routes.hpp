// api/engagement_routes: the endpoints recipients and CRMs reach after a message went out:
//   GET /c/<token>          click: records it, 302 to the kit's own link (no token: 404)
//   GET /o/<token>          open pixel: records it, a 1x1 GIF
//   GET|POST /u/<token>     unsubscribe: confirmation page; RFC 8058 one-click POST
//   POST /v1/events         bounces and complaints from the relay (admin)
//   POST /v1/leads          leads from a partner's CRM (admin, partner: own)
//   GET  /v1/results        per kit and partner results, JSON or CSV (admin, finance, partner)
// Handlers run on HTTP worker threads and reach PostgreSQL through store::Engagement; what
// they need from the running daemon (secret, window, the links of a sent message) comes from
// callbacks, so they never touch the daemon's snapshot or loops directly.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/http_server.hpp"
#include "render/render.hpp"
#include "store/engagement.hpp"

namespace channeld::api {

struct EngagementSettings {
  std::string link_secret;  // verifies click, open and unsubscribe tokens
  std::chrono::seconds attribution_window{90 * 24 * 3600};
  std::string currency = "USD";  // leads are reported in this currency
};

struct EngagementDeps {
  store::Engagement* store = nullptr;
  // Where opens and clicks go: the daemon makes them durable in a local journal first
  // (app::HitJournal); store->record when empty.
  std::function<void(store::Hit, store::HitRecorded)> record;
  std::function<EngagementSettings()> settings;
  // The URL a click token stands for: the link of that message with that digest, as the kit
  // renders it for that message now; nullopt if the kit no longer has that link.
  std::function<std::optional<std::string>(const store::MessageRef&, const render::ClickTarget&)>
      link;
  // A partner's display name for the unsubscribe page; the id itself when unknown.
  std::function<std::string(const std::string& partner_id)> partner_name;
  std::function<SysTime()> clock;
  // Changes whenever the kits may have changed, so links cached from an older kit are resolved
  // again. Empty: the links never change (tests with a fixed kit).
  std::function<std::uint64_t()> generation;
};

class Tracker;
// The clicks and opens go through `tracker` (one made from `deps` when null), so a daemon that
// also serves them from its public front shares one link cache between both servers.
std::vector<Route> engagement_routes(EngagementDeps deps, std::shared_ptr<Tracker> tracker = {});

}  // namespace channeld::api
