// Internal to render: the RFC 5322 / 2045 / 2047 encodings a message is assembled from. Pure
// functions of their arguments; no state.
#pragma once

#include <string>
#include <string_view>

#include "model/model.hpp"

namespace channeld::render::mime {

// Throws InputError(where, ...) if `value` holds CR, LF or another control character other
// than tab: a header value that could end the header block or start a new header.
void require_header_safe(std::string_view value, const std::string& where);

// Throws InputError(where, ...) unless `address` looks like a bare addr-spec (local@domain with
// no spaces, angle brackets, commas or quotes): it goes between <> in From, To and Reply-To.
void require_address(std::string_view address, const std::string& where);

// "Sun, 01 Nov 2026 09:00:00 +0000" (RFC 5322 section 3.3, always UTC).
std::string date(SysTime t);

// An unstructured header value (Subject) ready to follow "Name: ": plain ASCII as is, folded
// at spaces; anything else as UTF-8 B encoded-words of at most 75 characters, one per line.
std::string unstructured(std::string_view name, std::string_view value);

// A mailbox: `address` alone when `display_name` is empty, otherwise the name as an atom
// phrase or quoted-string when the whole header fits one 78-character line, else as folded
// encoded-words (so a 3,000-character name still sends); then <address>, on a line of its own
// if it would not fit.
std::string mailbox(std::string_view display_name, std::string_view address);

// Appends `text` as quoted-printable: line ends become CRLF, no line exceeds 76 characters,
// and the result ends with CRLF.
void append_quoted_printable(std::string& out, std::string_view text);

// RFC 4648 base64: the standard alphabet with padding, or (url) the URL-safe alphabet without.
std::string base64(std::string_view bytes, bool url);

// Lower-case hex of SHA-256(data).
std::string sha256_hex(std::string_view data);

}  // namespace channeld::render::mime
