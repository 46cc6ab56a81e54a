#include "render/mime.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>

namespace channeld::render::mime {

namespace {

// RFC 5322 recommends header lines of at most 78 characters.
constexpr std::size_t kHeaderLine = 78;
// An encoded-word is at most 75 characters; "=?UTF-8?B?" + "?=" take 12, and 39 input bytes
// make 52 base64 characters, so "Subject: " plus one word still fits in 78.
constexpr std::size_t kEncodedChunk = 39;
// The longest header name a mailbox follows here ("Reply-To: ", "List-Id: ").
constexpr std::size_t kMailboxPrefix = 10;
// Quoted-printable lines are at most 76 characters including the "=" of a soft break.
constexpr std::size_t kQpLine = 75;

constexpr std::string_view kHex = "0123456789ABCDEF";

// Bytes quoted-printable may carry as themselves: printable ASCII but '=', and space and tab
// (which must not end a line: append_quoted_printable checks that apart).
constexpr std::array<bool, 256> kQpLiteral = [] {
  std::array<bool, 256> literal{};
  for (int c = 0x21; c <= 0x7e; ++c) literal[c] = c != '=';
  literal[' '] = literal['\t'] = true;
  return literal;
}();

bool is_atext(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-/=?^_`{|}~").find(static_cast<char>(c)) !=
         std::string_view::npos;
}

bool is_printable_ascii(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c >= 0x7f) return false;
  }
  return true;
}

// Length of the UTF-8 sequence a lead byte starts; 1 for stray bytes, so invalid input is
// still cut somewhere rather than looping.
std::size_t utf8_length(unsigned char lead) {
  if (lead >= 0xf0 && lead < 0xf8) return 4;
  if (lead >= 0xe0) return lead < 0xf0 ? 3 : 1;
  if (lead >= 0xc0) return 2;
  return 1;
}

// Encoded-words of at most 75 characters, never splitting a character between two words
// (RFC 2047 section 5 requires each word to decode on its own), joined by folding whitespace.
std::string encoded_words(std::string_view utf8) {
  std::string out;
  std::size_t i = 0;
  while (i < utf8.size()) {
    std::size_t end = i;
    while (end < utf8.size()) {
      std::size_t next = end + utf8_length(static_cast<unsigned char>(utf8[end]));
      if (next - i > kEncodedChunk) break;
      end = next;
    }
    if (end == i) end = std::min(utf8.size(), i + kEncodedChunk);  // unreachable for UTF-8
    if (!out.empty()) out += "\r\n ";
    out += "=?UTF-8?B?";
    out += base64(utf8.substr(i, end - i), false);
    out += "?=";
    i = end;
  }
  return out;
}

}  // namespace

void require_header_safe(std::string_view value, const std::string& where) {
  for (unsigned char c : value) {
    if (c == '\r' || c == '\n') {
      throw InputError(where, "a header value may not contain a line break");
    }
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      throw InputError(where, "a header value may not contain control characters");
    }
  }
}

void require_address(std::string_view address, const std::string& where) {
  auto at = address.find('@');
  if (address.empty() || at == 0 || at == std::string_view::npos || at + 1 == address.size() ||
      address.find('@', at + 1) != std::string_view::npos) {
    throw InputError(where, "'" + std::string(address) + "' is not an email address");
  }
  for (unsigned char c : address) {
    if (c <= 0x20 || c == 0x7f ||
        std::string_view("<>,;:\"()[]\\").find(static_cast<char>(c)) != std::string_view::npos) {
      throw InputError(where, "'" + std::string(address) +
                                  "' is not a plain email address (no names, spaces or brackets)");
    }
  }
}

std::string date(SysTime t) {
  using namespace std::chrono;
  static constexpr std::array<const char*, 7> kDays{"Sun", "Mon", "Tue", "Wed",
                                                    "Thu", "Fri", "Sat"};
  static constexpr std::array<const char*, 12> kMonths{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  auto day = floor<days>(t);
  year_month_day ymd{day};
  hh_mm_ss hms{t - day};
  std::array<char, 64> buf{};
  std::snprintf(buf.data(), buf.size(), "%s, %02u %s %04d %02ld:%02ld:%02ld +0000",
                kDays[weekday{day}.c_encoding()], static_cast<unsigned>(ymd.day()),
                kMonths[static_cast<unsigned>(ymd.month()) - 1], static_cast<int>(ymd.year()),
                static_cast<long>(hms.hours().count()), static_cast<long>(hms.minutes().count()),
                static_cast<long>(hms.seconds().count()));
  return buf.data();
}

std::string unstructured(std::string_view name, std::string_view value) {
  // "=?" in plain text could be read back as an encoded-word, so such text is encoded too.
  // So is a word too long to fit a folded line, which only encoded-words can split.
  std::size_t longest_word = 0;
  for (std::size_t i = 0; i < value.size();) {
    std::size_t next = std::min(value.find(' ', i + 1), value.size());
    longest_word = std::max(longest_word, next - i);
    i = next;
  }
  if (!is_printable_ascii(value) || value.find("=?") != std::string_view::npos ||
      name.size() + 2 + longest_word > kHeaderLine) {
    return encoded_words(value);
  }
  // Fold before a space whenever the next word would run past 78 characters; unfolding
  // (removing the CRLF) gives back the value unchanged.
  std::string out;
  std::size_t line = name.size() + 2;
  std::size_t i = 0;
  while (i < value.size()) {
    std::size_t next = value.find(' ', i + 1);
    if (next == std::string_view::npos) next = value.size();
    std::string_view word = value.substr(i, next - i);
    if (i > 0 && line + word.size() > kHeaderLine) {
      out += "\r\n";
      line = 0;
    }
    out += word;
    line += word.size();
    i = next;
  }
  return out;
}

std::string mailbox(std::string_view display_name, std::string_view address) {
  std::string out;
  if (display_name.empty()) {
    out.append(address);
    return out;
  }
  // "=?" would be read back as the start of an encoded-word, as in unstructured().
  bool atom_phrase = display_name.front() != ' ' && display_name.back() != ' ' &&
                     display_name.find("  ") == std::string_view::npos &&
                     display_name.find("=?") == std::string_view::npos;
  for (unsigned char c : display_name) {
    if (c != ' ' && !is_atext(c)) atom_phrase = false;
  }
  if (atom_phrase) {
    out.append(display_name);
  } else if (is_printable_ascii(display_name) &&
             display_name.find("=?") == std::string_view::npos) {
    out += '"';
    for (char c : display_name) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  // A name that would not fit one line goes out as encoded-words, one per folded line: a
  // quoted-string cannot be folded inside, and relays refuse lines past 998 characters.
  if (out.empty() || kMailboxPrefix + out.size() + address.size() + 3 > kHeaderLine) {
    out = encoded_words(display_name);
  }
  const std::size_t newline = out.rfind('\n');
  const std::size_t last_line =
      newline == std::string::npos ? kMailboxPrefix + out.size() : out.size() - newline - 1;
  out += last_line + address.size() + 3 > kHeaderLine ? "\r\n <" : " <";
  out.append(address);
  out += '>';
  return out;
}

void append_quoted_printable(std::string& out, std::string_view text) {
  out.reserve(out.size() + text.size() + text.size() / 8 + 16);
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t eol = text.find('\n', pos);
    std::size_t next = eol == std::string_view::npos ? text.size() : eol + 1;
    std::string_view line =
        text.substr(pos, (eol == std::string_view::npos ? text.size() : eol) - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

    // Literal when safe: printable ASCII but '=', and spaces not at the end of a line
    // (transports strip trailing whitespace). A '.' opening a line is encoded so that no
    // relay ever mistakes it for the SMTP end-of-data marker.
    auto safe = [&line](std::size_t i) {
      const char c = line[i];
      return kQpLiteral[static_cast<unsigned char>(c)] &&
             ((c != ' ' && c != '\t') || i + 1 < line.size());
    };
    std::size_t used = 0;
    std::size_t i = 0;
    while (i < line.size()) {
      bool literal = safe(i) && !(line[i] == '.' && used == 0);
      if (used + (literal ? 1 : 3) > kQpLine) {
        out += "=\r\n";
        used = 0;
        continue;  // the '.' rule depends on where the line starts
      }
      if (!literal) {
        auto c = static_cast<unsigned char>(line[i]);
        out += '=';
        out += kHex[c >> 4];
        out += kHex[c & 0x0f];
        used += 3;
        ++i;
        continue;
      }
      // Copy the whole run of safe bytes that fits on this output line at once: a table
      // lookup per byte (every message's HTML and text pass through here), then a space or
      // tab that ends the line is left out of the run, to be encoded.
      std::size_t end = i + 1;
      const std::size_t limit = std::min(line.size(), i + (kQpLine - used));
      while (end < limit && kQpLiteral[static_cast<unsigned char>(line[end])]) ++end;
      if (end == line.size() && end - 1 > i && (line[end - 1] == ' ' || line[end - 1] == '\t'))
        --end;
      out.append(line.substr(i, end - i));
      used += end - i;
      i = end;
    }
    out += "\r\n";
    pos = next;
  }
}

std::string base64(std::string_view bytes, bool url) {
  constexpr std::string_view kStd =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  constexpr std::string_view kUrl =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const std::string_view alphabet = url ? kUrl : kStd;
  // Written through a pointer into a string sized up front: every link token of every message
  // is two of these, and appending a character at a time cost twice as much.
  std::string out((bytes.size() + 2) / 3 * 4, '\0');
  char* o = out.data();
  const auto byte = [&bytes](std::size_t at) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[at]));
  };
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t n = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
    *o++ = alphabet[n >> 18 & 63];
    *o++ = alphabet[n >> 12 & 63];
    *o++ = alphabet[n >> 6 & 63];
    *o++ = alphabet[n & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    std::uint32_t n = byte(i) << 16;
    if (rest == 2) n |= byte(i + 1) << 8;
    *o++ = alphabet[n >> 18 & 63];
    *o++ = alphabet[n >> 12 & 63];
    if (rest == 2) *o++ = alphabet[n >> 6 & 63];
    if (!url) {
      *o++ = '=';
      if (rest == 1) *o++ = '=';
    }
  }
  out.resize(static_cast<std::size_t>(o - out.data()));
  return out;
}

std::string sha256_hex(std::string_view data) {
  // EVP_Digest(..., EVP_sha256()) fetches the algorithm and makes a context on every call,
  // about half of its cost for inputs this short; it runs for every link of every message
  // (link digests), so the algorithm is fetched once and each thread keeps a context.
  static EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  struct Context {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~Context() { EVP_MD_CTX_free(ctx); }
  };
  thread_local Context context;
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  if (sha256 == nullptr || context.ctx == nullptr ||
      EVP_DigestInit_ex2(context.ctx, sha256, nullptr) != 1 ||
      EVP_DigestUpdate(context.ctx, data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(context.ctx, md.data(), &len) != 1) {
    throw std::runtime_error("SHA-256 failed");
  }
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out += "0123456789abcdef"[md[i] >> 4];
    out += "0123456789abcdef"[md[i] & 0x0f];
  }
  return out;
}

}  // namespace channeld::render::mime
