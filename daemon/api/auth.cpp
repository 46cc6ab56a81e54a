#include "api/auth.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <stdexcept>

namespace channeld::api {

namespace {

bool valid_partner_id(std::string_view id) {
  if (id.empty()) return false;
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

Response unauthorized(std::string_view why) {
  Response r = json_error(401, why);
  r.headers.emplace("WWW-Authenticate", "Bearer realm=\"channeld\"");
  return r;
}

std::string_view role_name(Role role) {
  switch (role) {
    case Role::admin:
      return "admin";
    case Role::finance:
      return "finance";
    case Role::partner:
      return "partner";
  }
  return "?";
}

}  // namespace

std::optional<Principal> parse_role(std::string_view text) {
  if (text == "admin") return Principal{Role::admin, "", ""};
  if (text == "finance") return Principal{Role::finance, "", ""};
  constexpr std::string_view kPartner = "partner:";
  if (text.substr(0, kPartner.size()) == kPartner && valid_partner_id(text.substr(kPartner.size())))
    return Principal{Role::partner, std::string(text.substr(kPartner.size())), ""};
  return std::nullopt;
}

std::string role_text(const Principal& principal) {
  if (principal.role == Role::partner) return "partner:" + principal.partner_id;
  return std::string(role_name(principal.role));
}

std::variant<Principal, Response> authenticate(const Request& request, const TokenLookup& lookup) {
  const auto header = request.headers.find("authorization");
  if (header == request.headers.end())
    return unauthorized("this endpoint needs an API token: Authorization: Bearer TOKEN");
  std::string_view value = header->second;
  constexpr std::string_view kBearer = "Bearer ";
  if (value.size() <= kBearer.size() ||
      !std::equal(kBearer.begin(), kBearer.end(), value.begin(), [](char a, char b) {
        return std::tolower(static_cast<unsigned char>(a)) ==
               std::tolower(static_cast<unsigned char>(b));
      }))
    return unauthorized("the Authorization header is not \"Bearer TOKEN\"");
  std::string_view token = value.substr(kBearer.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  if (token.empty()) return unauthorized("the Authorization header is not \"Bearer TOKEN\"");

  std::optional<StoredToken> stored;
  try {
    stored = lookup ? lookup(token_hash(token)) : std::nullopt;
  } catch (...) {
    Response unavailable = failure_response(std::current_exception(), "cannot check the API token");
    unavailable.status = 503;
    return unavailable;
  }
  if (!stored) return unauthorized("unknown or revoked API token");
  auto principal = parse_role(stored->role);
  // A role the database holds but this binary cannot read grants nothing.
  if (!principal) return unauthorized("unknown or revoked API token");
  principal->token_name = stored->name;
  return *principal;
}

std::optional<Response> require(const Principal& principal, const std::vector<Role>& roles) {
  std::string allowed;
  for (Role r : roles) {
    if (r == principal.role) return std::nullopt;
    allowed += (allowed.empty() ? "" : ", ") +
               (r == Role::partner ? std::string("partner:<id>") : std::string(role_name(r)));
  }
  const std::string who =
      principal.role == Role::partner ? "partner" : std::string(role_name(principal.role));
  return json_error(403,
                    "a " + who + " token may not use this endpoint (allowed: " + allowed + ")");
}

std::string token_hash(std::string_view token) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  if (EVP_Digest(token.data(), token.size(), md.data(), &len, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("SHA-256 failed");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    hex += kHex[md[i] >> 4];
    hex += kHex[md[i] & 0xf];
  }
  return hex;
}

std::string new_token() {
  std::array<unsigned char, 32> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1)
    throw std::runtime_error("the system's random number generator failed");
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out = "chd_";
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char b : bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kAlphabet[(acc >> bits) & 0x3f];
    }
  }
  if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 0x3f];
  return out;
}

}  // namespace channeld::api
