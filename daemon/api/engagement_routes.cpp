#include "api/engagement_routes.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <variant>

#include "api/attribution.hpp"
#include "api/pages.hpp"
#include "api/tracker.hpp"

namespace channeld::api {

namespace {

using nlohmann::json;

constexpr std::string_view kJson = "application/json";

Response json_ok(int status, const json& body) {
  return Response{status, std::string(kJson), body.dump(), {}};
}

std::string tail(const Request& request, std::string_view prefix) {
  return request.path.substr(prefix.size());
}

// The body as a JSON object, or the 400 to send.
std::variant<json, Response> json_body(const Request& request) {
  json body;
  try {
    body = json::parse(request.body);
  } catch (const json::parse_error& e) {
    return json_error(400, std::string("request body is not JSON: ") + e.what());
  }
  if (!body.is_object()) return json_error(400, "request body must be a JSON object");
  return body;
}

// A string field, absent or "" as nullopt; a field of another type is a 400.
std::variant<std::optional<std::string>, Response> string_field(const json& body,
                                                                const std::string& name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return std::optional<std::string>{};
  if (!it->is_string()) return json_error(400, "field '" + name + "' must be a string");
  std::string value = it->get<std::string>();
  if (value.empty()) return std::optional<std::string>{};
  return std::optional<std::string>{std::move(value)};
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// RFC 8058: the one-click POST carries List-Unsubscribe=One-Click, form-encoded or multipart.
// The confirmation page's form sends the same field.
bool one_click(const Request& request) {
  for (const auto* fields : {&request.form, &request.query}) {
    auto it = fields->find("List-Unsubscribe");
    if (it != fields->end() && it->second == "One-Click") return true;
  }
  return false;
}

class Handlers {
 public:
  explicit Handlers(EngagementDeps deps) : deps_(std::move(deps)) {}

  Response unsubscribe_page(const Request& request) const {
    const auto settings = deps_.settings();
    auto target = render::verify_unsubscribe_token(settings.link_secret, tail(request, "/u/"));
    if (!target) return not_found_page();
    const std::string partner = deps_.partner_name(target->partner_id);
    // A GET never unsubscribes: mail scanners fetch every link of a message.
    return page(200, "Unsubscribe",
                "<p>Stop emails from <strong>" + escape_html(partner) + "</strong> to <strong>" +
                    escape_html(target->email) +
                    "</strong>?</p><form method=\"post\" action=\"\">"
                    "<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">"
                    "<button type=\"submit\" style=\"font-size:1em;padding:.5em 1.2em;\">"
                    "Unsubscribe</button></form>");
  }

  Response unsubscribe(const Request& request) const {
    const auto settings = deps_.settings();
    auto target = render::verify_unsubscribe_token(settings.link_secret, tail(request, "/u/"));
    if (!target) return not_found_page();
    if (!one_click(request)) {
      return page(400, "Unsubscribe",
                  "<p>This request did not say List-Unsubscribe=One-Click. Open the link from "
                  "your email and press the button.</p>");
    }
    deps_.store->unsubscribe(target->partner_id, target->email, deps_.clock());
    const std::string partner = deps_.partner_name(target->partner_id);
    return page(200, "You are unsubscribed",
                "<p>" + escape_html(target->email) + " will get no more emails from <strong>" +
                    escape_html(partner) + "</strong> sent with this service.</p>");
  }

  Response events(const Request& request) const {
    auto parsed = json_body(request);
    if (auto* refused = std::get_if<Response>(&parsed)) return std::move(*refused);
    const json& body = std::get<json>(parsed);
    auto type = string_field(body, "type");
    if (auto* refused = std::get_if<Response>(&type)) return std::move(*refused);
    const auto& type_text = std::get<std::optional<std::string>>(type);
    store::ReportKind kind;
    if (type_text == "hard_bounce") {
      kind = store::ReportKind::hard_bounce;
    } else if (type_text == "soft_bounce") {
      kind = store::ReportKind::soft_bounce;
    } else if (type_text == "complaint") {
      kind = store::ReportKind::complaint;
    } else {
      return json_error(400, "field 'type' must be hard_bounce, soft_bounce or complaint");
    }
    auto message_id = string_field(body, "message_id");
    if (auto* refused = std::get_if<Response>(&message_id)) return std::move(*refused);
    auto email = string_field(body, "email");
    if (auto* refused = std::get_if<Response>(&email)) return std::move(*refused);
    const auto& id = std::get<std::optional<std::string>>(message_id);
    const auto& address = std::get<std::optional<std::string>>(email);
    if (!id && !address) return json_error(400, "give 'message_id' or 'email'");
    if (address && address->find('@') == std::string::npos)
      return json_error(400, "field 'email' is not an email address");

    std::optional<store::MessageRef> message;
    if (id) {
      message = deps_.store->message_by_message_id(*id);
      if (!message) return json_error(404, "no message has Message-ID " + *id);
    }
    const auto touched = deps_.store->report(kind, message, address.value_or(""), deps_.clock());
    const std::string who = message ? message->email : lower(*address);
    return json_ok(200, {{"type", *type_text},
                         {"email", who},
                         {"messages", touched},
                         {"suppressed", kind != store::ReportKind::soft_bounce}});
  }

  Response leads(const Request& request, const Principal& principal) const {
    auto parsed = json_body(request);
    if (auto* refused = std::get_if<Response>(&parsed)) return std::move(*refused);
    const json& body = std::get<json>(parsed);
    std::map<std::string, std::optional<std::string>> fields;
    for (const char* name :
         {"email", "message_id", "stage", "amount", "currency", "external_id", "partner_id"}) {
      auto value = string_field(body, name);
      if (auto* refused = std::get_if<Response>(&value)) return std::move(*refused);
      fields[name] = std::get<std::optional<std::string>>(value);
    }
    std::string partner;
    if (principal.role == Role::partner) {
      if (fields["partner_id"] && *fields["partner_id"] != principal.partner_id)
        return json_error(403, "a partner token may report leads only for its own partner");
      partner = principal.partner_id;
    } else {
      if (!fields["partner_id"]) return json_error(400, "field 'partner_id' is required");
      partner = *fields["partner_id"];
    }
    if (!fields["external_id"]) return json_error(400, "field 'external_id' is required");
    const std::string stage = fields["stage"].value_or("lead");
    if (stage != "lead" && stage != "opportunity" && stage != "won")
      return json_error(400, "field 'stage' must be lead, opportunity or won");
    const auto settings = deps_.settings();
    store::LeadRecord lead;
    lead.partner_id = partner;
    lead.external_id = *fields["external_id"];
    lead.stage = stage;
    lead.currency = fields["currency"].value_or(settings.currency);
    if (lead.currency != settings.currency)
      return json_error(400, "field 'currency' is " + lead.currency +
                                 ", but this installation counts pipeline in " + settings.currency);
    if (fields["amount"]) {
      try {
        lead.amount_minor = parse_minor_units(*fields["amount"], "amount");
      } catch (const InputError& e) {
        return json_error(400, std::string("field ") + e.what());
      }
    }

    std::optional<std::string> message_id = fields["message_id"];
    if (message_id) {
      auto message = deps_.store->message_by_message_id(*message_id);
      // Another partner's message is as unknown to this caller as one that does not exist.
      if (!message || message->partner_id != partner)
        return json_error(404,
                          "partner " + partner + " sent no message with Message-ID " + *message_id);
      if (!fields["email"]) fields["email"] = message->email;
    }
    if (!fields["email"]) return json_error(400, "give 'email' or 'message_id'");
    if (fields["email"]->find('@') == std::string::npos)
      return json_error(400, "field 'email' is not an email address");
    lead.email = lower(*fields["email"]);

    const SysTime now = deps_.clock();
    auto touches =
        deps_.store->touches(partner, lead.email, now - settings.attribution_window, now);
    auto attribution = attribute_lead(touches, now, settings.attribution_window, message_id);
    lead.touch = attribution.touch;
    lead.origin = attribution.origin;
    auto saved = deps_.store->save_lead(lead, now);
    json out = {{"partner_id", partner},
                {"external_id", lead.external_id},
                {"stage", saved.stage},
                {"origin", saved.origin},
                {"kit_id", saved.kit_id ? json(*saved.kit_id) : json(nullptr)},
                {"step_id", saved.step_id ? json(*saved.step_id) : json(nullptr)}};
    return json_ok(saved.created ? 201 : 200, out);
  }

  Response results(const Request& request, const Principal& principal) const {
    auto query = [&](const std::string& name) {
      auto it = request.query.find(name);
      return it == request.query.end() ? std::string() : it->second;
    };
    std::string partner = query("partner");
    if (principal.role == Role::partner) {
      if (!partner.empty() && partner != principal.partner_id)
        return json_error(403, "a partner token may read only its own partner's results");
      partner = principal.partner_id;
    }
    const std::string format = query("format").empty() ? "json" : query("format");
    if (format != "json" && format != "csv") return json_error(400, "format must be json or csv");
    const auto rows = deps_.store->results(query("kit"), partner);
    const auto settings = deps_.settings();
    if (format == "csv") {
      std::string csv =
          "kit_id,partner_id,sent,delivered,bounced,unique_opens,unique_human_clicks,"
          "unsubscribes,complaints,leads,pipeline,won,currency,last_sent_at\r\n";
      for (const auto& r : rows) {
        // Kit and partner ids are [a-z0-9-]: nothing to quote.
        csv += r.kit_id + "," + r.partner_id + "," + std::to_string(r.sent) + "," +
               std::to_string(r.delivered) + "," + std::to_string(r.bounced) + "," +
               std::to_string(r.unique_opens) + "," + std::to_string(r.unique_human_clicks) + "," +
               std::to_string(r.unsubscribes) + "," + std::to_string(r.complaints) + "," +
               std::to_string(r.leads) + "," + format_minor_units(r.pipeline_minor) + "," +
               format_minor_units(r.won_minor) + "," + settings.currency + "," +
               (r.last_sent_at ? iso_time(*r.last_sent_at) : "") + "\r\n";
      }
      return Response{200, "text/csv; charset=utf-8", std::move(csv), {}};
    }
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const auto& r : rows) {
      list.push_back(
          {{"kit_id", r.kit_id},
           {"partner_id", r.partner_id},
           {"sent", r.sent},
           {"delivered", r.delivered},
           {"bounced", r.bounced},
           {"unique_opens", r.unique_opens},
           {"unique_human_clicks", r.unique_human_clicks},
           {"unsubscribes", r.unsubscribes},
           {"complaints", r.complaints},
           {"leads", r.leads},
           {"pipeline", format_minor_units(r.pipeline_minor)},
           {"won", format_minor_units(r.won_minor)},
           {"last_sent_at", r.last_sent_at ? nlohmann::ordered_json(iso_time(*r.last_sent_at))
                                           : nlohmann::ordered_json(nullptr)}});
    }
    nlohmann::ordered_json out = {{"currency", settings.currency}, {"results", list}};
    return Response{200, std::string(kJson), out.dump(), {}};
  }

 private:
  EngagementDeps deps_;
};

// A tracking request answered on this (httplib worker) thread: the Tracker may reply from the
// recorder's thread once the hit is durable, so the worker waits for that reply.
Response tracked(Tracker& tracker, const Request& request) {
  std::promise<Response> answered;
  auto answer = answered.get_future();
  if (!tracker.serve(
          request, [&answered](Response r) { answered.set_value(std::move(r)); }, true))
    return not_found_page();
  return answer.get();
}

}  // namespace

std::vector<Route> engagement_routes(EngagementDeps deps, std::shared_ptr<Tracker> tracker) {
  if (!tracker) tracker = std::make_shared<Tracker>(deps);
  auto h = std::make_shared<const Handlers>(std::move(deps));
  const std::vector<Role> anyone;
  std::vector<Route> routes;
  routes.push_back({"GET", "/c/", anyone, [tracker](const Request& r, const Principal*) {
                      return tracked(*tracker, r);
                    }});
  routes.push_back({"GET", "/o/", anyone, [tracker](const Request& r, const Principal*) {
                      return tracked(*tracker, r);
                    }});
  routes.push_back({"GET", "/u/", anyone,
                    [h](const Request& r, const Principal*) { return h->unsubscribe_page(r); }});
  routes.push_back({"POST", "/u/", anyone,
                    [h](const Request& r, const Principal*) { return h->unsubscribe(r); }});
  routes.push_back({"POST", "/v1/events", {Role::admin}, [h](const Request& r, const Principal*) {
                      return h->events(r);
                    }});
  routes.push_back({"POST",
                    "/v1/leads",
                    {Role::admin, Role::partner},
                    [h](const Request& r, const Principal* p) { return h->leads(r, *p); }});
  routes.push_back({"GET",
                    "/v1/results",
                    {Role::admin, Role::finance, Role::partner},
                    [h](const Request& r, const Principal* p) { return h->results(r, *p); }});
  return routes;
}

}  // namespace channeld::api
