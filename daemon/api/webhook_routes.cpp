#include "api/webhook_routes.hpp"

#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>

namespace channeld::api {

namespace {

using nlohmann::json;

Response json_ok(const nlohmann::ordered_json& body) {
  return Response{200, "application/json", body.dump(), {}};
}

// The partner a request is about: a partner token's own (naming another is a 403, so nothing of
// it is revealed, not even whether it exists); for admin the one named, which is required.
std::variant<std::string, Response> partner_of(const Principal& who,
                                               const std::optional<std::string>& named) {
  if (who.role == Role::partner) {
    if (named && !named->empty() && *named != who.partner_id)
      return json_error(403, "a partner token may manage only its own partner's webhooks");
    return who.partner_id;
  }
  if (!named || named->empty()) return json_error(400, "'partner' is required");
  return *named;
}

// The body as a JSON object with an optional string "partner", or the 400 to send.
std::variant<json, Response> object_body(const Request& request) {
  json body = json::parse(request.body, nullptr, false);
  if (body.is_discarded()) return json_error(400, "request body is not JSON");
  if (!body.is_object()) return json_error(400, "request body must be a JSON object");
  if (body.contains("partner") && !body["partner"].is_string())
    return json_error(400, "field 'partner' must be a string");
  return body;
}

std::optional<std::string> named_partner(const json& body) {
  if (!body.contains("partner")) return std::nullopt;
  return body["partner"].get<std::string>();
}

// An optional array of row numbers, or the 400 to send.
std::variant<std::optional<std::vector<std::int64_t>>, Response> ids(const json& body,
                                                                     const std::string& name) {
  if (!body.contains(name) || body[name].is_null())
    return std::optional<std::vector<std::int64_t>>{};
  const json& list = body[name];
  if (!list.is_array()) return json_error(400, "field '" + name + "' must be an array of numbers");
  std::vector<std::int64_t> out;
  for (const auto& item : list) {
    if (!item.is_number_integer() || item.get<std::int64_t>() <= 0)
      return json_error(400, "field '" + name +
                                 "' must hold positive whole numbers (the ids "
                                 "GET /v1/webhooks/failed lists)");
    out.push_back(item.get<std::int64_t>());
  }
  return std::optional<std::vector<std::int64_t>>{std::move(out)};
}

class Handlers {
 public:
  explicit Handlers(WebhookDeps deps) : deps_(std::move(deps)) {}

  Response failed(const Request& request, const Principal& who) const {
    std::optional<std::string> named;
    if (auto it = request.query.find("partner"); it != request.query.end()) named = it->second;
    auto partner = partner_of(who, named);
    if (auto* refused = std::get_if<Response>(&partner)) return std::move(*refused);
    const std::string& id = std::get<std::string>(partner);
    store::WebhookEndpoints endpoints(*deps_.store);
    nlohmann::ordered_json disabled = nlohmann::ordered_json::array();
    for (const auto& e : endpoints.all_disabled()) {
      if (e.partner_id != id) continue;
      disabled.push_back(
          {{"url", e.url}, {"reason", e.reason}, {"disabled_at", iso_time(e.disabled_at)}});
    }
    nlohmann::ordered_json rows = nlohmann::ordered_json::array();
    for (const auto& f : endpoints.failed(id, kMaxFailedListed)) {
      rows.push_back({{"kind", f.event.empty() ? "step" : "event"},
                      {"id", f.id},
                      {"event", f.event.empty() ? nlohmann::ordered_json(nullptr)
                                                : nlohmann::ordered_json(f.event)},
                      {"kit_id", f.kit_id},
                      {"step_id", f.step_id},
                      {"email", f.email},
                      {"attempts", f.attempts},
                      {"last_error", f.last_error},
                      {"failed_at", iso_time(f.failed_at)}});
    }
    return json_ok({{"partner", id}, {"disabled_endpoints", disabled}, {"failed", rows}});
  }

  Response replay(const Request& request, const Principal& who) const {
    auto parsed = object_body(request);
    if (auto* refused = std::get_if<Response>(&parsed)) return std::move(*refused);
    const json& body = std::get<json>(parsed);
    auto messages = ids(body, "messages");
    if (auto* refused = std::get_if<Response>(&messages)) return std::move(*refused);
    auto events = ids(body, "events");
    if (auto* refused = std::get_if<Response>(&events)) return std::move(*refused);
    auto partner = partner_of(who, named_partner(body));
    if (auto* refused = std::get_if<Response>(&partner)) return std::move(*refused);
    const std::string& id = std::get<std::string>(partner);
    auto& message_ids = std::get<std::optional<std::vector<std::int64_t>>>(messages);
    auto& event_ids = std::get<std::optional<std::vector<std::int64_t>>>(events);
    store::WebhookEndpoints::Selection which;
    which.all = !message_ids && !event_ids;
    if (message_ids) which.steps = std::move(*message_ids);
    if (event_ids) which.events = std::move(*event_ids);
    const auto queued = store::WebhookEndpoints(*deps_.store).replay(id, which, deps_.clock());
    return json_ok({{"partner", id}, {"queued", queued}, {"endpoint_enabled", true}});
  }

  Response enable(const Request& request, const Principal& who) const {
    auto parsed = object_body(request);
    if (auto* refused = std::get_if<Response>(&parsed)) return std::move(*refused);
    auto partner = partner_of(who, named_partner(std::get<json>(parsed)));
    if (auto* refused = std::get_if<Response>(&partner)) return std::move(*refused);
    const std::string& id = std::get<std::string>(partner);
    const auto was_disabled = store::WebhookEndpoints(*deps_.store).enable(id);
    return json_ok({{"partner", id}, {"was_disabled", was_disabled > 0}});
  }

 private:
  WebhookDeps deps_;
};

}  // namespace

std::vector<Route> webhook_routes(WebhookDeps deps) {
  auto h = std::make_shared<const Handlers>(std::move(deps));
  const std::vector<Role> roles{Role::admin, Role::partner};
  return {
      {"GET", "/v1/webhooks/failed", roles,
       [h](const Request& r, const Principal* p) { return h->failed(r, *p); }},
      {"POST", "/v1/webhooks/replay", roles,
       [h](const Request& r, const Principal* p) { return h->replay(r, *p); }},
      {"POST", "/v1/webhooks/enable", roles,
       [h](const Request& r, const Principal* p) { return h->enable(r, *p); }},
  };
}

}  // namespace channeld::api
