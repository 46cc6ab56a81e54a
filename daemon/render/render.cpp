#include "render/render.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>

// GCC 12 reports a "potential null pointer dereference" inside std::vector::insert as
// instantiated by kainjow's context class: a false positive from its middle end, in code we do
// not own.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <kainjow/mustache.hpp>
#pragma GCC diagnostic pop

#include "render/mime.hpp"
#include "render/template_source.hpp"

namespace channeld::render {

namespace mus = kainjow::mustache;

// ---- template data ----------------------------------------------------------------------

struct Scope {
  const Config* config = nullptr;
  const Kit* kit = nullptr;
  const Partner* partner = nullptr;
  mus::data data;          // {partner: {...}, kit: {...}, vendor: {...}}
  std::string public_url;  // config.http.public_url without a trailing '/'

  // The variables each template part lacks with this scope, by the part's serial and the
  // contact's extra columns. The check finds keys and never reads a value, so every contact of
  // a list gets the answer its first message got: it is worked out once per part and header,
  // not for every message (it was an eighth of a render).
  mutable std::mutex missing_mutex;
  mutable std::map<std::pair<std::uint64_t, std::string>, std::vector<std::string>> missing;
};

namespace {

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool starts_with_nocase(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (lower(text[i]) != lower(prefix[i])) return false;
  }
  return true;
}

// Every message's HTML is scanned for tags and links: memchr jumps to the candidates for a
// needle that starts with a non-letter ('<'), rather than comparing at every byte.
std::size_t find_nocase(std::string_view text, std::string_view needle, std::size_t from) {
  if (needle.empty()) return from <= text.size() ? from : std::string_view::npos;
  if (text.size() < needle.size()) return std::string_view::npos;
  const std::size_t last = text.size() - needle.size();
  const char first = lower(needle[0]);
  const bool letter = first >= 'a' && first <= 'z';
  for (std::size_t i = from; i <= last; ++i) {
    if (!letter) {
      const void* hit = std::memchr(text.data() + i, first, last - i + 1);
      if (hit == nullptr) return std::string_view::npos;
      i = static_cast<std::size_t>(static_cast<const char*>(hit) - text.data());
    } else if (lower(text[i]) != first) {
      continue;
    }
    if (starts_with_nocase(text.substr(i), needle)) return i;
  }
  return std::string_view::npos;
}

// Empty values are false rather than "": a section such as {{#contact.first_name}} then reads
// as "if there is a first name", while {{contact.first_name}} still renders as nothing.
mus::data value(const std::string& text) {
  return text.empty() ? mus::data(false) : mus::data(text);
}

// Puts `text` at a dotted path ("branding.logo_url") below `root`, creating objects on the way.
void put(mus::data& root, const std::string& dotted, const std::string& text) {
  mus::data* node = &root;
  std::size_t start = 0;
  for (std::size_t dot; (dot = dotted.find('.', start)) != std::string::npos; start = dot + 1) {
    std::string key = dotted.substr(start, dot - start);
    const mus::data* existing = node->get(key);
    if (existing != nullptr && !existing->is_object()) return;  // "a" and "a.b": keep "a"
    node = &(*node)[key];
  }
  node->set(dotted.substr(start), value(text));
}

std::string iso_date(std::chrono::year_month_day d) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", static_cast<int>(d.year()),
                static_cast<unsigned>(d.month()), static_cast<unsigned>(d.day()));
  return buf;
}

std::shared_ptr<const Scope> build_scope(const Config& config, const Kit& kit,
                                         const Partner& partner) {
  auto scope = std::make_shared<Scope>();
  scope->config = &config;
  scope->kit = &kit;
  scope->partner = &partner;
  scope->public_url = config.http.public_url;
  while (!scope->public_url.empty() && scope->public_url.back() == '/')
    scope->public_url.pop_back();

  // The struct gives a Partner built in code the same fields as one read from a file; the
  // file's keys then add whatever else it has. Empty struct fields stay absent, as absent keys
  // do, so validation flags them alike.
  mus::data& p = scope->data["partner"];
  auto field = [&](const std::string& key, const std::string& text) {
    if (!text.empty()) put(p, key, text);
  };
  field("id", partner.id);
  field("name", partner.name);
  field("tier", std::string(to_string(partner.tier)));
  field("type", std::string(to_string(partner.type)));
  field("region", partner.region);
  field("timezone", partner.timezone);
  field("status", partner.active ? "active" : "suspended");
  field("branding.logo_url", partner.branding.logo_url);
  field("branding.primary_color", partner.branding.primary_color);
  field("branding.website", partner.branding.website);
  field("branding.postal_address", partner.branding.postal_address);
  field("branding.sender_name", partner.branding.sender_name);
  field("branding.reply_to", partner.branding.reply_to);
  for (const auto& [key, text] : partner.template_fields) {
    // The webhook table names a secret file: nothing a message should ever show.
    if (key.rfind("webhook.", 0) == 0) continue;
    put(p, key, text);
  }

  mus::data& k = scope->data["kit"];
  put(k, "id", kit.id);
  put(k, "name", kit.name);
  put(k, "version", std::to_string(kit.version));
  put(k, "owner", kit.owner);
  put(k, "expires", iso_date(kit.expires));

  // Every vendor key exists (config has defaults), so templates test them with sections.
  mus::data& v = scope->data["vendor"];
  put(v, "name", config.vendor.name);
  put(v, "postal_address", config.vendor.postal_address);
  put(v, "logo_url", config.vendor.logo_url);
  put(v, "primary_color", config.vendor.primary_color);
  put(v, "website", config.vendor.website);
  return scope;
}

const Scope& scope_of(const Context& ctx, std::shared_ptr<const Scope>& built) {
  if (ctx.config == nullptr || ctx.kit == nullptr || ctx.partner == nullptr) {
    throw std::invalid_argument("render::Context needs config, kit and partner");
  }
  const Scope* s = ctx.scope.get();
  if (s != nullptr && s->config == ctx.config && s->kit == ctx.kit && s->partner == ctx.partner) {
    return *s;
  }
  built = build_scope(*ctx.config, *ctx.kit, *ctx.partner);
  return *built;
}

// contact.* and links.*: the per-message layer, looked up before the scope's layer.
mus::data message_data(const Contact& contact, const std::string& unsubscribe,
                       const std::string& view_online) {
  mus::data message;
  mus::data& c = message["contact"];
  c.set("email", value(contact.email));
  c.set("first_name", value(contact.first_name));
  c.set("last_name", value(contact.last_name));
  c.set("company", value(contact.company));
  for (const auto& [column, text] : contact.extra) c.set(column, value(text));
  mus::data& links = message["links"];
  links.set("unsubscribe", mus::data(unsubscribe));
  links.set("view_online", mus::data(view_online));
  return message;
}

}  // namespace

std::string html_escape(const std::string& text) {
  static constexpr std::string_view kSpecial = "&<>\"'";
  std::size_t next = text.find_first_of(kSpecial);
  if (next == std::string::npos) return text;
  std::string out;
  out.reserve(text.size() + 32);
  std::size_t from = 0;
  for (; next != std::string::npos; next = text.find_first_of(kSpecial, from)) {
    out.append(text, from, next - from);
    switch (text[next]) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += "&apos;"; break;
    }
    from = next + 1;
  }
  out.append(text, from, std::string::npos);
  return out;
}

namespace {

std::string json_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

// Name lookup for rendering and for the missing-variable walk, with kainjow's rules: "." is
// the innermost value; a dotted name must resolve entirely within one layer, innermost first.
// (kainjow's own context inserts at the front of a vector and splits names through a
// stringstream; this one is cheaper and is what both paths share.)
class Layers final : public mus::basic_context<std::string> {
 public:
  Layers(const mus::data& scope, const mus::data& message) {
    layers_.reserve(8);
    layers_.push_back(&scope);
    layers_.push_back(&message);
  }
  void push(const mus::data* data) override { layers_.push_back(data); }
  void pop() override { layers_.pop_back(); }

  const mus::data* get(const std::string& name) const override {
    if (name == ".") return layers_.back();
    std::string segment;
    for (auto layer = layers_.rbegin(); layer != layers_.rend(); ++layer) {
      const mus::data* node = *layer;
      std::size_t start = 0;
      while (node != nullptr) {
        std::size_t dot = name.find('.', start);
        segment.assign(name, start, dot == std::string::npos ? std::string::npos : dot - start);
        node = node->get(segment);
        if (dot == std::string::npos) break;
        start = dot + 1;
      }
      if (node != nullptr) return node;
    }
    return nullptr;
  }
  const mus::data* get_partial(const std::string&) const override { return nullptr; }

 private:
  std::vector<const mus::data*> layers_;  // outermost first
};

// ---- compiled kit -----------------------------------------------------------------------

enum class Escape { html, none, json };

// A number no other part ever had in this process: Scope::missing keys by it, where an address
// could be a freed part's.
std::uint64_t next_part_serial() {
  static std::atomic<std::uint64_t> last{0};
  return ++last;
}

struct Part {
  Part(std::string part_label, source::Assembled assembled, Escape escape)
      : label(std::move(part_label)),
        source(std::move(assembled)),
        tmpl(source.text),
        serial(next_part_serial()) {
    if (!tmpl.is_valid()) throw InputError(label, tmpl.error_message());
    if (escape == Escape::none) tmpl.set_custom_escape([](const std::string& s) { return s; });
    if (escape == Escape::json) tmpl.set_custom_escape(json_escape);
    if (escape == Escape::html) tmpl.set_custom_escape(html_escape);
  }

  std::string label;  // "step 'announce' html"
  source::Assembled source;
  // kainjow's render() is non-const only because it records errors raised by partials and
  // lambdas. Partials are inlined at compile time and the data holds no lambdas, so rendering
  // only reads the parsed tree and may run on many threads at once.
  mutable mus::mustache tmpl;
  std::uint64_t serial;
};

struct CompiledStep {
  std::string id;
  Channel channel = Channel::email;
  std::optional<Part> subject, html, text, payload;

  std::vector<const Part*> parts() const {
    std::vector<const Part*> out;
    for (const auto* p : {&subject, &html, &text, &payload}) {
      if (*p) out.push_back(&**p);
    }
    return out;
  }
};

// Walks a part's tags the way kainjow resolves them (innermost section first, dotted names
// within one layer) and reports each variable that finds nothing. Sections push what they
// found; a {{#x}} whose x is absent never renders, so its contents are not checked.
void find_missing(const Part& part, const mus::data& scope, const mus::data& message,
                  std::vector<std::string>& missing) {
  Layers stack(scope, message);
  const auto& tags = part.source.tags;
  auto walk = [&](auto& self, std::size_t i, bool live) -> std::size_t {
    while (i < tags.size()) {
      const source::Tag& tag = tags[i];
      switch (tag.kind) {
        case source::TagKind::variable:
        case source::TagKind::unescaped:
          if (live && stack.get(tag.name) == nullptr) {
            std::string entry = part.label + ": {{" + tag.name + "}} (" + tag.origin + ")";
            if (std::find(missing.begin(), missing.end(), entry) == missing.end()) {
              missing.push_back(std::move(entry));
            }
          }
          ++i;
          break;
        case source::TagKind::section:
        case source::TagKind::inverted: {
          const mus::data* found = live ? stack.get(tag.name) : nullptr;
          bool inner_live = live && (found != nullptr || tag.kind == source::TagKind::inverted);
          if (found != nullptr) stack.push(found);
          i = self(self, i + 1, inner_live);
          if (found != nullptr) stack.pop();
          break;
        }
        case source::TagKind::section_end:
          return i + 1;
      }
    }
    return i;
  };
  walk(walk, 0, true);
}

// See KitTemplates::contact_fields.
void collect_contact_fields(const Part& part, std::set<std::string>& fields) {
  constexpr std::string_view kContact = "contact.";
  std::size_t contact_sections = 0;  // enclosing {{#contact}} / {{^contact}} sections
  std::vector<bool> opened;          // per open section: is it one of those
  for (const source::Tag& tag : part.source.tags) {
    switch (tag.kind) {
      case source::TagKind::section:
      case source::TagKind::inverted:
        opened.push_back(tag.name == "contact");
        if (opened.back()) ++contact_sections;
        break;
      case source::TagKind::section_end:
        if (!opened.empty()) {
          if (opened.back()) --contact_sections;
          opened.pop_back();
        }
        break;
      case source::TagKind::variable:
      case source::TagKind::unescaped:
        if (tag.name.starts_with(kContact)) {
          const std::string field = tag.name.substr(kContact.size());
          fields.insert(field.substr(0, field.find('.')));
        } else if (contact_sections > 0 && tag.name != "." &&
                   tag.name.find('.') == std::string::npos) {
          fields.insert(tag.name);
        }
        break;
    }
  }
}

std::string trim_spaces(std::string s) {
  auto first = s.find_first_not_of(" \t");
  if (first == std::string::npos) return {};
  auto last = s.find_last_not_of(" \t");
  return s.substr(first, last - first + 1);
}

bool has_control(std::string_view text) {
  return std::any_of(text.begin(), text.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return (c < 0x20 && c != '\t') || c == 0x7f;
  });
}

bool shows(const Part& part, const std::string& name) {
  return std::any_of(part.source.tags.begin(), part.source.tags.end(), [&](const source::Tag& t) {
    return t.name == name &&
           (t.kind == source::TagKind::variable || t.kind == source::TagKind::unescaped);
  });
}

// Marketers often write a kit's HTML as a whole document. The layout already is one, so such a
// template gives the layout its body only: the part between <body ...> and </body>, preceded
// by the <style> blocks of its <head> (email clients that keep styles read them in the body
// too). Everything else of the document (doctype, <html>, <head>, <title>) is dropped. A
// template without <body is left as it is.
void take_document_body(source::Assembled& part) {
  const std::string& text = part.text;
  const std::size_t body = find_nocase(text, "<body", 0);
  if (body == std::string::npos) return;
  const std::size_t open_end = text.find('>', body);
  if (open_end == std::string::npos) return;
  std::size_t close = std::string::npos;
  for (std::size_t at = find_nocase(text, "</body", open_end); at != std::string::npos;
       at = find_nocase(text, "</body", at + 1)) {
    close = at;
  }
  if (close == std::string::npos) close = text.size();
  std::string styles;
  for (std::size_t at = find_nocase(text, "<style", 0); at != std::string::npos && at < body;
       at = find_nocase(text, "<style", at + 1)) {
    const std::size_t end = find_nocase(text, "</style>", at);
    if (end == std::string::npos || end > body) break;
    styles.append(text, at, end + 8 - at).append("\n");
  }
  part.text = styles + text.substr(open_end + 1, close - open_end - 1);
}

class CompiledKit final : public KitTemplates {
 public:
  CompiledKit(const Kit& kit, const std::string& templates_dir, const Config::Limits& limits) {
    source::Library library(kit.folder, templates_dir, limits);
    std::string kit_toml = kit.folder + "/kit.toml";
    for (const Step& step : kit.steps) {
      std::string where = kit_toml + ": step '" + step.id + "'";
      std::string label = "step '" + step.id + "'";
      CompiledStep& compiled = steps_.emplace_back();
      compiled.id = step.id;
      compiled.channel = step.channel;
      if (step.channel == Channel::email) {
        if (step.subject.empty() || step.html_template.empty() || step.text_template.empty()) {
          throw InputError(where, "an email step needs subject, html and text");
        }
        compiled.subject.emplace(label + " subject", library.text(step.subject, where + " subject"),
                                 Escape::none);
        source::Assembled html_body = library.file(step.html_template, where);
        take_document_body(html_body);
        compiled.html.emplace(label + " html",
                              library.layout("layout.html.mustache", html_body, true, where),
                              Escape::html);
        compiled.text.emplace(label + " text",
                              library.layout("layout.txt.mustache",
                                             library.file(step.text_template, where), false, where),
                              Escape::none);
        // Bulk mail without a way out is unlawful in most markets; refuse it at load.
        for (const Part* part : {&*compiled.html, &*compiled.text}) {
          if (!shows(*part, "links.unsubscribe")) {
            throw InputError(where, part->label +
                                        " never shows {{links.unsubscribe}}: every email needs an "
                                        "unsubscribe link (put it in the layout's footer)");
          }
        }
      } else {
        if (step.payload_template.empty()) {
          throw InputError(where, "a webhook step needs a payload template");
        }
        source::Assembled payload = library.file(step.payload_template, where);
        for (const auto& tag : payload.tags) {
          if (tag.kind == source::TagKind::unescaped) {
            throw InputError(tag.origin, "{{{" + tag.name +
                                             "}}} would skip JSON escaping: write {{" + tag.name +
                                             "}} inside quotes");
          }
        }
        compiled.payload.emplace(label + " payload", std::move(payload), Escape::json);
      }
    }
  }

  std::vector<std::string> missing_variables(
      const Context& ctx, const std::vector<std::string>& contact_columns) const override {
    std::shared_ptr<const Scope> built;
    const Scope& scope = scope_of(ctx, built);
    Contact sample;
    sample.email = sample.first_name = sample.last_name = sample.company = "x";
    for (const auto& column : contact_columns) {
      if (column != "email" && column != "first_name" && column != "last_name" &&
          column != "company") {
        sample.extra[column] = "x";
      }
    }
    mus::data message = message_data(sample, "x", "x");
    std::vector<std::string> missing;
    for (const auto& step : steps_) {
      for (const Part* part : step.parts()) find_missing(*part, scope.data, message, missing);
    }
    return missing;
  }

  std::set<std::string> contact_fields() const override {
    std::set<std::string> fields;
    for (const auto& step : steps_) {
      for (const Part* part : step.parts()) collect_contact_fields(*part, fields);
    }
    return fields;
  }

  std::vector<std::string> header_problems(const Context& ctx) const override {
    std::shared_ptr<const Scope> built;
    const Scope& scope = scope_of(ctx, built);
    Contact sample;
    sample.email = sample.first_name = sample.last_name = sample.company = "x";
    const mus::data message = message_data(sample, "x", "x");
    std::vector<std::string> problems;
    for (const auto& step : steps_) {
      if (!step.subject) continue;
      const Part& subject = *step.subject;
      Layers stack(scope.data, message);
      // As render_email trims it; a variable the partner lacks renders empty here (that is
      // missing_variables' report, not this one's).
      if (!has_control(trim_spaces(subject.tmpl.render(stack)))) continue;
      // Name the value that brought the line break, or else the template text itself.
      std::string culprits;
      for (const source::Tag& tag : subject.source.tags) {
        if (tag.kind != source::TagKind::variable && tag.kind != source::TagKind::unescaped)
          continue;
        const mus::data* value = stack.get(tag.name);
        if (value == nullptr || !value->is_string() || !has_control(value->string_value()))
          continue;
        culprits += (culprits.empty() ? "" : ", ") + std::string("{{") + tag.name + "}} (" +
                    tag.origin + ")";
      }
      problems.push_back(subject.label +
                         " would carry a line break or control character into the Subject "
                         "header: " +
                         (culprits.empty() ? "its text (partials included) has one"
                                           : "the value of " + culprits + " has one") +
                         "; a header value must be a single line");
    }
    return problems;
  }

  const CompiledStep& step(const Step& step, Channel channel) const {
    for (const auto& s : steps_) {
      if (s.id == step.id) {
        if (s.channel != channel) {
          throw std::invalid_argument("step '" + step.id + "' is not a " +
                                      (channel == Channel::email ? "email" : "webhook") + " step");
        }
        return s;
      }
    }
    throw std::invalid_argument("these templates have no step '" + step.id + "'");
  }

 private:
  std::vector<CompiledStep> steps_;  // in kit order
};

const CompiledKit& compiled(const KitTemplates& templates) {
  // compile() is the only way to obtain KitTemplates, so this holds outside of test doubles.
  return dynamic_cast<const CompiledKit&>(templates);
}

// `message` is message_data(contact, ...): its keys are fixed but for the contact's extra columns.
std::string render_part(const Part& part, const Scope& scope, const mus::data& message,
                        const Contact& contact) {
  std::string columns;
  for (const auto& [column, text] : contact.extra) columns.append(column).push_back('\n');
  std::vector<std::string> missing;
  {
    std::lock_guard lock(scope.missing_mutex);
    const auto key = std::make_pair(part.serial, std::move(columns));
    auto known = scope.missing.find(key);
    if (known == scope.missing.end()) {
      find_missing(part, scope.data, message, missing);
      known = scope.missing.emplace(key, missing).first;
    }
    missing = known->second;
  }
  if (!missing.empty()) {
    std::string list;
    for (const auto& m : missing) list += (list.empty() ? "" : "; ") + m;
    throw InputError(part.label, "missing variables: " + list);
  }
  Layers stack(scope.data, message);
  // kainjow's render(context) builds an ostringstream (a locale and its facets) for every call
  // and copies the result out of it; its stream overload takes anything with <<, so the pieces
  // go straight into the string.
  struct Appender {
    std::string out;
    Appender& operator<<(const std::string& piece) {
      out += piece;
      return *this;
    }
  } appender;
  part.tmpl.render(stack, appender);
  if (!part.tmpl.is_valid()) throw InputError(part.label, part.tmpl.error_message());
  return std::move(appender.out);
}

struct Links {
  std::string unsubscribe, view_online;
};

Links links_for(const Scope& scope, const Context& ctx, const Contact& contact,
                const std::string& idempotency_key) {
  if (ctx.link_secret.empty()) {
    throw InputError("http.link_secret_file", "link secret is empty: links would be forgeable");
  }
  return Links{
      scope.public_url + "/u/" + unsubscribe_token(ctx.link_secret, ctx.partner->id, contact.email),
      scope.public_url + "/v/" + view_token(ctx.link_secret, idempotency_key)};
}

// ---- tracking ---------------------------------------------------------------------------

// The entities an HTML-escaping template writes into attribute values, decoded, so the
// redirect goes to the URL the marketer meant ("?a=1&amp;b=2" is "?a=1&b=2").
std::string decode_attribute(std::string_view value) {
  static constexpr std::pair<std::string_view, char> kEntities[] = {
      {"&amp;", '&'},  {"&lt;", '<'},    {"&gt;", '>'},  {"&quot;", '"'}, {"&apos;", '\''},
      {"&#39;", '\''}, {"&#x27;", '\''}, {"&#47;", '/'}, {"&#x2F;", '/'}};
  std::string out;
  out.reserve(value.size());
  for (std::size_t i = 0; i < value.size();) {
    bool decoded = false;
    if (value[i] == '&') {
      for (const auto& [entity, c] : kEntities) {
        if (starts_with_nocase(value.substr(i), entity)) {
          out += c;
          i += entity.size();
          decoded = true;
          break;
        }
      }
    }
    if (!decoded) out += value[i++];
  }
  return out;
}

// Rewrites every <a href="http(s)://..."> of `html` to a click-tracking link and adds the open
// pixel before </body>. Our own unsubscribe and view-online links stay as they are: a tracker
// in front of an unsubscribe link would count opt-outs as clicks. Returns the links found.
// With `rewrite` false, only finds them (the same links, in the same order) and leaves `html`.
std::vector<std::string> track(std::string& html, const std::string& public_url,
                               const std::string& secret, const std::string& idempotency_key,
                               bool rewrite = true) {
  std::vector<std::string> links;
  const std::string ours_u = public_url + "/u/", ours_v = public_url + "/v/";
  std::string out;
  out.reserve(html.size() + 512);
  std::size_t copied = 0;
  for (std::size_t tag = find_nocase(html, "<a", 0); tag != std::string::npos;
       tag = find_nocase(html, "<a", tag + 2)) {
    const char after = tag + 2 < html.size() ? html[tag + 2] : '>';
    if (after != ' ' && after != '\t' && after != '\n' && after != '\r') continue;
    const std::size_t end = html.find('>', tag);
    if (end == std::string::npos) break;
    std::size_t href = find_nocase(std::string_view(html).substr(0, end), "href", tag);
    if (href == std::string::npos) continue;
    std::size_t eq = href + 4;
    while (eq < end && (html[eq] == ' ' || html[eq] == '\t')) ++eq;
    if (eq >= end || html[eq] != '=') continue;
    std::size_t open = eq + 1;
    while (open < end && (html[open] == ' ' || html[open] == '\t')) ++open;
    if (open >= end || (html[open] != '"' && html[open] != '\'')) continue;
    const std::size_t close = html.find(html[open], open + 1);
    if (close == std::string::npos || close > end) continue;
    const std::string url =
        decode_attribute(std::string_view(html).substr(open + 1, close - open - 1));
    if (!starts_with_nocase(url, "http://") && !starts_with_nocase(url, "https://")) continue;
    if (url.rfind(ours_u, 0) == 0 || url.rfind(ours_v, 0) == 0) continue;
    const int index = static_cast<int>(links.size());
    links.push_back(url);
    if (!rewrite) continue;
    out.append(html, copied, open + 1 - copied);
    out += public_url + "/c/" + click_token(secret, idempotency_key, index, url);
    copied = close;
  }
  if (!rewrite) return links;
  out.append(html, copied, std::string::npos);

  const std::string pixel = "<img src=\"" + public_url + "/o/" +
                            open_token(secret, idempotency_key) +
                            "\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;border:0;"
                            "width:1px;height:1px;\">";
  std::size_t body_end = std::string::npos;
  for (std::size_t at = find_nocase(out, "</body", 0); at != std::string::npos;
       at = find_nocase(out, "</body", at + 1)) {
    body_end = at;
  }
  if (body_end == std::string::npos) {
    out += pixel;
  } else {
    out.insert(body_end, pixel + "\n");
  }
  html = std::move(out);
  return links;
}

}  // namespace

Context make_context(const Config& config, const Kit& kit, const Partner& partner,
                     std::string link_secret) {
  return Context{&config, &kit, &partner, std::move(link_secret),
                 build_scope(config, kit, partner)};
}

std::shared_ptr<const KitTemplates> KitTemplates::compile(const Kit& kit,
                                                          const std::string& templates_dir,
                                                          const Config::Limits& limits) {
  return std::make_shared<const CompiledKit>(kit, templates_dir, limits);
}

// ---- rendering --------------------------------------------------------------------------

std::vector<std::string> email_links(const KitTemplates& templates, const Step& step,
                                     const Context& ctx, const Contact& contact,
                                     const std::string& idempotency_key) {
  const CompiledStep& compiled_step = compiled(templates).step(step, Channel::email);
  std::shared_ptr<const Scope> built;
  const Scope& scope = scope_of(ctx, built);
  auto [unsubscribe, view_online] = links_for(scope, ctx, contact, idempotency_key);
  const mus::data message = message_data(contact, unsubscribe, view_online);
  std::string html = render_part(*compiled_step.html, scope, message, contact);
  return track(html, scope.public_url, ctx.link_secret, idempotency_key, false);
}

RenderedEmail render_email(const KitTemplates& templates, const Step& step, const Context& ctx,
                           const Contact& contact, const std::string& idempotency_key,
                           SysTime date) {
  const CompiledStep& compiled_step = compiled(templates).step(step, Channel::email);
  std::shared_ptr<const Scope> built;
  const Scope& scope = scope_of(ctx, built);
  const Config& config = *ctx.config;
  const Partner& partner = *ctx.partner;
  auto [unsubscribe, view_online] = links_for(scope, ctx, contact, idempotency_key);
  mus::data message = message_data(contact, unsubscribe, view_online);

  RenderedEmail email;
  email.subject = trim_spaces(render_part(*compiled_step.subject, scope, message, contact));
  email.html = render_part(*compiled_step.html, scope, message, contact);
  email.links = track(email.html, scope.public_url, ctx.link_secret, idempotency_key);
  email.text = render_part(*compiled_step.text, scope, message, contact);
  if (email.html.size() + email.text.size() > config.limits.message_bytes) {
    throw InputError(compiled_step.html->label,
                     "the rendered message is " +
                         std::to_string(email.html.size() + email.text.size()) +
                         " bytes, over limits.message_bytes (" +
                         std::to_string(config.limits.message_bytes) + ")");
  }
  email.message_id = message_id_for(idempotency_key, config.smtp.from_address);
  email.envelope_from = config.smtp.from_address;
  email.recipient = contact.email;

  // Header values: each checked where it came from, so the error names the file to fix.
  std::string partner_file =
      partner.source_file.empty() ? "partner " + partner.id : partner.source_file;
  mime::require_header_safe(email.subject, compiled_step.subject->label);
  if (email.subject.empty()) throw InputError(compiled_step.subject->label, "subject is empty");
  mime::require_address(config.smtp.from_address, "smtp.from_address");
  mime::require_address(contact.email, "contact " + contact.email);
  std::string sender =
      partner.branding.sender_name.empty() ? partner.name : partner.branding.sender_name;
  mime::require_header_safe(sender, partner_file + ": branding.sender_name");
  std::string contact_name = trim_spaces(contact.first_name + " " + contact.last_name);
  mime::require_header_safe(contact_name, "contact " + contact.email + ": name");
  if (!partner.branding.reply_to.empty()) {
    mime::require_header_safe(partner.branding.reply_to, partner_file + ": branding.reply_to");
    mime::require_address(partner.branding.reply_to, partner_file + ": branding.reply_to");
  }
  mime::require_header_safe(ctx.kit->name, ctx.kit->folder + "/kit.toml: name");
  mime::require_header_safe(unsubscribe, "http.public_url");

  std::string from_domain =
      config.smtp.from_address.substr(config.smtp.from_address.rfind('@') + 1);
  std::string boundary = "=_" + mime::sha256_hex("boundary\n" + idempotency_key).substr(0, 32);

  std::string& m = email.mime;
  m.reserve(1024 + email.html.size() * 11 / 10 + email.text.size() * 11 / 10);
  auto header = [&m](std::string_view name, std::string_view field) {
    m.append(name).append(": ").append(field).append("\r\n");
  };
  header("From", mime::mailbox(sender, config.smtp.from_address));
  if (!partner.branding.reply_to.empty()) header("Reply-To", partner.branding.reply_to);
  header("To", mime::mailbox(contact_name, contact.email));
  header("Subject", mime::unstructured("Subject", email.subject));
  header("Date", mime::date(date));
  header("Message-ID", email.message_id);
  header("MIME-Version", "1.0");
  header("List-Id",
         mime::mailbox(ctx.kit->name, ctx.kit->id + "." + partner.id + "." + from_domain));
  header("List-Unsubscribe", "<" + unsubscribe + ">");
  // RFC 8058 one-click applies to HTTPS links only; receivers ignore it for anything else.
  if (unsubscribe.rfind("https://", 0) == 0) {
    header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click");
  }
  header("Feedback-ID", step.id + ":" + ctx.kit->id + ":" + partner.id + ":channeld");
  header("Content-Type", "multipart/alternative; boundary=\"" + boundary + "\"");
  m += "\r\n";
  // Quoted-printable never emits "=_", so the boundary cannot occur inside a part.
  m += "--" + boundary + "\r\n";
  m += "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
       "quoted-printable\r\n\r\n";
  mime::append_quoted_printable(m, email.text);
  m += "--" + boundary + "\r\n";
  m += "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: "
       "quoted-printable\r\n\r\n";
  mime::append_quoted_printable(m, email.html);
  m += "--" + boundary + "--\r\n";
  return email;
}

namespace {


// The proof's banner, in the words a partner's marketer reads: what this is, when it goes, to
// how many, and how to stop it. Both parts say the same.
struct Banner {
  std::string html, text;
};

Banner proof_banner(const Kit& kit, const Partner& partner, const Step& step,
                    const ProofNotice& notice, const std::string& opt_out_url) {
  const std::string partner_name =
      partner.branding.sender_name.empty() ? partner.name : partner.branding.sender_name;
  const std::string api_call =
      "POST /v1/proofs/opt-out {\"kit\": \"" + kit.id + "\"} with your API token";
  const std::string contacts = std::to_string(notice.audience) + " of your contacts";
  Banner b;
  b.text = "PROOF for " + partner_name + ": the first email of the kit \"" + kit.name +
           "\" (version " + std::to_string(kit.version) + ", step '" + step.id +
           "'), shown with a sample contact.\n"
           "It goes out " +
           notice.goes_out + " to " + contacts +
           ". Nothing needs doing for it to go out.\n"
           "To send nothing from this kit to your contacts, opt out: " +
           opt_out_url + "\n(or " + api_call +
           ").\n"
           "------------------------------------------------------------------------\n\n";
  b.html =
      "<div style=\"border:2px solid #b45309;background:#fffbeb;color:#1f2937;padding:12px "
      "16px;margin:0 0 16px 0;font-family:Arial,Helvetica,sans-serif;font-size:14px;"
      "line-height:1.5;\"><p style=\"margin:0 0 8px 0;\"><strong>Proof for " +
      escape_html(partner_name) + "</strong>: the first email of the kit &ldquo;" +
      escape_html(kit.name) + "&rdquo; (version " + std::to_string(kit.version) + ", step '" +
      escape_html(step.id) +
      "'), shown with a sample contact.</p>"
      "<p style=\"margin:0 0 8px 0;\">It goes out <strong>" +
      escape_html(notice.goes_out) + "</strong> to <strong>" + escape_html(contacts) +
      "</strong>. Nothing needs doing for it to go out.</p>"
      "<p style=\"margin:0;\">To send nothing from this kit to your contacts, <a href=\"" +
      escape_html(opt_out_url) + "\">opt out of this kit</a> (or " + escape_html(api_call) +
      ").</p></div>\n";
  return b;
}

// After the opening <body ...> tag, or at the very start of a fragment without one.
void insert_after_body_open(std::string& html, const std::string& banner) {
  const std::size_t body = find_nocase(html, "<body", 0);
  const std::size_t open_end = body == std::string::npos ? body : html.find('>', body);
  if (open_end == std::string::npos) {
    html.insert(0, banner);
  } else {
    html.insert(open_end + 1, "\n" + banner);
  }
}

}  // namespace

RenderedEmail render_proof(const KitTemplates& templates, const Step& step, const Context& ctx,
                           const Contact& sample, const std::string& idempotency_key, SysTime date,
                           const ProofNotice& notice) {
  const CompiledStep& compiled_step = compiled(templates).step(step, Channel::email);
  std::shared_ptr<const Scope> built;
  const Scope& scope = scope_of(ctx, built);
  const Config& config = *ctx.config;
  const Partner& partner = *ctx.partner;
  auto [unsubscribe, view_online] = links_for(scope, ctx, sample, idempotency_key);
  mus::data message = message_data(sample, unsubscribe, view_online);
  const std::string opt_out =
      scope.public_url + "/p/" + proof_token(ctx.link_secret, ctx.kit->id, partner.id);

  RenderedEmail email;
  const std::string subject =
      trim_spaces(render_part(*compiled_step.subject, scope, message, sample));
  if (subject.empty()) throw InputError(compiled_step.subject->label, "subject is empty");
  email.subject = "[Proof] " + subject;
  const Banner banner = proof_banner(*ctx.kit, partner, step, notice, opt_out);
  email.html = render_part(*compiled_step.html, scope, message, sample);
  insert_after_body_open(email.html, banner.html);
  email.text = banner.text + render_part(*compiled_step.text, scope, message, sample);
  if (email.html.size() + email.text.size() > config.limits.message_bytes) {
    throw InputError(compiled_step.html->label,
                     "the rendered proof is over limits.message_bytes (" +
                         std::to_string(config.limits.message_bytes) + ")");
  }
  email.message_id = message_id_for(idempotency_key, config.smtp.from_address);
  email.envelope_from = config.smtp.from_address;
  email.recipient = notice.recipient;

  std::string partner_file =
      partner.source_file.empty() ? "partner " + partner.id : partner.source_file;
  mime::require_header_safe(email.subject, compiled_step.subject->label);
  mime::require_address(config.smtp.from_address, "smtp.from_address");
  mime::require_header_safe(notice.recipient, partner_file + ": branding.reply_to");
  mime::require_address(notice.recipient, partner_file + ": branding.reply_to");
  std::string sender =
      partner.branding.sender_name.empty() ? partner.name : partner.branding.sender_name;
  mime::require_header_safe(sender, partner_file + ": branding.sender_name");
  mime::require_header_safe(partner.name, partner_file + ": name");
  // The owner is free text in kit.toml; only a plain address becomes Reply-To.
  std::string owner;
  try {
    mime::require_header_safe(ctx.kit->owner, "owner");
    mime::require_address(ctx.kit->owner, "owner");
    owner = ctx.kit->owner;
  } catch (const InputError&) {
  }

  std::string boundary = "=_" + mime::sha256_hex("boundary\n" + idempotency_key).substr(0, 32);
  std::string& m = email.mime;
  m.reserve(1024 + email.html.size() * 11 / 10 + email.text.size() * 11 / 10);
  auto header = [&m](std::string_view name, std::string_view field) {
    m.append(name).append(": ").append(field).append("\r\n");
  };
  header("From", mime::mailbox(sender, config.smtp.from_address));
  if (!owner.empty()) header("Reply-To", owner);
  header("To", mime::mailbox(partner.name, notice.recipient));
  header("Subject", mime::unstructured("Subject", email.subject));
  header("Date", mime::date(date));
  header("Message-ID", email.message_id);
  header("MIME-Version", "1.0");
  // Out-of-office replies from the partner's mailbox have nowhere useful to go (RFC 3834).
  header("Auto-Submitted", "auto-generated");
  header("Feedback-ID", "proof:" + ctx.kit->id + ":" + partner.id + ":channeld");
  header("Content-Type", "multipart/alternative; boundary=\"" + boundary + "\"");
  m += "\r\n";
  m += "--" + boundary + "\r\n";
  m += "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
       "quoted-printable\r\n\r\n";
  mime::append_quoted_printable(m, email.text);
  m += "--" + boundary + "\r\n";
  m += "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: "
       "quoted-printable\r\n\r\n";
  mime::append_quoted_printable(m, email.html);
  m += "--" + boundary + "--\r\n";
  return email;
}

std::string render_payload(const KitTemplates& templates, const Step& step, const Context& ctx,
                           const Contact& contact, const std::string& idempotency_key) {
  const CompiledStep& compiled_step = compiled(templates).step(step, Channel::webhook);
  std::shared_ptr<const Scope> built;
  const Scope& scope = scope_of(ctx, built);
  auto [unsubscribe, view_online] = links_for(scope, ctx, contact, idempotency_key);
  mus::data message = message_data(contact, unsubscribe, view_online);
  std::string payload = render_part(*compiled_step.payload, scope, message, contact);
  try {
    auto parsed = nlohmann::json::parse(payload);
    static_cast<void>(parsed);
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(compiled_step.payload->label,
                     std::string("rendered payload is not JSON: ") + e.what());
  }
  return payload;
}

}  // namespace channeld::render
