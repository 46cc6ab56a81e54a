// render: message bytes from (kit version, step, partner, contact). Pure: compiled templates
// go in, strings come out; the only file reads happen in KitTemplates::compile, at kit load.
// A compiled KitTemplates is immutable and shared between dispatcher threads; the render
// functions may run on any number of threads at once. Link tokens (unsubscribe, view online)
// are minted here and verified by the HTTP API with the same secret.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "model/model.hpp"

namespace channeld::render {

// The template data of one (config, kit, partner): partner.*, kit.* and vendor.*, built once so
// that a batch of messages for the same partner does not rebuild it per message.
struct Scope;

// Everything a template can see besides the contact. Built once per (config, kit, partner).
struct Context {
  const Config* config = nullptr;
  const Kit* kit = nullptr;
  const Partner* partner = nullptr;
  std::string link_secret;  // HMAC key for link tokens (bytes of config.http.link_secret_file)
  // Set by make_context. A Context filled in by hand (or whose pointers were changed since)
  // still renders correctly; it only rebuilds the partner/kit/vendor data on every call.
  std::shared_ptr<const Scope> scope{};
};

// A Context with its template data prepared. The referenced config, kit and partner must
// outlive it and must not change while it is in use.
Context make_context(const Config& config, const Kit& kit, const Partner& partner,
                     std::string link_secret);

// One step's compiled templates plus the shared layouts and partials they use.
class KitTemplates {
 public:
  // Reads and compiles every template the kit's steps name (kit folder first, then
  // `templates_dir`), the layouts (`layout.html.mustache`, `layout.txt.mustache` in the kit
  // folder or templates_dir) and every partial they reference. Throws InputError naming the
  // file (and line where known) for a missing file or a mustache syntax error, for
  // `{{=<% %>=}}` delimiter changes (unsupported), for a partial that includes itself, and for
  // an email step whose HTML or text part never shows {{links.unsubscribe}}; for a file that
  // leads (through a symlink) outside the folder it was found in; and for a file, partial
  // depth, inlined size or tag count past `limits` (the error names the config key).
  static std::shared_ptr<const KitTemplates> compile(const Kit& kit,
                                                     const std::string& templates_dir,
                                                     const Config::Limits& limits = {});
  virtual ~KitTemplates() = default;

  // Variables referenced by this kit's templates that do not resolve for this partner and a
  // contact with these CSV columns ("contact.region"), each as "step 'announce' html:
  // {{partner.branding.logo_url}} (FILE:LINE)". Empty = a trial render would succeed.
  // A section ({{#x}}, {{^x}}) may name an absent key: that is how templates say "if"; the
  // variables inside a {{#x}} section whose key is absent are not checked, as they never show.
  // `contact_columns` may list the four required columns or only the extra ones.
  virtual std::vector<std::string> missing_variables(
      const Context& ctx, const std::vector<std::string>& contact_columns) const = 0;

  // The contact fields ("last_name", "region") this kit shows anywhere: every {{contact.X}} of
  // every part (subjects, HTML and text with their layouts, payloads; partials inlined), and
  // every plain name inside a {{#contact}} section. A field named only as a section key
  // ({{#contact.last_name}}...{{/contact.last_name}}) is a condition, not a use: without the
  // column the section reads as false. A contacts file lacking one of these columns cannot
  // feed this kit; one lacking any other column still can.
  virtual std::set<std::string> contact_fields() const = 0;

  // Why a value bound for a header would not be a single line for this partner: each email
  // step's subject rendered with the partner's data (and a contact whose fields read "x": rows
  // are checked as the contacts file is read) that carries CR, LF or another control character,
  // as "step 'announce' subject: ... ". Empty = every subject is one line.
  virtual std::vector<std::string> header_problems(const Context& ctx) const = 0;

 protected:
  KitTemplates() = default;
};

struct RenderedEmail {
  std::string message_id;     // "<hex@domain>", deterministic from the idempotency key
  std::string envelope_from;  // config.smtp.from_address
  std::string recipient;      // contact email
  std::string subject;        // decoded, for logs and tests
  std::string html;           // the full HTML part, decoded
  std::string text;           // the full text part, decoded
  std::string mime;           // the complete RFC 5322 message, CRLF line ends
  // The kit's http(s) links in the HTML part, in document order, as the template rendered them
  // (entities decoded): link i became public_url/c/<click_token(.., i, links[i])>.
  std::vector<std::string> links;
};

// Renders one email step for one contact. `idempotency_key` seeds the Message-ID, the MIME
// boundary and the view-online token; `date` is the Date header. The same inputs give the same
// bytes. Throws InputError if a variable is missing (validation should have caught it), if a
// header value would carry CR/LF after rendering, or if the link secret is empty.
RenderedEmail render_email(const KitTemplates& templates, const Step& step, const Context& ctx,
                           const Contact& contact, const std::string& idempotency_key,
                           SysTime date);

// The links render_email would return for the same inputs, from the HTML part alone: no
// subject, text part, tokens or MIME. What a click needs to find its link again, at a fraction
// of a whole message's cost.
std::vector<std::string> email_links(const KitTemplates& templates, const Step& step,
                                     const Context& ctx, const Contact& contact,
                                     const std::string& idempotency_key);

// Renders a webhook step's JSON payload (values JSON-escaped). Throws InputError if a variable
// is missing or the result is not JSON.
std::string render_payload(const KitTemplates& templates, const Step& step, const Context& ctx,
                           const Contact& contact, const std::string& idempotency_key);

// ---- partner proofs ----
// What a proof says besides the kit's own email (app/proofs.hpp decides the values).
struct ProofNotice {
  std::string recipient;      // the partner's branding.reply_to
  std::string goes_out;       // when the step goes out, in the partner's zone, as a sentence part
  std::int64_t audience = 0;  // how many of the partner's contacts it will reach
};

// A partner's proof of one email step: the step rendered co-branded for `sample` (a made-up
// contact, never a real one), with a banner at the top of both parts saying it is a proof, when
// the step goes out, to how many contacts, and how to opt out (the signed link
// public_url/p/<proof_token> and the API call). Subject "[Proof] " + the step's subject. Links
// stay as the kit wrote them (no click tracking, no open pixel: a partner's look at its proof is
// no engagement). No List-Unsubscribe: the proof is a notice to the partner about its account,
// and the kit's own unsubscribe link inside it names the sample contact, not the partner.
// Reply-To is the kit's owner, so the partner's questions reach the marketer. Throws as
// render_email does.
RenderedEmail render_proof(const KitTemplates& templates, const Step& step, const Context& ctx,
                           const Contact& sample, const std::string& idempotency_key, SysTime date,
                           const ProofNotice& notice);

// The opt-out link of a partner's proof: names the kit and the partner, nothing else.
std::string proof_token(const std::string& secret, const std::string& kit_id,
                        const std::string& partner_id);
struct ProofTarget {
  std::string kit_id;
  std::string partner_id;
};
std::optional<ProofTarget> verify_proof_token(const std::string& secret, const std::string& token);

// Link tokens: "<payload>.<mac>" in base64url (no padding); the mac is the first 16 bytes of
// HMAC-SHA256 over the payload, keyed by the link secret and bound to the token's purpose, so
// a view-online token never passes as an unsubscribe token. Minting with an empty secret
// throws std::invalid_argument: such links would be forgeable.
std::string unsubscribe_token(const std::string& secret, const std::string& partner_id,
                              const std::string& email);
struct UnsubscribeTarget {
  std::string partner_id;
  std::string email;
};
std::optional<UnsubscribeTarget> verify_unsubscribe_token(const std::string& secret,
                                                          const std::string& token);

// `links.view_online` is public_url/v/<token>; the token carries the message's idempotency
// key, from which the API can find and re-render the message.
std::string view_token(const std::string& secret, const std::string& idempotency_key);
std::optional<std::string> verify_view_token(const std::string& secret, const std::string& token);

// Tracking. `public_url/o/<open_token>` is the open pixel; `public_url/c/<click_token>` stands
// for link `index` of the message's HTML. A click token carries no URL: it names the message
// (its idempotency key), the link's position and a digest of the link, so the API can find
// the URL only among the links the kit itself rendered for that message.
std::string open_token(const std::string& secret, const std::string& idempotency_key);
std::optional<std::string> verify_open_token(const std::string& secret, const std::string& token);
struct ClickTarget {
  std::string idempotency_key;
  int index = 0;
  std::string link_digest;  // link_digest(url) of the link when the message was sent
};
std::string click_token(const std::string& secret, const std::string& idempotency_key, int index,
                        const std::string& url);
std::optional<ClickTarget> verify_click_token(const std::string& secret, const std::string& token);
// A short digest (12 hex digits) of a link: enough to tell one link of a kit from another.
std::string link_digest(const std::string& url);

// What {{variable}} writes into HTML: kainjow's own html_escape byte for byte (& < > " ' as
// entities), without its one append per character; every variable of every message goes
// through it.
std::string html_escape(const std::string& text);

// Why a rendered email would look like spam to filters, each a sentence naming the reason;
// empty when nothing stands out. Checks: little text beside images (SpamAssassin's
// HTML_IMAGE_ONLY rules), images without alt, an empty text part, links over plain http, URL
// shorteners, a subject in capitals. Advice only: a kit is never refused for these.
std::vector<std::string> deliverability_warnings(const RenderedEmail& email);

// Deterministic Message-ID for an idempotency key: the same message re-sent after a crash keeps
// its Message-ID, so receivers (and our tests) can spot the duplicate. Throws InputError if
// `from_address` has no domain.
std::string message_id_for(const std::string& idempotency_key, const std::string& from_address);

// Text as HTML character data or a quoted attribute value (model.hpp).
using ::channeld::escape_html;

}  // namespace channeld::render
