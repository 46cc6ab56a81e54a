#include "deliver/webhook_signing.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <stdexcept>

#include "model/model.hpp"
#include "render/mime.hpp"

namespace channeld::deliver {
namespace {

constexpr std::string_view kSecretPrefix = "whsec_";

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

bool base64_decode(std::string_view text, std::string& out) {
  out.clear();
  std::size_t padding = 0;
  while (!text.empty() && text.back() == '=' && padding < 2) {
    text.remove_suffix(1);
    ++padding;
  }
  if (text.size() % 4 == 1) return false;
  if (padding > 0 && (text.size() + padding) % 4 != 0) return false;
  out.reserve(text.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = base64_value(c);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  // Leftover bits must be zero, or two texts would decode to the same key.
  return (acc & ((1u << bits) - 1)) == 0;
}

std::string webhook_key_from_secret(std::string_view secret_text, const std::string& where) {
  std::string_view text = secret_text;
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.remove_suffix(1);
  }
  if (!text.starts_with(kSecretPrefix)) {
    throw InputError(where,
                     "a webhook secret must start with \"whsec_\" followed by base64 "
                     "(Standard Webhooks); generate one with: printf 'whsec_%s\\n' "
                     "\"$(head -c 32 /dev/urandom | base64)\"");
  }
  text.remove_prefix(kSecretPrefix.size());
  std::string key;
  if (!base64_decode(text, key)) {
    throw InputError(where, "the webhook secret after \"whsec_\" is not valid base64");
  }
  if (key.size() < kMinWebhookKeyBytes) {
    throw InputError(where, "the webhook secret is " + std::to_string(key.size()) +
                                " bytes; Standard Webhooks asks for at least " +
                                std::to_string(kMinWebhookKeyBytes));
  }
  return key;
}

std::string webhook_id(std::string_view idempotency_key) {
  return "msg_" + render::mime::sha256_hex(idempotency_key).substr(0, 32);
}

std::string webhook_signature(std::string_view key, std::string_view id, std::int64_t timestamp,
                              std::string_view body) {
  std::string signed_content;
  signed_content.reserve(id.size() + body.size() + 24);
  signed_content.append(id).append(".").append(std::to_string(timestamp)).append(".").append(body);
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int length = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(signed_content.data()), signed_content.size(),
           mac.data(), &length) == nullptr) {
    throw std::runtime_error("HMAC-SHA256 failed");
  }
  return "v1," + render::mime::base64(
                     std::string_view(reinterpret_cast<const char*>(mac.data()), length), false);
}

}  // namespace channeld::deliver
