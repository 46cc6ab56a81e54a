// load_kit, validate_kit and looks_incomplete: kit folders under paths.campaigns.
#include <algorithm>
#include <climits>
#include <cmath>
#include <filesystem>
#include <set>

#include "catalog/catalog.hpp"
#include "catalog/checks.hpp"
#include "catalog/toml_table.hpp"
#include "schedule/schedule.hpp"

namespace channeld::catalog {

using detail::TomlTable;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// Kit and step ids end up in idempotency keys, URLs and log lines.
bool is_plain_id(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

// A name a copy tool gives a file or folder while it is still being written.
bool is_partial_name(const std::string& name) {
  return name.starts_with(".") || name.ends_with(".tmp") || name.ends_with(".part");
}

std::chrono::year_month_day to_ymd(const toml::local_date& d) {
  // toml11 counts months from 0.
  return std::chrono::year_month_day(std::chrono::year(d.year),
                                     std::chrono::month(static_cast<unsigned>(d.month) + 1),
                                     std::chrono::day(d.day));
}

std::chrono::year_month_day read_expires(TomlTable& root) {
  const toml::value* v = root.get("expires");
  if (v == nullptr) throw InputError(root.where(), "missing required key 'expires'");
  if (!v->is_local_date()) {
    throw root.error("expires", "must be a date written without quotes, e.g. 2027-01-31");
  }
  auto ymd = to_ymd(v->as_local_date());
  if (!ymd.ok()) throw root.error("expires", "is not a calendar date");
  return ymd;
}

LocalTime read_start(TomlTable& schedule) {
  const toml::value* v = schedule.get("start");
  if (v == nullptr) throw InputError(schedule.where(), "missing required key 'schedule.start'");
  if (v->is_offset_datetime()) {
    throw schedule.error("start",
                         "write a local date-time without an offset, e.g. "
                         "2026-12-01T09:00:00: it is read in each partner's time zone");
  }
  if (!v->is_local_datetime()) {
    throw schedule.error("start",
                         "must be a local date-time written without quotes, e.g. "
                         "2026-12-01T09:00:00");
  }
  const auto& dt = v->as_local_datetime();
  auto ymd = to_ymd(dt.date);
  if (!ymd.ok()) throw schedule.error("start", "is not a calendar date");
  return std::chrono::local_days(ymd) + std::chrono::hours(dt.time.hour) +
         std::chrono::minutes(dt.time.minute) + std::chrono::seconds(dt.time.second);
}

// "HH:MM" as minutes since midnight; "24:00" only where `end_of_day_allowed`.
int read_clock(TomlTable& window, const std::string& key, int fallback, bool end_of_day_allowed) {
  auto text = window.string(key);
  if (!text) return fallback;
  auto bad = [&] {
    return window.error(key, "'" + *text + "' is not a time of day such as \"08:00\"" +
                                 (end_of_day_allowed ? " (or \"24:00\")" : ""));
  };
  const std::string& t = *text;
  if (t.size() != 5 || t[2] != ':') throw bad();
  for (std::size_t i : {0, 1, 3, 4}) {
    if (t[i] < '0' || t[i] > '9') throw bad();
  }
  int hour = (t[0] - '0') * 10 + (t[1] - '0');
  int minute = (t[3] - '0') * 10 + (t[4] - '0');
  if (minute > 59) throw bad();
  if (hour == 24 && minute == 0 && end_of_day_allowed) return 24 * 60;
  if (hour > 23) throw bad();
  return hour * 60 + minute;
}

SendWindow read_window(TomlTable& window) {
  static constexpr std::array<std::string_view, 7> kDays{"mon", "tue", "wed", "thu",
                                                         "fri", "sat", "sun"};
  SendWindow w;
  if (auto days = window.strings("days")) {
    w.days = 0;
    for (const auto& day : *days) {
      auto it = std::find(kDays.begin(), kDays.end(), day);
      if (it == kDays.end()) {
        throw window.error("days", "'" + day + "' is not one of mon, tue, wed, thu, fri, sat, sun");
      }
      w.days |= static_cast<std::uint8_t>(1u << (it - kDays.begin()));
    }
    if (w.days == 0) throw window.error("days", "is empty: the kit would never send");
  }
  w.from_minute = read_clock(window, "from", 0, false);
  w.to_minute = read_clock(window, "to", 24 * 60, true);
  if (w.from_minute >= w.to_minute) {
    throw window.error("to", "must be later than 'from' (a window cannot cross midnight)");
  }
  window.refuse_unknown_keys();
  return w;
}

Audience read_audience(TomlTable& t) {
  Audience a;
  for (const auto& name : t.strings("tiers").value_or(std::vector<std::string>{})) {
    auto tier = tier_from_string(name);
    if (!tier) {
      throw t.error("tiers", "'" + name + "' is not one of registered, silver, gold, platinum");
    }
    a.tiers.push_back(*tier);
  }
  for (const auto& name : t.strings("types").value_or(std::vector<std::string>{})) {
    auto type = partner_type_from_string(name);
    if (!type) {
      throw t.error("types", "'" + name + "' is not one of reseller, var, msp, si, isv, referral");
    }
    a.types.push_back(*type);
  }
  a.regions = t.strings("regions").value_or(std::vector<std::string>{});
  std::string enrollment = t.string("enrollment").value_or("auto");
  if (enrollment == "opt-in") {
    a.enrollment = Enrollment::opt_in;
  } else if (enrollment != "auto") {
    throw t.error("enrollment", "'" + enrollment + "' is not one of auto, opt-in");
  }
  t.refuse_unknown_keys();
  return a;
}

std::string required_nonempty(TomlTable& t, const std::string& key) {
  std::string value = t.required_string(key);
  if (detail::trim(value).empty()) throw t.error(key, "must not be empty");
  return value;
}

Step read_step(TomlTable& t) {
  Step step;
  step.id = t.required_string("id");
  if (!is_plain_id(step.id)) {
    throw t.error("id", "'" + step.id + "' may use only letters, digits, '-' and '_'");
  }
  std::string channel = t.required_string("channel");
  if (channel == "webhook") {
    step.channel = Channel::webhook;
  } else if (channel != "email") {
    throw t.error("channel", "'" + channel + "' is not one of email, webhook");
  }
  if (auto delay = t.string("delay")) {
    std::string where = t.where("delay") + ": " + t.field("delay");
    if (delay->ends_with("s")) {
      throw InputError(where, "'" + *delay +
                                  "': write a step delay in days, hours or minutes "
                                  "(\"2d\", \"1h\", \"30m\")");
    }
    step.delay = std::chrono::duration_cast<std::chrono::minutes>(parse_duration(*delay, where));
  }
  static constexpr std::array<const char*, 3> kEmailKeys{"subject", "html", "text"};
  if (step.channel == Channel::email) {
    if (t.get("payload") != nullptr) {
      throw t.error("payload", "is for webhook steps; an email step has subject, html and text");
    }
    step.subject = required_nonempty(t, "subject");
    if (detail::has_control_character(step.subject))
      throw t.error("subject", "must be a single line without control characters");
    step.html_template = required_nonempty(t, "html");
    step.text_template = required_nonempty(t, "text");
  } else {
    for (const char* key : kEmailKeys) {
      if (t.get(key) != nullptr) {
        throw t.error(key, "is for email steps; a webhook step has a payload");
      }
    }
    step.payload_template = required_nonempty(t, "payload");
  }
  t.refuse_unknown_keys();
  return step;
}

// coop_ratio as basis points. TOML gives us a double, so 0.5 arrives as exactly 0.5 but 0.07 as
// 0.07000000000000000666; rounding to the nearest basis point recovers what was written, and a
// value that does not sit on a basis point (more than four decimals) is refused rather than
// silently rounded.
std::int64_t read_coop_ratio(TomlTable& t) {
  auto ratio = t.number("coop_ratio");
  if (!ratio) throw InputError(t.where(), "missing required key 'mdf.coop_ratio'");
  if (!std::isfinite(*ratio) || *ratio < 0 || *ratio > 1) {
    throw t.error("coop_ratio", "must be between 0 and 1 (0.5 = half the actual spend)");
  }
  double scaled = *ratio * 10000;
  auto bp = std::llround(scaled);
  if (std::abs(scaled - static_cast<double>(bp)) > 1e-6) {
    throw t.error("coop_ratio", "has more than four decimals");
  }
  return bp;
}

std::optional<std::int64_t> read_threshold(TomlTable& t, const std::string& key) {
  auto value = t.integer(key);
  if (value && *value < 0) throw t.error(key, "must not be negative");
  return value;
}

MdfTerms read_mdf(TomlTable& t) {
  MdfTerms m;
  m.eligible = t.boolean("eligible").value_or(false);
  if (m.eligible || t.get("coop_ratio") != nullptr) m.coop_ratio_bp = read_coop_ratio(t);
  if (auto cap = t.string("max_per_partner")) {
    m.max_per_partner_minor =
        parse_minor_units(*cap, t.where("max_per_partner") + ": " + t.field("max_per_partner"));
  }
  if (auto currency = t.string("currency")) {
    if (!detail::is_currency_code(*currency)) {
      throw t.error("currency", "'" + *currency + "' is not an ISO 4217 code such as \"USD\"");
    }
    m.currency = *currency;
  } else if (m.eligible) {
    throw InputError(t.where(), "missing required key 'mdf.currency'");
  }
  if (auto days = t.integer("claim_window_days")) {
    if (*days < 0 || *days > 3660) throw t.error("claim_window_days", "must be 0 to 3660");
    m.claim_window_days = static_cast<int>(*days);
  } else if (m.eligible) {
    throw InputError(t.where(), "missing required key 'mdf.claim_window_days'");
  }
  m.min_delivered = read_threshold(t, "min_delivered");
  m.min_unique_clicks = read_threshold(t, "min_unique_clicks");
  t.refuse_unknown_keys();
  return m;
}

// Every file of the kit, by relative path, hashed one by one and then together, so a renamed
// file changes the digest as surely as an edited one. Dot-files (editor swap files, .DS_Store)
// are left out: they come and go without the kit changing.
std::string folder_digest(const fs::path& folder) {
  std::vector<std::pair<std::string, fs::path>> files;
  fs::recursive_directory_iterator it(folder), end;
  for (; it != end; ++it) {
    if (it->path().filename().string().starts_with(".")) {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file()) {
      files.emplace_back(it->path().lexically_relative(folder).generic_string(), it->path());
    }
  }
  std::sort(files.begin(), files.end());
  detail::Sha256 all;
  for (const auto& [name, path] : files) {
    detail::Sha256 one;
    one.update_file(path.string());
    all.update(name);
    all.update(std::string_view("\0", 1));
    all.update(one.hex_digest());
    all.update("\n");
  }
  return all.hex_digest();
}

fs::path kit_folder(const std::string& folder) {
  fs::path dir = fs::absolute(folder).lexically_normal();
  // "campaigns/q4/" normalises to a path whose last element is empty.
  if (!dir.has_filename()) dir = dir.parent_path();
  return dir;
}

}  // namespace

Kit load_kit(const std::string& folder) {
  const fs::path dir = kit_folder(folder);
  const std::string file = (dir / "kit.toml").string();
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) throw InputError(dir.string(), "no kit.toml in the folder");
  const toml::value document = detail::parse_toml(file);
  TomlTable root(document, file, "");

  Kit kit;
  kit.id = root.required_string("id");
  if (!is_plain_id(kit.id)) {
    throw root.error("id", "'" + kit.id + "' may use only letters, digits, '-' and '_'");
  }
  if (kit.id != dir.filename().string()) {
    throw root.error(
        "id", "'" + kit.id + "' does not match the folder name '" + dir.filename().string() + "'");
  }
  kit.name = required_nonempty(root, "name");
  // The name is in the List-Id header.
  if (detail::has_control_character(kit.name))
    throw root.error("name", "must be a single line without control characters");
  auto version = root.integer("version");
  if (!version) throw InputError(root.where(), "missing required key 'version'");
  if (*version < 1 || *version > INT_MAX) {
    throw root.error("version", "must be a whole number from 1 up");
  }
  kit.version = static_cast<int>(*version);
  kit.owner = root.string("owner").value_or("");
  kit.expires = read_expires(root);

  if (auto audience = root.table("audience")) kit.audience = read_audience(*audience);

  auto schedule = root.table("schedule");
  if (!schedule) throw InputError(file, "missing required table [schedule] with start = ...");
  kit.schedule.start = read_start(*schedule);
  if (auto window = schedule->table("window")) kit.schedule.window = read_window(*window);
  schedule->refuse_unknown_keys();

  for (TomlTable& table : root.tables("steps")) {
    Step step = read_step(table);
    auto same = [&](const Step& s) { return s.id == step.id; };
    if (std::any_of(kit.steps.begin(), kit.steps.end(), same)) {
      throw table.error("id", "'" + step.id + "' is already the id of an earlier step");
    }
    kit.steps.push_back(std::move(step));
  }
  if (kit.steps.empty()) throw InputError(file, "a kit needs at least one [[steps]] table");

  if (auto mdf = root.table("mdf")) kit.mdf = read_mdf(*mdf);
  root.refuse_unknown_keys();

  kit.folder = dir.string();
  try {
    kit.digest = folder_digest(dir);
  } catch (const fs::filesystem_error& e) {
    throw InputError(dir.string(), std::string("cannot read the kit folder: ") + e.what());
  }
  return kit;
}

namespace {

// Renders every webhook step's payload for a contact whose every column reads "x", and returns
// why each one is not JSON. Partner, kit and vendor values are the real ones; contact values are
// text, so a payload must quote them ("{{contact.first_name}}") to be valid for every row.
std::vector<std::string> trial_payloads(const ValidKit& valid, render::Context context,
                                        const std::vector<std::string>& columns) {
  std::vector<std::string> problems;
  // Tokens for links.* need a key; their value does not matter to the JSON.
  if (context.link_secret.empty()) context.link_secret = "trial";
  Contact sample;
  sample.email = sample.first_name = sample.last_name = sample.company = "x";
  for (const auto& column : columns) sample.extra[column] = "x";
  for (const auto& step : valid.kit.steps) {
    if (step.channel != Channel::webhook) continue;
    try {
      render::render_payload(*valid.templates, step, context, sample, "trial");
    } catch (const InputError& e) {
      problems.push_back(e.what());
    }
  }
  return problems;
}

}  // namespace

ValidKit validate_kit(const std::string& folder, const Config& config, const PartnerSet& partners,
                      const std::string& link_secret) {
  ValidKit valid;
  valid.kit = load_kit(folder);
  valid.templates = render::KitTemplates::compile(valid.kit, config.paths.templates, config.limits);

  std::vector<std::string> problems;
  std::size_t eligible = 0;
  const std::set<std::string> shown = valid.templates->contact_fields();
  for (const auto& [id, partner] : partners.partners) {
    if (!partner.active || schedule::ineligibility(valid.kit, partner)) continue;
    ++eligible;
    std::string held;
    // A name of its own: clang before C++20's P1091 cannot capture a structured binding.
    const std::string& partner_id = id;
    auto hold = [&](const std::string& why) {
      problems.push_back("partner '" + partner_id + "': " + why);
      held += (held.empty() ? "" : "; ") + why;
    };
    std::vector<std::string> columns;
    try {
      // Only the header is read: the columns decide which contact.* variables exist.
      ContactReader header(partner.contacts_file, config.limits.contact_field_bytes);
      columns = header.extra_columns();
      std::string lacking;
      for (const auto& column : header.missing_columns()) {
        if (shown.count(column) != 0) lacking += (lacking.empty() ? "" : ", ") + column;
      }
      if (!lacking.empty()) {
        hold(partner.contacts_file + ": header row lacks " + lacking +
             ", which this kit shows (the partner's other kits still send)");
      }
    } catch (const InputError& e) {
      hold(e.what());
    }
    if (held.empty()) {
      render::Context context{&config, &valid.kit, &partner, link_secret};
      auto missing = valid.templates->missing_variables(context, columns);
      for (const auto& m : missing) hold(m + " is not defined");
      if (missing.empty()) {
        for (const auto& problem : valid.templates->header_problems(context)) hold(problem);
        for (const auto& problem : trial_payloads(valid, context, columns)) hold(problem);
      }
    }
    if (!held.empty()) valid.held_partners.emplace(id, held);
  }
  // A mistake every partner trips over is the kit's own (a misspelt variable): refuse it. One
  // only some partners' data trips over costs those partners alone.
  if (!problems.empty() && valid.held_partners.size() == eligible) {
    std::string message;
    for (const auto& problem : problems) message += (message.empty() ? "" : "\n") + problem;
    throw InputError((fs::path(valid.kit.folder) / "kit.toml").string(), message);
  }
  return valid;
}

bool looks_incomplete(const std::string& folder, std::chrono::milliseconds quiet) {
  const fs::path dir = kit_folder(folder);
  if (is_partial_name(dir.filename().string())) return true;
  std::error_code ec;
  if (!fs::is_regular_file(dir / "kit.toml", ec)) return true;
  const auto now = fs::file_time_type::clock::now();
  auto recent = [&](const fs::path& path) {
    auto written = fs::last_write_time(path, ec);
    return ec || now - written < quiet;
  };
  if (recent(dir)) return true;
  fs::recursive_directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.ends_with(".tmp") || name.ends_with(".part")) return true;
    if (recent(it->path())) return true;
  }
  // A folder that vanished or could not be read while we looked is still settling.
  return static_cast<bool>(ec);
}

}  // namespace channeld::catalog
