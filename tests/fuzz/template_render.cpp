// Template compile and render under small limits: any bytes as a step's HTML template (with a
// fixed partial the input may include) either compile or raise InputError; what compiles
// renders or raises InputError, within limits.message_bytes.
#include <cstdlib>

#include "fuzz_support.hpp"
#include "render/render.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace channeld;
  static const auto folder = [] {
    const auto dir = fuzz::scratch() / "kit";
    fuzz::write(dir / "layout.html.mustache", "<html>{{{body}}}{{links.unsubscribe}}</html>");
    fuzz::write(dir / "layout.txt.mustache", "{{{body}}}\n{{links.unsubscribe}}");
    fuzz::write(dir / "body.txt.mustache", "Hi {{contact.first_name}}");
    fuzz::write(dir / "again.mustache", "{{> again2}}{{> again2}}{{partner.name}}");
    fuzz::write(dir / "again2.mustache", "<b>{{contact.first_name}}</b>");
    return dir;
  }();
  fuzz::write(folder / "body.html.mustache", fuzz::as_text(data, size));

  Config config;
  config.smtp.from_address = "partners@mkt.vendor.example";
  config.http.public_url = "https://mkt.vendor.example";
  config.vendor.name = "Vendor";
  config.limits.template_expansion_bytes = 64 * 1024;
  config.limits.template_tags = 2000;
  config.limits.partial_depth = 4;
  config.limits.message_bytes = 256 * 1024;
  Kit kit;
  kit.id = "fuzz";
  kit.name = "Fuzz";
  kit.version = 1;
  kit.folder = folder.string();
  Step step;
  step.id = "s";
  step.subject = "Hello {{partner.name}}";
  step.html_template = "body.html.mustache";
  step.text_template = "body.txt.mustache";
  kit.steps.push_back(step);
  Partner partner;
  partner.id = "acme-it";
  partner.name = "Acme";
  partner.timezone = "UTC";
  partner.template_fields["name"] = "Acme";
  Contact contact;
  contact.email = "dana@example.com";
  contact.first_name = "Dana";
  try {
    auto templates = render::KitTemplates::compile(kit, "", config.limits);
    auto ctx = render::make_context(config, kit, partner, "secret");
    if (!templates->missing_variables(ctx, {}).empty()) return 0;
    auto email = render::render_email(*templates, kit.steps.front(), ctx, contact, "k", SysTime{});
    if (email.html.size() + email.text.size() > config.limits.message_bytes) std::abort();
  } catch (const InputError&) {
  }
  return 0;
}
