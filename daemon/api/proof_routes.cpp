#include "api/proof_routes.hpp"

#include <memory>
#include <nlohmann/json.hpp>

#include "api/pages.hpp"
#include "render/render.hpp"

namespace channeld::api {

namespace {

using nlohmann::json;

class Handlers {
 public:
  explicit Handlers(ProofDeps deps) : deps_(std::move(deps)) {}

  Response confirm_page(const Request& request) const {
    auto target = render::verify_proof_token(deps_.link_secret(), request.path.substr(3));
    if (!target) return not_found_page();
    auto names = deps_.names(target->kit_id, target->partner_id);
    if (!names) return gone_page();
    return page(200, "Opt out of this kit",
                "<p>Send nothing from the kit <strong>" + escape_html(names->kit) +
                    "</strong> to the contacts of <strong>" + escape_html(names->partner) +
                    "</strong>? Messages of this kit already queued for them are cancelled; "
                    "other kits are not affected.</p><form method=\"post\" action=\"\">"
                    "<button type=\"submit\" style=\"font-size:1em;padding:.5em 1.2em;\">"
                    "Opt out of this kit</button></form>");
  }

  Response opt_out_by_link(const Request& request) const {
    auto target = render::verify_proof_token(deps_.link_secret(), request.path.substr(3));
    if (!target) return not_found_page();
    auto names = deps_.names(target->kit_id, target->partner_id);
    if (!names) return gone_page();
    auto result = deps_.opt_out(target->kit_id, target->partner_id, "link");
    return page(200, "Opted out",
                "<p><strong>" + escape_html(names->partner) +
                    "</strong> gets nothing more from "
                    "the kit <strong>" +
                    escape_html(names->kit) + "</strong>" +
                    (result.cancelled > 0 ? "; " + std::to_string(result.cancelled) +
                                                " queued messages are cancelled"
                                          : std::string()) +
                    ".</p>");
  }

  Response opt_out_by_api(const Request& request, const Principal& principal) const {
    json body;
    try {
      body = json::parse(request.body);
    } catch (const json::parse_error& e) {
      return json_error(400, std::string("request body is not JSON: ") + e.what());
    }
    if (!body.is_object()) return json_error(400, "request body must be a JSON object");
    auto text = [&](const char* name) -> std::optional<std::string> {
      auto it = body.find(name);
      if (it == body.end() || !it->is_string() || it->get<std::string>().empty())
        return std::nullopt;
      return it->get<std::string>();
    };
    for (const char* name : {"kit", "partner_id"}) {
      auto it = body.find(name);
      if (it != body.end() && !it->is_null() && !it->is_string())
        return json_error(400, std::string("field '") + name + "' must be a string");
    }
    const auto kit = text("kit");
    if (!kit) return json_error(400, "field 'kit' is required");
    std::string partner;
    if (principal.role == Role::partner) {
      if (auto asked = text("partner_id"); asked && *asked != principal.partner_id)
        return json_error(403, "a partner token may opt out only its own partner");
      partner = principal.partner_id;
    } else {
      auto asked = text("partner_id");
      if (!asked) return json_error(400, "field 'partner_id' is required");
      partner = *asked;
    }
    if (!deps_.names(*kit, partner))
      return json_error(404, "no kit '" + *kit + "' or partner '" + partner + "' is loaded");
    auto result = deps_.opt_out(*kit, partner, "api:" + principal.token_name);
    json out = {{"kit", *kit},
                {"partner_id", partner},
                {"opted_out", true},
                {"already", !result.recorded},
                {"cancelled", result.cancelled}};
    return Response{result.recorded ? 201 : 200, "application/json", out.dump(), {}};
  }

 private:
  static Response gone_page() {
    return page(410, "Kit no longer available",
                "<p>This kit or partner is no longer loaded, so there is nothing to opt out "
                "of.</p>");
  }

  ProofDeps deps_;
};

}  // namespace

std::vector<Route> proof_routes(ProofDeps deps) {
  auto h = std::make_shared<const Handlers>(std::move(deps));
  std::vector<Route> routes;
  routes.push_back(
      {"GET", "/p/", {}, [h](const Request& r, const Principal*) { return h->confirm_page(r); }});
  routes.push_back({"POST", "/p/", {}, [h](const Request& r, const Principal*) {
                      return h->opt_out_by_link(r);
                    }});
  routes.push_back({"POST",
                    "/v1/proofs/opt-out",
                    {Role::admin, Role::partner},
                    [h](const Request& r, const Principal* p) { return h->opt_out_by_api(r, *p); },
                    4096});
  return routes;
}

}  // namespace channeld::api
