// catalog internals: small checks and helpers shared by the config, partner, contact and kit
// readers. Not part of the catalog's interface; nothing outside daemon/catalog includes this.
#pragma once

#include <openssl/evp.h>

#include <memory>
#include <string>
#include <string_view>

namespace channeld::catalog::detail {

std::string_view trim(std::string_view text);
std::string lower_ascii(std::string_view text);

// A deliberately plain address check: local@domain, no spaces, quotes, angle brackets or
// control characters, and a dotted domain of letters, digits and hyphens. It catches the typos
// and export mistakes found in real lists; the relay remains the judge of deliverability.
bool is_email(std::string_view text);
bool is_http_url(std::string_view text);
// Partner ids: [a-z0-9-]+. They appear in file names, URLs and tokens.
bool is_partner_id(std::string_view text);
// The offset of the first byte that is not part of well-formed UTF-8 (RFC 3629: no overlong
// forms, no surrogates), or npos.
std::size_t invalid_utf8_at(std::string_view text);
// CR, LF or another C0 control character but tab, or DEL: not allowed in a value that may
// reach a header line.
bool has_control_character(std::string_view text);
// "#rgb" or "#rrggbb": the value is pasted into CSS, where a typo silently breaks the layout.
bool is_hex_color(std::string_view text);
// Three upper-case letters, as ISO 4217 codes are written.
bool is_currency_code(std::string_view text);

// `path` resolved (symlinks followed) if it lies inside `folder` (resolved too); otherwise
// throws InputError(where, ...) naming what it is and where it leads. The file may not exist.
std::string contained_path(const std::string& path, const std::string& folder,
                           const std::string& where, const std::string& what);

// `path` made absolute against `base_dir` unless it already is; "" stays "" (meaning unset).
std::string resolve_path(const std::string& base_dir, const std::string& path);

// Where a secret file named in the config is read from. A bare file name ("smtp-password", no
// slash) is first looked for among the service's systemd credentials, `credentials_dir` being
// $CREDENTIALS_DIRECTORY (set by LoadCredential=): systemd copies a root-owned 0600 file there
// readable by the service alone, which a DynamicUser= service could not read in place.
// Otherwise, and outside systemd (check-config run by hand), resolve_path.
std::string resolve_secret_path(const std::string& base_dir, const std::string& path,
                                const char* credentials_dir);

// Incremental SHA-256 over OpenSSL EVP, hex output.
class Sha256 {
 public:
  Sha256();
  void update(std::string_view bytes);
  // Streams the file's bytes in 64 KB chunks. Throws InputError if it cannot be read.
  void update_file(const std::string& path);
  std::string hex_digest();

 private:
  struct Free {
    void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx_;
};

}  // namespace channeld::catalog::detail
