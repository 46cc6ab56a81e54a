// deliver/webhook_signing: Standard Webhooks signatures (https://www.standardwebhooks.com). Pure.
//
// Every webhook carries three headers a receiver checks with any Standard Webhooks library:
//   webhook-id         the message's id, the same on every retry, so receivers can deduplicate
//   webhook-timestamp  unix seconds when this attempt was signed, so old captures can be refused
//   webhook-signature  "v1,<base64 HMAC-SHA256 of id.timestamp.body>"
// keyed with the partner's secret: "whsec_" followed by the base64 of the key bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace channeld::deliver {

// The spec's minimum; shorter keys are refused at partner load.
constexpr std::size_t kMinWebhookKeyBytes = 24;

// The key bytes of a secret file's text ("whsec_" + base64, optionally followed by a line end).
// Throws InputError naming `where` (the secret file) on a missing prefix, bad base64 or a key
// shorter than kMinWebhookKeyBytes. The message never contains the secret.
std::string webhook_key_from_secret(std::string_view secret_text, const std::string& where);

// Strict RFC 4648 base64 (standard alphabet, padding optional) into `out`; false on any other
// character, a bad length or non-zero trailing bits.
bool base64_decode(std::string_view text, std::string& out);

// "msg_" + 32 hex digits derived from the outbox row's idempotency key, so every attempt of one
// message (and a replay) carries the same webhook-id.
std::string webhook_id(std::string_view idempotency_key);

// "v1,<base64 signature>" for `body` sent as message `id` at `timestamp` (unix seconds).
std::string webhook_signature(std::string_view key, std::string_view id, std::int64_t timestamp,
                              std::string_view body);

}  // namespace channeld::deliver
