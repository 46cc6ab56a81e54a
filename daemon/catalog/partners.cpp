// load_partners: one `<id>.toml` per partner in paths.partners.
#include <date/tz.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "catalog/catalog.hpp"
#include "catalog/checks.hpp"
#include "catalog/toml_table.hpp"
#include "deliver/webhook_signing.hpp"

namespace channeld::catalog {

using detail::TomlTable;
namespace fs = std::filesystem;

namespace {

// InputError's text is "where: message"; a Problem keeps the two apart.
Problem problem_from(const InputError& error) {
  std::string message = error.what();
  std::string prefix = error.where() + ": ";
  if (!error.where().empty() && message.starts_with(prefix)) message.erase(0, prefix.size());
  return Problem{error.where(), message};
}

// A webhook secret is a line of text; anything much longer is not one.
std::string read_secret_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw InputError(path, std::string("cannot read the webhook secret: ") + std::strerror(errno));
  std::string text;
  text.resize(4096);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  return text;
}

void check_url(TomlTable& table, const std::string& key, const std::string& value) {
  if (!value.empty() && !detail::is_http_url(value)) {
    throw table.error(key, "'" + value + "' must be an http:// or https:// URL");
  }
}

// Templates see the partner file as written, key by key ("branding.logo_url"), so any key the
// file has can be used and a key it lacks fails validation instead of rendering as "".
void collect_template_fields(const toml::value& table, const std::string& prefix,
                             std::map<std::string, std::string>& out) {
  for (const auto& [key, value] : table.as_table()) {
    std::string name = prefix + key;
    // The path to a secret is nobody's business in a marketing email.
    if (name == "webhook.secret_file") continue;
    if (value.is_table()) {
      collect_template_fields(value, name + ".", out);
    } else if (value.is_string()) {
      out[name] = value.as_string().str;
    } else if (value.is_integer()) {
      out[name] = std::to_string(value.as_integer());
    } else if (value.is_boolean()) {
      out[name] = value.as_boolean() ? "true" : "false";
    }
    // Arrays (opt_in_kits) have no single text form and are not template data.
  }
}

Branding read_branding(TomlTable& t) {
  Branding b;
  b.logo_url = t.string("logo_url").value_or("");
  check_url(t, "logo_url", b.logo_url);
  b.primary_color = t.string("primary_color").value_or("");
  if (!b.primary_color.empty() && !detail::is_hex_color(b.primary_color)) {
    throw t.error("primary_color", "'" + b.primary_color + "' is not a colour such as \"#0a5fff\"");
  }
  b.website = t.string("website").value_or("");
  check_url(t, "website", b.website);
  b.postal_address = t.string("postal_address").value_or("");
  b.sender_name = t.string("sender_name").value_or("");
  // The sender name goes into a From header; a line break there would forge headers.
  if (detail::has_control_character(b.sender_name)) {
    throw t.error("sender_name", "must be a single line without control characters");
  }
  b.reply_to = t.string("reply_to").value_or("");
  if (!b.reply_to.empty() && !detail::is_email(b.reply_to)) {
    throw t.error("reply_to", "'" + b.reply_to + "' is not an email address");
  }
  t.refuse_unknown_keys();
  return b;
}

Partner load_partner(const fs::path& file, const std::string& dir) {
  const std::string path = file.string();
  const toml::value document = detail::parse_toml(path);
  TomlTable root(document, path, "");
  Partner p;
  p.source_file = path;

  p.id = root.required_string("id");
  if (!detail::is_partner_id(p.id)) {
    throw root.error("id", "'" + p.id + "' may use only a-z, 0-9 and '-'");
  }
  if (p.id != file.stem().string()) {
    throw root.error("id", "'" + p.id + "' does not match the file name " +
                               file.filename().string() + " (it must be " + p.id + ".toml)");
  }
  p.name = root.required_string("name");
  if (detail::trim(p.name).empty()) throw root.error("name", "must not be empty");
  // The name is the From display name unless branding.sender_name is set.
  if (detail::has_control_character(p.name)) {
    throw root.error("name", "must be a single line without control characters");
  }

  std::string tier = root.required_string("tier");
  auto parsed_tier = tier_from_string(tier);
  if (!parsed_tier) {
    throw root.error("tier", "'" + tier + "' is not one of registered, silver, gold, platinum");
  }
  p.tier = *parsed_tier;

  std::string type = root.required_string("type");
  auto parsed_type = partner_type_from_string(type);
  if (!parsed_type) {
    throw root.error("type", "'" + type + "' is not one of reseller, var, msp, si, isv, referral");
  }
  p.type = *parsed_type;

  p.region = root.string("region").value_or("");

  p.timezone = root.required_string("timezone");
  try {
    date::locate_zone(p.timezone);
  } catch (const std::runtime_error&) {
    throw root.error("timezone", "'" + p.timezone +
                                     "' is not an IANA time zone name such as \"America/Chicago\"");
  }

  std::string status = root.string("status").value_or("active");
  if (status != "active" && status != "suspended") {
    throw root.error("status", "'" + status + "' is not one of active, suspended");
  }
  p.active = status == "active";

  std::string contacts = root.required_string("contacts");
  if (detail::trim(contacts).empty()) throw root.error("contacts", "must name a CSV file");
  p.contacts_file = detail::contained_path(detail::resolve_path(dir, contacts), dir,
                                           root.where("contacts"), "contacts file");

  if (auto branding = root.table("branding")) p.branding = read_branding(*branding);

  if (auto webhook = root.table("webhook")) {
    PartnerWebhook w;
    w.url = webhook->required_string("url");
    if (!detail::is_http_url(w.url)) {
      throw webhook->error("url", "'" + w.url + "' must be an http:// or https:// URL");
    }
    // Unsigned webhooks would let anyone who learns the URL forge channeld's calls.
    w.secret_file = detail::resolve_path(dir, webhook->required_string("secret_file"));
    if (w.secret_file.empty()) throw webhook->error("secret_file", "must name a file");
    // A partner file may name only a secret in the partners folder: not the link key, not
    // /etc/shadow. Checked before the file is read.
    w.secret_file =
        detail::contained_path(w.secret_file, dir, webhook->where("secret_file"), "secret file");
    w.key = deliver::webhook_key_from_secret(read_secret_file(w.secret_file), w.secret_file);
    if (auto events = webhook->strings("events")) {
      for (const auto& event : *events) {
        if (event != "sent" && event != "bounced" && event != "opened" && event != "clicked" &&
            event != "unsubscribed")
          throw webhook->error("events", "'" + event +
                                             "' is not one of sent, bounced, opened, clicked, "
                                             "unsubscribed");
        w.events.insert(event);
      }
    }
    webhook->refuse_unknown_keys();
    p.webhook = std::move(w);
  }

  if (auto mdf = root.table("mdf")) {
    if (auto allocation = mdf->string("allocation")) {
      p.mdf_allocation_minor = parse_minor_units(
          *allocation, mdf->where("allocation") + ": " + mdf->field("allocation"));
    }
    mdf->refuse_unknown_keys();
  }

  p.opt_in_kits = root.strings("opt_in_kits").value_or(std::vector<std::string>{});
  root.refuse_unknown_keys();

  collect_template_fields(document, "", p.template_fields);
  return p;
}

}  // namespace

Partner load_partner_file(const std::string& file, const std::string& dir) {
  return load_partner(fs::path(file), dir);
}

PartnerSet load_partners(const std::string& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& file = it->path();
    std::string name = file.filename().string();
    // Contact CSVs, secrets and editors' dot-files share the folder; only <id>.toml is a partner.
    if (file.extension() != ".toml" || name.starts_with(".")) continue;
    if (!it->is_regular_file(ec)) continue;
    files.push_back(file);
  }
  if (ec) throw InputError(dir, "cannot read the partners folder: " + ec.message());
  std::sort(files.begin(), files.end());

  PartnerSet set;
  for (const auto& file : files) {
    try {
      Partner partner = load_partner(file, dir);
      std::string id = partner.id;
      set.partners.emplace(std::move(id), std::move(partner));
    } catch (const InputError& e) {
      set.problems.push_back(problem_from(e));
      set.broken.emplace(file.stem().string(), e.what());
    }
  }
  return set;
}

}  // namespace channeld::catalog
