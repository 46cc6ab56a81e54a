// load_config and parse_duration: channeld.toml into Config.
#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <utility>

#include "catalog/catalog.hpp"
#include "catalog/checks.hpp"
#include "catalog/toml_table.hpp"

namespace channeld::catalog {

using detail::TomlTable;

std::chrono::seconds parse_duration(const std::string& text, const std::string& where) {
  auto bad = [&] {
    return InputError(where, "'" + text +
                                 "' is not a duration: write a whole number and a unit "
                                 "(d, h, m or s), e.g. \"48h\", \"90m\", \"0d\"");
  };
  if (text.size() < 2) throw bad();
  std::int64_t count = 0;
  const char* digits_end = text.data() + text.size() - 1;
  auto [end, ec] = std::from_chars(text.data(), digits_end, count);
  // from_chars accepts a leading '-', which a duration must not have.
  if (ec != std::errc() || end != digits_end || text.front() == '-') throw bad();
  std::int64_t unit = 0;
  switch (text.back()) {
    case 'd':
      unit = 86400;
      break;
    case 'h':
      unit = 3600;
      break;
    case 'm':
      unit = 60;
      break;
    case 's':
      unit = 1;
      break;
    default:
      throw bad();
  }
  // A century is more than any lease, delay or lead time needs, and keeps arithmetic on the
  // result (adding it to a time point) far from overflow.
  constexpr std::int64_t kMaxSeconds = 100LL * 366 * 86400;
  if (count > kMaxSeconds / unit) throw InputError(where, "'" + text + "' is too long");
  return std::chrono::seconds(count * unit);
}

namespace {

std::optional<std::chrono::seconds> duration(TomlTable& table, const std::string& key) {
  auto text = table.string(key);
  if (!text) return std::nullopt;
  return parse_duration(*text, table.where(key) + ": " + table.field(key));
}

// "host:port" or "[v6]:port"; the port is required because channeld has no conventional one.
// Port 0 asks the kernel for any free port (tests and the quick start use it).
bool is_listen_address(std::string_view text) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view port = text.substr(colon + 1);
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  return ec == std::errc() && end == port.data() + port.size() && value <= 65535;
}

// "10.0.0.0/8", "fd00::/8" or a bare address (one host).
bool is_cidr(const std::string& text) {
  auto slash = text.find('/');
  std::string address = text.substr(0, slash);
  unsigned char buffer[16];
  int max_prefix = 0;
  if (inet_pton(AF_INET, address.c_str(), buffer) == 1) {
    max_prefix = 32;
  } else if (inet_pton(AF_INET6, address.c_str(), buffer) == 1) {
    max_prefix = 128;
  } else {
    return false;
  }
  if (slash == std::string::npos) return true;
  std::string_view prefix = std::string_view(text).substr(slash + 1);
  int bits = -1;
  auto [end, ec] = std::from_chars(prefix.data(), prefix.data() + prefix.size(), bits);
  return ec == std::errc() && end == prefix.data() + prefix.size() && !prefix.empty() &&
         bits >= 0 && bits <= max_prefix;
}

template <typename Int>
void read_count(TomlTable& table, const std::string& key, Int& out, std::int64_t min) {
  auto value = table.integer(key);
  if (!value) return;
  if (*value < min || std::cmp_greater(*value, std::numeric_limits<Int>::max())) {
    throw table.error(
        key, "must be at least " + std::to_string(min) + ", got " + std::to_string(*value));
  }
  out = static_cast<Int>(*value);
}

void read_rate(TomlTable& table, const std::string& key, double& out) {
  auto value = table.number(key);
  if (!value) return;
  if (!std::isfinite(*value) || *value < 0) {
    throw table.error(key, "must be a rate of zero (unlimited) or more per second");
  }
  out = *value;
}

void read_positive_duration(TomlTable& table, const std::string& key, std::chrono::seconds& out,
                            bool zero_allowed = false) {
  auto value = duration(table, key);
  if (!value) return;
  if (*value == std::chrono::seconds(0) && !zero_allowed) {
    throw table.error(key, "must be longer than zero");
  }
  out = *value;
}

TomlTable required_table(TomlTable& root, const std::string& name, const std::string& hint) {
  auto table = root.table(name);
  if (!table) throw InputError(root.file(), "missing required table [" + name + "] " + hint);
  return *table;
}

void read_database(TomlTable& root, Config& config) {
  TomlTable t = required_table(root, "database", "with url = \"postgresql://...\"");
  // Kept exactly as written: libpq accepts both URIs and key=value conninfo strings and is the
  // only judge of them.
  config.database_url = t.required_string("url");
  if (detail::trim(config.database_url).empty()) throw t.error("url", "must not be empty");
  read_count(t, "api_sessions", config.database.api_sessions, 1);
  read_positive_duration(t, "api_session_wait", config.database.api_session_wait);
  t.refuse_unknown_keys();
}

void read_paths(TomlTable& root, const std::string& base, Config& config) {
  auto& p = config.paths;
  p.campaigns = "/var/lib/channeld/campaigns";
  p.templates = "/etc/channeld/templates";
  p.partners = "/var/lib/channeld/partners";
  p.claims = "/var/lib/channeld/claims";
  p.state = "/var/lib/channeld/state";  // systemd's StateDirectory=channeld/state
  if (auto t = root.table("paths")) {
    for (auto [key, out] :
         {std::pair{"campaigns", &p.campaigns}, std::pair{"templates", &p.templates},
          std::pair{"partners", &p.partners}, std::pair{"claims", &p.claims},
          std::pair{"outbox", &p.outbox}, std::pair{"state", &p.state}}) {
      if (auto value = t->string(key)) {
        if (value->empty() && out != &p.outbox) throw t->error(key, "must not be empty");
        *out = *value;
      }
    }
    t->refuse_unknown_keys();
  }
  for (std::string* path :
       {&p.campaigns, &p.templates, &p.partners, &p.claims, &p.outbox, &p.state}) {
    *path = detail::resolve_path(base, *path);
  }
}

void read_http(TomlTable& root, const std::string& base, Config& config) {
  TomlTable t = required_table(root, "http", "with public_url = \"https://...\"");
  auto& h = config.http;
  if (auto listen = t.string("listen")) {
    if (!is_listen_address(*listen)) {
      throw t.error("listen", "'" + *listen + "' is not host:port, e.g. \"127.0.0.1:8025\"");
    }
    h.listen = *listen;
  }
  if (auto listen = t.string("public_listen")) {
    if (!listen->empty() && !is_listen_address(*listen)) {
      throw t.error("public_listen",
                    "'" + *listen + "' is not host:port, e.g. \"0.0.0.0:8080\" (or \"\" for none)");
    }
    h.public_listen = *listen;
  }
  h.public_url = t.required_string("public_url");
  if (!detail::is_http_url(h.public_url)) {
    throw t.error("public_url", "'" + h.public_url + "' must be an http:// or https:// URL");
  }
  // Links are built as public_url + "/u/<token>": a trailing slash would double up.
  while (h.public_url.back() == '/') h.public_url.pop_back();
  h.link_secret_file = detail::resolve_secret_path(base, t.string("link_secret_file").value_or(""),
                                                   std::getenv("CREDENTIALS_DIRECTORY"));
  t.refuse_unknown_keys();
}

// Everything a send would trip over, found before the first send: scheme, inline credentials
// (they would sit in a world-readable file and in logs; the password belongs in
// smtp.password_file), host and port. The value is echoed only when it holds no credentials.
void check_smtp_url(TomlTable& t, const std::string& url) {
  std::string_view rest = url;
  if (rest.starts_with("smtp://")) {
    rest.remove_prefix(7);
  } else if (rest.starts_with("smtps://")) {
    rest.remove_prefix(8);
  } else {
    throw t.error("url", "must start with smtp:// or smtps://");
  }
  std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.find('@') != std::string_view::npos) {
    throw t.error("url",
                  "must not carry a user name or password: use smtp.username and "
                  "smtp.password_file");
  }
  if (authority.find_first_of(" \t\r\n") != std::string_view::npos)
    throw t.error("url", "'" + url + "' contains white space or a line break");
  std::string_view host = authority;
  std::string_view port;
  if (host.starts_with("[")) {
    auto close = host.find(']');
    if (close == std::string_view::npos) throw t.error("url", "'" + url + "': unclosed '['");
    port = host.substr(close + 1);
    host = host.substr(1, close - 1);
    if (!port.empty() && !port.starts_with(":"))
      throw t.error("url", "'" + url + "': text after the IPv6 address");
    if (!port.empty()) port.remove_prefix(1);
  } else if (auto colon = host.rfind(':'); colon != std::string_view::npos) {
    port = host.substr(colon + 1);
    host = host.substr(0, colon);
  }
  if (host.empty()) throw t.error("url", "'" + url + "' names no host");
  for (char c : host) {
    bool ok =
        std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' || c == '_';
    if (!ok)
      throw t.error("url", "'" + url + "': host '" + std::string(host) + "' is not a host name");
  }
  if (!port.empty() || authority.ends_with(":")) {
    int number = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), number);
    if (ec != std::errc() || end != port.data() + port.size() || number < 1 || number > 65535)
      throw t.error("url", "'" + url + "': port '" + std::string(port) + "' is not 1 to 65535");
  }
}

void read_smtp(TomlTable& root, const std::string& base, Config& config) {
  TomlTable t = required_table(root, "smtp", "with from_address = \"...\"");
  auto& s = config.smtp;
  if (auto url = t.string("url")) {
    check_smtp_url(t, *url);
    s.url = *url;
  }
  s.username = t.string("username").value_or("");
  s.password_file = detail::resolve_secret_path(base, t.string("password_file").value_or(""),
                                                std::getenv("CREDENTIALS_DIRECTORY"));
  s.from_address = t.required_string("from_address");
  if (!detail::is_email(s.from_address)) {
    throw t.error("from_address", "'" + s.from_address + "' is not an email address");
  }
  read_count(t, "max_connections", s.max_connections, 1);
  read_positive_duration(t, "timeout", s.timeout);
  t.refuse_unknown_keys();
}

void read_webhooks(TomlTable& root, Config& config) {
  auto t = root.table("webhooks");
  if (!t) return;
  auto allow = t->strings("allow").value_or(std::vector<std::string>{});
  for (const auto& cidr : allow) {
    if (!is_cidr(cidr)) {
      throw t->error("allow", "'" + cidr + "' is not an address range such as \"10.0.0.0/8\"");
    }
  }
  config.webhooks.allow = std::move(allow);
  t->refuse_unknown_keys();
}

void read_proofs(TomlTable& root, Config& config) {
  auto t = root.table("proofs");
  if (!t) return;
  if (auto lead = duration(*t, "lead_time")) {
    if (*lead % std::chrono::minutes(1) != std::chrono::seconds(0)) {
      throw t->error("lead_time", "must be whole minutes");
    }
    config.proofs.lead_time = std::chrono::duration_cast<std::chrono::minutes>(*lead);
  }
  t->refuse_unknown_keys();
}

void read_leads(TomlTable& root, Config& config) {
  auto t = root.table("leads");
  if (!t) return;
  if (auto window = duration(*t, "attribution_window")) {
    if (*window <= std::chrono::seconds(0)) {
      throw t->error("attribution_window", "must be longer than zero");
    }
    config.leads.attribution_window = *window;
  }
  t->refuse_unknown_keys();
}

void read_vendor(TomlTable& root, Config& config) {
  TomlTable t = required_table(root, "vendor", "with name and postal_address");
  auto& v = config.vendor;
  v.name = t.required_string("name");
  if (detail::trim(v.name).empty()) throw t.error("name", "must not be empty");
  v.postal_address = t.required_string("postal_address");
  // Commercial email law (CAN-SPAM and its relatives) wants a physical address in every message.
  if (detail::trim(v.postal_address).empty()) throw t.error("postal_address", "must not be empty");
  v.logo_url = t.string("logo_url").value_or("");
  if (!v.logo_url.empty() && !detail::is_http_url(v.logo_url)) {
    throw t.error("logo_url", "'" + v.logo_url + "' must be an http:// or https:// URL");
  }
  if (auto color = t.string("primary_color")) {
    if (!detail::is_hex_color(*color)) {
      throw t.error("primary_color", "'" + *color + "' is not a colour such as \"#0a5fff\"");
    }
    v.primary_color = *color;
  }
  v.website = t.string("website").value_or("");
  if (!v.website.empty() && !detail::is_http_url(v.website)) {
    throw t.error("website", "'" + v.website + "' must be an http:// or https:// URL");
  }
  t.refuse_unknown_keys();
}

void read_limits(TomlTable& root, Config& config) {
  auto t = root.table("limits");
  if (!t) return;
  read_rate(*t, "messages_per_second", config.limits.messages_per_second);
  read_rate(*t, "per_partner_per_second", config.limits.per_partner_per_second);
  read_rate(*t, "per_domain_per_second", config.limits.per_domain_per_second);
  auto& l = config.limits;
  read_count(*t, "template_bytes", l.template_bytes, 1024);
  read_count(*t, "template_expansion_bytes", l.template_expansion_bytes, 1024);
  read_count(*t, "template_tags", l.template_tags, 16);
  read_count(*t, "partial_depth", l.partial_depth, 1);
  read_count(*t, "message_bytes", l.message_bytes, 4096);
  read_count(*t, "contact_field_bytes", l.contact_field_bytes, 64);
  t->refuse_unknown_keys();
}

void read_delivery(TomlTable& root, Config& config) {
  auto t = root.table("delivery");
  if (!t) return;
  auto& d = config.delivery;
  read_count(*t, "batch_size", d.batch_size, 1);
  read_positive_duration(*t, "lease", d.lease);
  read_count(*t, "max_attempts", d.max_attempts, 1);
  read_positive_duration(*t, "backoff_base", d.backoff_base);
  read_positive_duration(*t, "backoff_max", d.backoff_max);
  read_positive_duration(*t, "scan_interval", d.scan_interval);
  read_positive_duration(*t, "shutdown_grace", d.shutdown_grace, /*zero_allowed=*/true);
  if (d.backoff_max < d.backoff_base) {
    throw t->error("backoff_max", "must not be shorter than delivery.backoff_base");
  }
  // A message only starts while its lease has more than the longest transfer plus a second to
  // record the verdict left (app/dispatcher): a shorter lease could never send anything.
  if (d.lease <= config.smtp.timeout + std::chrono::seconds(1)) {
    throw t->error("lease", "must be longer than smtp.timeout plus 1s (" +
                                std::to_string(config.smtp.timeout.count()) + "s): a send must end "
                                "before the lease does");
  }
  t->refuse_unknown_keys();
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool is_quarter(std::string_view text) {
  return text.size() == 7 && std::all_of(text.begin(), text.begin() + 4, is_digit) &&
         text.substr(4, 2) == "-Q" && text[6] >= '1' && text[6] <= '4';
}

// A rate from 0 to 1 as parts per 10,000. A string ("0.30") is read digit by digit; a TOML float
// (0.30) arrives as the nearest double, so it is rounded to the nearest part and refused if it
// does not sit on one (more than four decimals), as kits' coop_ratio is.
std::int64_t read_rate_basis_points(const toml::value& value, const std::string& where) {
  auto bad = [&] {
    return InputError(where, "must be a rate from 0 to 1 with at most four decimals, e.g. 0.30");
  };
  if (value.is_string()) {
    const std::string& text = value.as_string().str;
    const auto dot = text.find('.');
    const std::string whole = text.substr(0, dot);
    const std::string fraction = dot == std::string::npos ? "" : text.substr(dot + 1);
    auto digits = [](const std::string& s) { return std::all_of(s.begin(), s.end(), is_digit); };
    if (whole.empty() || whole.size() > 1 || !digits(whole) || !digits(fraction) ||
        fraction.size() > 4 || (dot != std::string::npos && fraction.empty())) {
      throw bad();
    }
    std::int64_t bp = (whole[0] - '0') * 10000;
    std::int64_t scale = 1000;
    for (char c : fraction) {
      bp += (c - '0') * scale;
      scale /= 10;
    }
    if (bp > 10000) throw bad();
    return bp;
  }
  if (!value.is_floating() && !value.is_integer()) throw bad();
  const double rate =
      value.is_integer() ? static_cast<double>(value.as_integer()) : value.as_floating();
  if (!std::isfinite(rate) || rate < 0 || rate > 1) throw bad();
  const double scaled = rate * 10000;
  const auto bp = std::llround(scaled);
  if (std::abs(scaled - static_cast<double>(bp)) > 1e-6) throw bad();
  return bp;
}

void read_mdf(TomlTable& root, Config& config) {
  auto t = root.table("mdf");
  if (!t) return;
  if (auto currency = t->string("currency")) {
    if (!detail::is_currency_code(*currency)) {
      throw t->error("currency", "'" + *currency + "' is not an ISO 4217 code such as \"USD\"");
    }
    config.mdf.currency = *currency;
  }
  if (auto allocation = t->table("allocation")) {
    for (Tier tier : {Tier::registered, Tier::silver, Tier::gold, Tier::platinum}) {
      std::string key(to_string(tier));
      const toml::value* amount = allocation->get(key);
      if (amount == nullptr) continue;
      std::string where = allocation->where(key) + ": " + allocation->field(key);
      // Integers are exact, so "0" and 0 mean the same; a float would not be.
      if (amount->is_integer() && amount->as_integer() >= 0) {
        config.mdf.allocation_minor[tier] =
            parse_minor_units(std::to_string(amount->as_integer()), where);
      } else if (amount->is_string()) {
        config.mdf.allocation_minor[tier] = parse_minor_units(amount->as_string().str, where);
      } else {
        throw InputError(where, "write the amount as a decimal string, e.g. \"2500.00\"");
      }
    }
    allocation->refuse_unknown_keys();
  }
  if (const toml::value* rate = t->get("gross_margin_rate")) {
    config.mdf.gross_margin_rate_bp = read_rate_basis_points(
        *rate, t->where("gross_margin_rate") + ": " + t->field("gross_margin_rate"));
  }
  if (const toml::value* costs = t->get("program_costs")) {
    const std::string where = t->where("program_costs") + ": " + t->field("program_costs");
    if (!costs->is_table()) {
      throw InputError(where, "write costs by quarter, e.g. { \"2026-Q4\" = \"45000.00\" }");
    }
    for (const auto& [quarter, amount] : costs->as_table()) {
      const std::string at =
          detail::where_of(t->file(), amount) + ": " + t->field("program_costs") + "." + quarter;
      if (!is_quarter(quarter)) {
        throw InputError(at, "'" + quarter + "' is not a quarter such as \"2026-Q4\"");
      }
      if (!amount.is_string()) {
        throw InputError(at, "write the amount as a decimal string, e.g. \"45000.00\"");
      }
      config.mdf.program_costs_minor[quarter] = parse_minor_units(amount.as_string().str, at);
    }
  }
  t->refuse_unknown_keys();
}

}  // namespace

Config load_config(const std::string& path) {
  const toml::value document = detail::parse_toml(path);
  const std::string base = std::filesystem::absolute(path).parent_path().string();
  TomlTable root(document, path, "");
  // A misspelt table ("[smpt]") is reported as such, before the real one is missed.
  for (const char* section : {"database", "paths", "http", "smtp", "webhooks", "proofs", "leads",
                              "vendor", "limits", "delivery", "mdf"}) {
    root.get(section);
  }
  root.refuse_unknown_keys();
  Config config;
  config.source_file = path;
  read_database(root, config);
  read_paths(root, base, config);
  read_http(root, base, config);
  read_smtp(root, base, config);
  read_webhooks(root, config);
  read_proofs(root, config);
  read_leads(root, config);
  read_vendor(root, config);
  read_limits(root, config);
  read_delivery(root, config);
  read_mdf(root, config);
  return config;
}

}  // namespace channeld::catalog
