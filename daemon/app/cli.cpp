#include "app/cli.hpp"

#include <date/date.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "app/claims.hpp"
#include "api/auth.hpp"
#include "app/daemon.hpp"
#include "app/proofs.hpp"
#include "app/snapshot.hpp"
#include "catalog/catalog.hpp"
#include "render/render.hpp"
#include "schedule/schedule.hpp"
#include "store/engagement.hpp"
#include "store/proofs.hpp"
#include "store/store.hpp"
#include "store/webhooks.hpp"

namespace channeld::app {

namespace {

constexpr int kOk = 0;
constexpr int kRuntimeFailure = 1;
constexpr int kUsage = 2;
constexpr const char* kDefaultConfig = "/etc/channeld/channeld.toml";
constexpr const char* kPreviewSecret = "preview-only-links-do-not-verify";

constexpr const char* kHelp = R"(channeld: through-channel marketing daemon

usage:
  channeld [--config FILE] [--until-idle]   run the daemon (default config: /etc/channeld/channeld.toml)
  channeld check-config [--config FILE] [--startup]
                                            validate config, partners and kits; exit 0 or print errors
                                            (--startup: exit 2 only if the daemon cannot run)
  channeld migrate [--config FILE]          apply database migrations and exit
  channeld kits [--config FILE]             list kits: id, version, state, last error
  channeld preview --kit ID --partner ID [--contact EMAIL] [--step ID] [--out DIR] [--config FILE]
                                            render one message to DIR (.eml and .html) without sending
  channeld report mdf --period 2026-Q4 [--format csv|json|html] [--out FILE] [--config FILE]
                                            the MDF reconciliation report of a quarter
  channeld claims show CLAIM_ID [--partner ID] [--config FILE]
                                            decision history of one claim, with its inputs
  channeld webhooks status|failed|replay|enable [--partner ID] [--message N] [--event N]
                                       [--config FILE]
                                            disabled webhook endpoints; a partner's failed webhook
                                            deliveries and feed events; queue them again (all, or
                                            one message or event)
                                            and enable the endpoint; enable it without replaying
  channeld token create --role admin|finance|partner:ID --name NAME [--config FILE]
                                            print a new API token once (stored only as a hash)
  channeld token revoke NAME [--config FILE]
  channeld --version | --help

options:
  --config FILE   the configuration file
  --until-idle    run until nothing is due within two minutes, print a delivery summary, exit

exit codes: 0 success, 1 runtime failure, 2 bad usage or invalid input
)";

// "--flag value" options and bare flags after the verb. Unknown options are usage errors.
class Args {
 public:
  Args(std::vector<std::string> args, std::vector<std::string> with_value,
       std::vector<std::string> bare) {
    for (std::size_t i = 0; i < args.size(); ++i) {
      const std::string& a = args[i];
      if (std::find(bare.begin(), bare.end(), a) != bare.end()) {
        values_[a] = "";
      } else if (std::find(with_value.begin(), with_value.end(), a) != with_value.end()) {
        if (i + 1 >= args.size()) throw InputError("", a + " needs a value");
        values_[a] = args[++i];
      } else {
        throw InputError("", "unknown option '" + a + "' (see channeld --help)");
      }
    }
  }
  std::optional<std::string> get(const std::string& name) const {
    auto it = values_.find(name);
    if (it == values_.end()) return std::nullopt;
    return it->second;
  }
  bool has(const std::string& name) const { return values_.count(name) != 0; }
  std::string config() const { return get("--config").value_or(kDefaultConfig); }
  std::string required(const std::string& name) const {
    auto v = get(name);
    if (!v || v->empty()) throw InputError("", name + " is required (see channeld --help)");
    return *v;
  }

 private:
  std::map<std::string, std::string> values_;
};

SysTime now() {
  return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
}

std::vector<std::string> kit_warnings(const Snapshot& snapshot);
std::string utc_text(SysTime t);

// Two questions, two exit rules. Plain check-config asks "is everything I wrote right?" and
// exits 2 on any problem. --startup (systemd's ExecStartPre) asks "can the daemon run?": only
// channeld.toml and the secret files it names can stop it (exit 2); a refused kit, partner or
// contact file is printed but costs only itself, so the unit still starts.
int check_config(const Args& args) {
  const bool startup = args.has("--startup");
  Config config = catalog::load_config(args.config());
  if (!config.smtp.password_file.empty())
    read_secret(config.smtp.password_file, "smtp.password_file");
  std::vector<std::string> problems;
  // Validation renders no link, so it needs no real secret (but a named one must be readable).
  auto snapshot = load_snapshot(config, nullptr, now(), kPreviewSecret, problems);
  for (const auto& p : problems)
    std::fprintf(stderr, "%s%s\n", startup ? "warning: " : "", p.c_str());
  // Advice, not errors: the exit code stays 0 for a kit that would look like spam.
  for (const auto& w : kit_warnings(*snapshot)) std::fprintf(stderr, "warning: %s\n", w.c_str());
  for (const auto& w : proof_warnings(*snapshot, now()))
    std::fprintf(stderr, "warning: %s\n", w.c_str());
  std::size_t live = 0;
  for (const auto& [id, entry] : snapshot->kits)
    if (entry.state != KitState::refused) ++live;
  std::printf("%s: %zu partners, %zu of %zu kits valid%s\n", args.config().c_str(),
              snapshot->partners.partners.size(), live, snapshot->kits.size(),
              problems.empty() ? "" : "; problems above");
  if (startup) {
    if (!problems.empty())
      std::printf("the daemon can start: what is refused above costs only itself\n");
    return kOk;
  }
  return problems.empty() ? kOk : kUsage;
}

int migrate(const Args& args) {
  Config config = catalog::load_config(args.config());
  store::Store store(config.database_url, 1);
  auto applied = store.migrate();
  if (applied.empty()) {
    std::printf("schema is up to date (version %d)\n", store.schema_version());
  } else {
    for (int v : applied) std::printf("applied migration %d\n", v);
  }
  return kOk;
}

int kits(const Args& args) {
  Config config = catalog::load_config(args.config());
  // Read here, not from the store: it is what the daemon will find on its next reload.
  try {
    std::vector<catalog::Problem> rows;
    catalog::load_suppressions(config.paths.partners + "/suppressions.csv", rows);
  } catch (const InputError& e) {
    std::printf("SENDING HELD: %s: no new message goes out until the suppression file is fixed\n",
                e.what());
  }
  store::Store store(config.database_url, 1);
  auto rows = store.kit_states();
  if (rows.empty()) {
    std::printf("no kits recorded yet: the daemon records kits when it loads them\n");
  } else {
    std::printf("%-28s %-8s %-9s %s\n", "KIT", "VERSION", "STATE", "LAST ERROR");
    for (const auto& r : rows)
      std::printf("%-28s %-8d %-9s %s\n", r.kit_id.c_str(), r.version, r.state.c_str(),
                  r.error.c_str());
  }
  std::map<std::string, std::string> opted_out;  // kit -> "partner (via), ..."
  for (const auto& o : store::Proofs(store).opt_outs())
    opted_out[o.kit_id] += (opted_out[o.kit_id].empty() ? "" : ", ") + o.partner_id + " (" +
                           o.via + ", " + utc_text(o.at) + ")";
  for (const auto& [kit, partners] : opted_out)
    std::printf("kit %s: opted out: %s\n", kit.c_str(), partners.c_str());
  // Deliverability advice comes from the kit folders as they are now; folders that cannot be
  // read are check-config's to report, not this listing's.
  try {
    std::vector<std::string> problems;
    auto snapshot = load_snapshot(config, nullptr, now(), kPreviewSecret, problems);
    for (const auto& w : kit_warnings(*snapshot)) std::printf("warning: %s\n", w.c_str());
    for (const auto& w : proof_warnings(*snapshot, now())) std::printf("warning: %s\n", w.c_str());
  } catch (const std::exception&) {
  }
  return kOk;
}

std::string utc_text(SysTime t) {
  return date::format("%Y-%m-%d %H:%M:%SZ", t);
}

int webhooks(const std::string& action, const Args& args) {
  Config config = catalog::load_config(args.config());
  store::Store store(config.database_url, 1);
  store::WebhookEndpoints endpoints(store);
  if (action == "status") {
    auto rows = endpoints.all_disabled();
    if (rows.empty()) {
      std::printf("no webhook endpoint is disabled\n");
      return kOk;
    }
    std::printf("%-20s %-21s %-50s %s\n", "PARTNER", "DISABLED AT", "URL", "REASON");
    for (const auto& r : rows)
      std::printf("%-20s %-21s %-50s %s\n", r.partner_id.c_str(), utc_text(r.disabled_at).c_str(),
                  r.url.c_str(), r.reason.c_str());
    return kOk;
  }
  const std::string partner_id = args.required("--partner");
  if (action == "failed") {
    auto rows = endpoints.failed(partner_id, 1000);
    if (rows.empty()) {
      std::printf("partner %s has no failed webhook deliveries\n", partner_id.c_str());
      return kOk;
    }
    // A feed event's number is its own (EVENT column, `replay --event`), not a message's.
    std::printf("%-10s %-12s %-21s %-24s %-16s %-32s %-8s %s\n", "MESSAGE", "EVENT", "FAILED AT",
                "KIT", "STEP", "CONTACT", "ATTEMPTS", "LAST ERROR");
    for (const auto& r : rows) {
      const std::string number = std::to_string(r.id);
      const std::string event = r.event.empty() ? "-" : r.event + " " + number;
      std::printf("%-10s %-12s %-21s %-24s %-16s %-32s %-8d %s\n",
                  r.event.empty() ? number.c_str() : "-", event.c_str(),
                  utc_text(r.failed_at).c_str(), r.kit_id.c_str(), r.step_id.c_str(),
                  r.email.c_str(), r.attempts, r.last_error.c_str());
    }
    if (rows.size() == 1000) std::printf("(the 1000 most recent; replay sends them all)\n");
    return kOk;
  }
  if (action == "replay") {
    store::WebhookEndpoints::Selection which;
    auto number = [](const std::string& option, const std::string& text) {
      try {
        std::size_t used = 0;
        const auto n = std::stoll(text, &used);
        if (used != text.size()) throw std::invalid_argument("trailing text");
        return static_cast<std::int64_t>(n);
      } catch (const std::exception&) {
        throw InputError(option, "'" + text + "' is not a number from `webhooks failed`");
      }
    };
    if (auto message = args.get("--message")) {
      which.all = false;
      which.steps.push_back(number("--message", *message));
    }
    if (auto event = args.get("--event")) {
      which.all = false;
      which.events.push_back(number("--event", *event));
    }
    auto queued = endpoints.replay(partner_id, which, now());
    std::printf("queued %zu failed webhook deliveries of partner %s again; its endpoint is "
                "enabled\n",
                queued, partner_id.c_str());
    return kOk;
  }
  if (action == "enable") {
    auto n = endpoints.enable(partner_id);
    std::printf(n == 0 ? "partner %s's webhook endpoint was not disabled\n"
                       : "partner %s's webhook endpoint is enabled again\n",
                partner_id.c_str());
    return kOk;
  }
  throw InputError("", "unknown webhooks action '" + action +
                           "': one of status, failed, replay, enable (see channeld --help)");
}

std::optional<Contact> find_contact(const std::string& path, const std::optional<std::string>& email) {
  catalog::ContactReader reader(path);
  while (auto c = reader.next()) {
    if (!email || c->email == *email) return c;
  }
  return std::nullopt;
}

// Deliverability advice for each live kit: its email steps rendered for the first eligible
// active partner's first contact, as a spam filter would see them.
std::vector<std::string> kit_warnings(const Snapshot& snapshot) {
  std::vector<std::string> out;
  for (const auto& [id, entry] : snapshot.kits) {
    if (!entry.live) continue;
    const Kit& kit = entry.live->kit;
    for (const auto& [partner_id, partner] : snapshot.partners.partners) {
      if (!partner.active || schedule::ineligibility(kit, partner)) continue;
      std::optional<Contact> contact;
      try {
        contact = find_contact(partner.contacts_file, std::nullopt);
      } catch (const std::exception&) {
        continue;  // an unreadable list is reported by validation
      }
      if (!contact) continue;
      const auto ctx = render::make_context(snapshot.config, kit, partner, kPreviewSecret);
      for (const auto& step : kit.steps) {
        if (step.channel != Channel::email) continue;
        try {
          auto email = render::render_email(*entry.live->templates, step, ctx, *contact,
                                            "deliverability-check", now());
          for (auto& w : render::deliverability_warnings(email))
            out.push_back("kit " + id + " step '" + step.id + "': " + w);
        } catch (const std::exception&) {
          // A contact row that breaks the template is the planner's concern, not advice.
        }
      }
      break;
    }
  }
  return out;
}

int preview(const Args& args) {
  Config config = catalog::load_config(args.config());
  const std::string kit_id = args.required("--kit");
  const std::string partner_id = args.required("--partner");
  // A preview never reaches a recipient: without a configured secret file its links are
  // signed with a placeholder and will not verify.
  const std::string secret = config.http.link_secret_file.empty()
                                 ? kPreviewSecret
                                 : read_secret(config.http.link_secret_file, "http.link_secret_file");
  auto partners = catalog::load_partners(config.paths.partners);
  auto it = partners.partners.find(partner_id);
  if (it == partners.partners.end())
    throw InputError("--partner", "no partner '" + partner_id + "' in " + config.paths.partners);
  const Partner& partner = it->second;
  auto valid = catalog::validate_kit(config.paths.campaigns + "/" + kit_id, config, partners, secret);
  if (auto held = valid.held_partners.find(partner_id); held != valid.held_partners.end())
    throw InputError("--partner", partner_id + " is held back from this kit: " + held->second);
  if (auto why = schedule::ineligibility(valid.kit, partner))
    std::fprintf(stderr, "note: partner %s would get nothing from this kit: %s\n",
                 partner_id.c_str(), why->c_str());

  auto email = args.get("--contact");
  if (email) {
    std::transform(email->begin(), email->end(), email->begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  }
  auto contact = find_contact(partner.contacts_file, email);
  if (!contact)
    throw InputError("--contact", email ? "no contact " + *email + " in " + partner.contacts_file
                                        : partner.contacts_file + " has no contacts");

  const Step* step = nullptr;
  auto step_id = args.get("--step");
  for (const auto& s : valid.kit.steps) {
    if (s.channel != Channel::email) continue;
    if (!step_id || s.id == *step_id) {
      step = &s;
      break;
    }
  }
  if (step == nullptr)
    throw InputError("--step", step_id ? "kit has no email step '" + *step_id + "'"
                                       : "kit has no email step");

  const render::Context ctx{&config, &valid.kit, &partner, secret};
  auto message = render::render_email(
      *valid.templates, *step, ctx, *contact,
      store::idempotency_key(valid.kit.id, step->id, partner.id, contact->email), now());
  const std::filesystem::path out = args.get("--out").value_or(".");
  std::filesystem::create_directories(out);
  const std::string stem = valid.kit.id + "-" + step->id + "-" + partner.id;
  std::ofstream(out / (stem + ".eml"), std::ios::binary) << message.mime;
  std::ofstream(out / (stem + ".html"), std::ios::binary) << message.html;
  std::printf("%s\n%s\nSubject: %s\nTo: %s\n", (out / (stem + ".eml")).c_str(),
              (out / (stem + ".html")).c_str(), message.subject.c_str(), contact->email.c_str());
  return kOk;
}

int report(const std::vector<std::string>& rest) {
  if (rest.empty() || rest[0] != "mdf") {
    throw InputError("", "usage: channeld report mdf --period 2026-Q4 [--format csv|json|html]");
  }
  const Args args(std::vector<std::string>(rest.begin() + 1, rest.end()),
                  {"--config", "--period", "--format", "--out"}, {});
  const mdf::Period period = mdf::parse_period(args.required("--period"), "--period");
  const std::string format = args.get("--format").value_or("csv");
  if (format != "csv" && format != "json" && format != "html") {
    throw InputError("--format", "'" + format + "' is not one of csv, json, html");
  }
  Config config = catalog::load_config(args.config());
  const auto partners = catalog::load_partners(config.paths.partners);
  store::Store store(config.database_url, 1);
  const mdf::Report data = build_report(store, config, partners, period);
  const std::string text = format == "csv"    ? mdf::render_csv(data)
                           : format == "json" ? mdf::render_json(data)
                                              : mdf::render_html(data);
  if (auto out = args.get("--out")) {
    std::ofstream file(*out, std::ios::binary);
    file << text;
    if (!file.flush()) throw std::runtime_error("cannot write " + *out);
  } else {
    std::fwrite(text.data(), 1, text.size(), stdout);
  }
  return kOk;
}

int claims(const std::vector<std::string>& rest) {
  if (rest.size() < 2 || rest[0] != "show" || rest[1].starts_with("--")) {
    throw InputError("", "usage: channeld claims show CLAIM_ID [--partner ID]");
  }
  const Args args(std::vector<std::string>(rest.begin() + 2, rest.end()),
                  {"--config", "--partner"}, {});
  Config config = catalog::load_config(args.config());
  store::Store store(config.database_url, 1);
  const std::string text = claim_history_text(store, rest[1], args.get("--partner").value_or(""));
  std::fwrite(text.data(), 1, text.size(), stdout);
  return kOk;
}

// `token create` prints the token on stdout and nothing else there, so scripts can capture it;
// the database keeps only its SHA-256 (see api/auth.hpp for why not bcrypt).
int token(const std::vector<std::string>& argv) {
  const std::string usage =
      "usage: channeld token create --role admin|finance|partner:ID --name NAME, or channeld "
      "token revoke NAME";
  if (argv.empty()) throw InputError("", usage);
  const std::string action = argv[0];
  std::vector<std::string> rest(argv.begin() + 1, argv.end());
  if (action == "create") {
    Args args(rest, {"--config", "--role", "--name"}, {});
    const std::string role = args.required("--role");
    const std::string name = args.required("--name");
    if (!api::parse_role(role))
      throw InputError("--role", "'" + role + "' is not admin, finance or partner:ID");
    Config config = catalog::load_config(args.config());
    store::Store store(config.database_url, 1);
    store.migrate();
    store::Engagement engagement(store);
    if (engagement.token_by_name_exists(name))
      throw InputError("--name", "a token named '" + name + "' exists; revoke it first");
    const std::string secret = api::new_token();
    engagement.add_token(name, api::token_hash(secret), role);
    std::printf("%s\n", secret.c_str());
    std::fflush(stdout);
    std::fprintf(stderr, "token '%s' (%s) created; it is shown only this once\n", name.c_str(),
                 role.c_str());
    return kOk;
  }
  if (action == "revoke") {
    if (rest.empty() || rest[0].rfind("--", 0) == 0) throw InputError("", usage);
    const std::string name = rest[0];
    Args args(std::vector<std::string>(rest.begin() + 1, rest.end()), {"--config"}, {});
    Config config = catalog::load_config(args.config());
    store::Store store(config.database_url, 1);
    store.migrate();
    store::Engagement engagement(store);
    if (!engagement.revoke_token(name, now())) {
      std::fprintf(stderr, "channeld: no live token named '%s'\n", name.c_str());
      return kUsage;
    }
    std::printf("token '%s' revoked\n", name.c_str());
    return kOk;
  }
  throw InputError("", "unknown token action '" + action + "'; " + usage);
}

int run(const Args& args) {
  DaemonOptions options;
  options.config_path = args.config();
  options.until_idle = args.has("--until-idle");
  if (auto owner = args.get("--owner")) options.owner = *owner;
  return run_daemon(options);
}

int dispatch(const std::vector<std::string>& argv) {
  if (!argv.empty() && (argv[0] == "--version" || argv[0] == "version")) {
    std::printf("channeld %s\n", CHANNELD_VERSION);
    return kOk;
  }
  if (!argv.empty() && (argv[0] == "--help" || argv[0] == "-h" || argv[0] == "help")) {
    std::fputs(kHelp, stdout);
    return kOk;
  }
  const bool has_verb = !argv.empty() && argv[0].rfind("--", 0) != 0;
  const std::string verb = has_verb ? argv[0] : "run";
  std::vector<std::string> rest(argv.begin() + (has_verb ? 1 : 0), argv.end());
  if (verb == "run") return run(Args(rest, {"--config", "--owner"}, {"--until-idle"}));
  if (verb == "check-config") return check_config(Args(rest, {"--config"}, {"--startup"}));
  if (verb == "migrate") return migrate(Args(rest, {"--config"}, {}));
  if (verb == "kits") return kits(Args(rest, {"--config"}, {}));
  if (verb == "preview")
    return preview(Args(rest, {"--config", "--kit", "--partner", "--contact", "--step", "--out"}, {}));
  if (verb == "report") return report(rest);
  if (verb == "claims") return claims(rest);
  if (verb == "webhooks") {
    if (rest.empty() || rest[0].starts_with("--"))
      throw InputError("", "webhooks needs an action: status, failed, replay or enable");
    std::vector<std::string> options(rest.begin() + 1, rest.end());
    return webhooks(rest[0], Args(options, {"--config", "--partner", "--message", "--event"}, {}));
  }
  if (verb == "token") return token(rest);
  throw InputError("", "unknown command '" + verb + "' (see channeld --help)");
}

}  // namespace

int run_cli(int argc, char** argv) {
  setup_logging();
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    return dispatch(args);
  } catch (const InputError& e) {
    std::fprintf(stderr, "channeld: %s\n", e.what());
    return kUsage;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "channeld: %s\n", e.what());
    return kRuntimeFailure;
  }
}

}  // namespace channeld::app
