// model: channeld's domain types. Plain values with no I/O; every other component depends on
// this one and it depends on nothing but the standard library and date/tz. Safe to share
// between threads once built (all members are values; nothing here is mutated after load).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace channeld {

// ---- errors -------------------------------------------------------------------------------

// An input a user wrote (config, partner file, CSV row, kit) is wrong. `where` names the file
// and, when known, the line ("campaigns/q4/kit.toml:12") or field ("partners/acme.toml: tier").
// Thrown at start-up and load time; the CLI turns it into a message and exit code 2.
class InputError : public std::runtime_error {
 public:
  InputError(std::string where, const std::string& message)
      : std::runtime_error(where.empty() ? message : where + ": " + message),
        where_(std::move(where)) {}
  const std::string& where() const { return where_; }

 private:
  std::string where_;
};

// ---- files --------------------------------------------------------------------------------

// True if `file` lies inside `folder` (or is it), comparing whole path elements. Both must be
// absolute and already resolved (std::filesystem::weakly_canonical: symlinks followed, no
// "." or ".."); this is the pure half of the "files stay in their folders" rule, the callers
// resolve.
bool path_within(std::string_view file, std::string_view folder);

// ---- money --------------------------------------------------------------------------------

// An amount in integer minor units (cents) with its currency. Never a double.
struct Money {
  std::int64_t minor = 0;
  std::string currency;  // ISO 4217, e.g. "USD"

  friend bool operator==(const Money&, const Money&) = default;
};

// The largest amount taken as input (claims, leads, funds, kit terms): 9,999,999,999.99. No
// campaign spends ten billion, and under this cap over nine million amounts still add up
// inside int64: a partner posting huge leads or claims cannot overflow finance's totals.
inline constexpr std::int64_t kMaxMinorUnits = 999'999'999'999;

// Parses "5000.00", "12", "0.5" (at most two decimals) into minor units. Throws InputError
// naming `where` on anything else (signs, exponents, three decimals, empty, over `most`).
std::int64_t parse_minor_units(std::string_view text, const std::string& where,
                               std::int64_t most = kMaxMinorUnits);
// 123456 -> "1234.56"; -5 -> "-0.05".
std::string format_minor_units(std::int64_t minor);

// Text as HTML character data or a quoted attribute value: & < > " ' escaped. The one escape
// for every page and message channeld writes (render, the API's pages, the MDF report).
std::string escape_html(std::string_view text);

// ---- partners -----------------------------------------------------------------------------

enum class Tier { registered, silver, gold, platinum };
enum class PartnerType { reseller, var, msp, si, isv, referral };

std::optional<Tier> tier_from_string(std::string_view s);
std::optional<PartnerType> partner_type_from_string(std::string_view s);
std::string_view to_string(Tier t);
std::string_view to_string(PartnerType t);

struct Branding {
  std::string logo_url;
  std::string primary_color;
  std::string website;
  std::string postal_address;
  std::string sender_name;
  std::string reply_to;
};

struct PartnerWebhook {
  std::string url;
  std::string secret_file;  // absolute after load
  std::string key;          // the signing key the secret file holds, decoded; never logged
  // The partner event feed: which of channeld's own events about this partner's messages are
  // pushed to `url` (sent, bounced, opened, clicked, unsubscribed); empty = the feed is off.
  std::set<std::string> events;
};

struct Partner {
  std::string id;  // [a-z0-9-]+, equals the file stem
  std::string name;
  Tier tier = Tier::registered;
  PartnerType type = PartnerType::reseller;
  std::string region;
  std::string timezone;  // IANA name, checked against the tz database at load
  bool active = true;    // status = "active" | "suspended"
  std::string contacts_file;  // absolute path after load
  Branding branding;
  std::optional<PartnerWebhook> webhook;
  std::optional<std::int64_t> mdf_allocation_minor;
  std::vector<std::string> opt_in_kits;  // kits with enrollment = "opt-in" this partner joined
  std::string source_file;               // where it came from, for error messages

  // Every key of the partner file as text, for templates: "name", "tier", "branding.logo_url"...
  // Only keys present in the file appear, so a template using an absent one fails validation.
  std::map<std::string, std::string> template_fields;
};

// One row of a partner's contacts CSV. `email` is lower-cased; `extra` holds any columns beyond
// the four required ones, keyed by header name.
struct Contact {
  std::string email;
  std::string first_name;
  std::string last_name;
  std::string company;
  std::map<std::string, std::string> extra;
};

// ---- kits ---------------------------------------------------------------------------------

// `proof` is never a kit step's channel: it marks the outbox rows that carry a partner's proof
// of a kit's first email (app/proofs.hpp).
enum class Channel { email, webhook, proof };
enum class Enrollment { automatic, opt_in };

struct Audience {
  std::vector<Tier> tiers;         // empty = all
  std::vector<PartnerType> types;  // empty = all
  std::vector<std::string> regions;
  Enrollment enrollment = Enrollment::automatic;
};

// Minutes since local midnight; days as a bitmask, bit 0 = Monday ... bit 6 = Sunday.
struct SendWindow {
  std::uint8_t days = 0x7f;
  int from_minute = 0;
  int to_minute = 24 * 60;  // exclusive
};

// A local wall-clock date-time with no zone: a kit's start is read in each partner's zone.
using LocalTime = std::chrono::local_time<std::chrono::seconds>;
using SysTime = std::chrono::sys_time<std::chrono::seconds>;

struct Schedule {
  LocalTime start{};
  SendWindow window;
};

struct Step {
  std::string id;
  Channel channel = Channel::email;
  std::chrono::minutes delay{0};  // after the previous step
  std::string subject;            // mustache source (plain text)
  std::string html_template;      // file name as written in kit.toml
  std::string text_template;
  std::string payload_template;   // webhook steps
};

struct MdfTerms {
  bool eligible = false;
  // coop_ratio as parts per 10,000 (0.5 -> 5000), so reconciliation never touches a double.
  std::int64_t coop_ratio_bp = 0;
  std::optional<std::int64_t> max_per_partner_minor;
  std::string currency;
  int claim_window_days = 0;
  std::optional<std::int64_t> min_delivered;
  std::optional<std::int64_t> min_unique_clicks;
};

struct Kit {
  std::string id;
  std::string name;
  int version = 0;
  std::string owner;
  std::chrono::year_month_day expires{};  // last day (inclusive) on which new sends may start
  Audience audience;
  Schedule schedule;
  std::vector<Step> steps;
  MdfTerms mdf;
  std::string folder;  // absolute path of the kit folder
  std::string digest;  // sha256 over kit.toml and every file in the folder, hex
};

// ---- config -------------------------------------------------------------------------------

struct Config {
  std::string source_file;

  std::string database_url;
  // HTTP API requests borrow database sessions from a pool of their own, so a burst of them
  // never takes the sessions delivery and planning use; a request that finds none free within
  // the wait is answered 503 with Retry-After.
  struct Database {
    int api_sessions = 4;
    std::chrono::seconds api_session_wait{2};
  } database;

  struct Paths {
    std::string campaigns, templates, partners, claims, outbox;
    std::string state;  // the delivery journal (verdicts not yet in PostgreSQL)
  } paths;

  struct Http {
    std::string listen = "127.0.0.1:8025";
    // "" = off. Otherwise a second address serving the same endpoints, clicks, opens and
    // /healthz on an event-driven server and everything else relayed to `listen`.
    std::string public_listen;
    std::string public_url;
    std::string link_secret_file;  // HMAC key for unsubscribe and tracking link tokens
  } http;

  struct Smtp {
    std::string url = "smtp://127.0.0.1:25";
    std::string username;
    std::string password_file;
    std::string from_address;
    int max_connections = 16;       // parallel SMTP transfers (curl multi)
    std::chrono::seconds timeout{60};
  } smtp;

  struct Webhooks {
    std::vector<std::string> allow;
  } webhooks;

  struct Proofs {
    std::chrono::minutes lead_time{48 * 60};
  } proofs;

  struct Leads {
    // A lead is attributed to the last message its contact got from the partner within this
    // long before the lead was first reported.
    std::chrono::seconds attribution_window{90 * 24 * 3600};
  } leads;

  struct Vendor {
    std::string name;
    std::string postal_address;
    std::string logo_url;
    std::string primary_color = "#222222";
    std::string website;
  } vendor;

  struct Limits {
    double messages_per_second = 200;    // 0 = unlimited
    double per_partner_per_second = 50;  // 0 = unlimited
    double per_domain_per_second = 0;    // per recipient domain; 0 = unlimited
    // Input bounds (docs/formats.md "Limits"): far above any real kit or list, low enough
    // that a hostile or broken file costs milliseconds and megabytes, never the process.
    std::size_t template_bytes = 1 << 20;            // one template or partial file
    std::size_t template_expansion_bytes = 4 << 20;  // one part with its partials inlined
    int partial_depth = 16;                          // partials including partials
    std::size_t message_bytes = 10 << 20;            // one rendered message, all parts
    std::size_t contact_field_bytes = 4096;          // one contact CSV field
    std::size_t template_tags = 20000;  // {{tags}} in one part once inlined: validation work
  } limits;

  struct Delivery {
    int batch_size = 500;                   // rows claimed per round trip
    std::chrono::seconds lease{300};        // a claimed row returns to the queue after this
    int max_attempts = 8;                   // then the message fails permanently
    std::chrono::seconds backoff_base{60};  // first retry delay; doubles each attempt, jittered
    std::chrono::seconds backoff_max{6 * 3600};
    std::chrono::seconds scan_interval{30};  // how often due steps are expanded into the outbox
    std::chrono::seconds shutdown_grace{20};
  } delivery;

  struct Mdf {
    std::string currency = "USD";
    std::map<Tier, std::int64_t> allocation_minor;
    // Share of partner-won revenue that is gross margin, in parts per 10,000 (0.30 -> 3000), so
    // the return on partner investment is computed without a double.
    std::int64_t gross_margin_rate_bp = 0;
    // Staff, tools and other program costs by quarter ("2026-Q4"), in minor units.
    std::map<std::string, std::int64_t> program_costs_minor;
  } mdf;
};

}  // namespace channeld
