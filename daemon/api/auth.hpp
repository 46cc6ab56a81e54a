// api/auth: who is calling, and may they. Bearer tokens carry a role: `admin`, `finance` or
// `partner:<id>`. Only a SHA-256 of each token is stored: tokens are 256 random bits, so a
// fast hash is as strong as bcrypt against guessing (bcrypt's cost protects low-entropy
// passwords, which these are not) and lets every request be checked with one indexed lookup.
//
// Pure: authenticate() is a function from the request's headers and a token lookup to a
// Principal or the error Response to send; require() checks a role. Any route (results, leads,
// MDF claims and reports) uses both the same way, so 401/403 are decided in one place.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "api/message.hpp"

namespace channeld::api {

enum class Role { admin, finance, partner };

struct Principal {
  Role role = Role::admin;
  std::string partner_id;  // set for Role::partner only
  std::string token_name;  // for logs; never the token itself

  // A partner token sees only its own partner's data; admin and finance see every partner.
  bool may_see_partner(std::string_view partner) const {
    return role != Role::partner || partner_id == partner;
  }
};

// "admin", "finance" or "partner:<id>" with an id of [a-z0-9-]+; nullopt otherwise.
std::optional<Principal> parse_role(std::string_view text);
std::string role_text(const Principal& principal);

// The role stored for a token hash, as written by `channeld token create`; nullopt when the
// hash is unknown or revoked. May throw (the database is down): authenticate answers 503.
struct StoredToken {
  std::string name;
  std::string role;
};
using TokenLookup = std::function<std::optional<StoredToken>(const std::string& token_hash)>;

// The Principal behind `Authorization: Bearer <token>`, or the response to send instead: 401
// (with WWW-Authenticate) when the header is missing, malformed or the token unknown; 503 when
// the lookup fails.
std::variant<Principal, Response> authenticate(const Request& request, const TokenLookup& lookup);

// nullopt when `principal` has one of `roles`; else a 403 naming the roles that may.
std::optional<Response> require(const Principal& principal, const std::vector<Role>& roles);

// Hex SHA-256 of a token, as stored in api_token.token_hash.
std::string token_hash(std::string_view token);
// A new token: "chd_" and 43 base64url characters (32 bytes from the OS's CSPRNG).
std::string new_token();

}  // namespace channeld::api
