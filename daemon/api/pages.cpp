#include "api/pages.hpp"

namespace channeld::api {

Response page(int status, const std::string& title, const std::string& body_html) {
  Response r;
  r.status = status;
  r.content_type = "text/html; charset=utf-8";
  r.body =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      "<meta name=\"robots\" content=\"noindex\"><title>" +
      escape_html(title) +
      "</title></head><body style=\"font-family:Arial,Helvetica,sans-serif;max-width:36em;"
      "margin:3em auto;padding:0 1em;color:#1f2937;\"><h1 style=\"font-size:1.4em;\">" +
      escape_html(title) + "</h1>" + body_html + "</body></html>\n";
  // Nothing here may be cached by a proxy or shown in another site's frame.
  r.headers.emplace("Cache-Control", "no-store");
  r.headers.emplace("X-Frame-Options", "DENY");
  r.headers.emplace("Referrer-Policy", "no-referrer");
  return r;
}

Response not_found_page() {
  return page(404, "Link not found",
              "<p>This link is not valid. If you copied it from an email, check that it was "
              "copied whole.</p>");
}

}  // namespace channeld::api
