// Header encoding and folding: for any one-line value, the From/To mailbox and the Subject
// keep every line within 78 characters and every encoded-word within 75, and no text outside
// an encoded-word looks like the start of one.
#include <algorithm>
#include <cstdlib>

#include "fuzz_support.hpp"
#include "render/mime.hpp"

namespace {

void check_lines(const std::string& header) {
  std::size_t start = 0;
  while (start <= header.size()) {
    std::size_t end = std::min(header.find("\r\n", start), header.size());
    // A bare CR or LF inside a line would end the header early.
    for (std::size_t i = start; i < end; ++i)
      if (header[i] == '\r' || header[i] == '\n') std::abort();
    if (end - start > 78) std::abort();
    if (end == header.size()) break;
    if (end + 2 >= header.size() || header[end + 2] != ' ') std::abort();  // folded, not ended
    start = end + 2;
  }
  // Outside the encoded-words this code writes, no "=?" may appear: a reader would try to
  // decode it as the start of one.
  std::size_t plain = 0;
  for (std::size_t at = header.find("=?UTF-8?B?"); at != std::string::npos;
       at = header.find("=?UTF-8?B?", plain)) {
    if (header.substr(plain, at - plain).find("=?") != std::string::npos) std::abort();
    std::size_t close = header.find("?=", at + 10);
    if (close == std::string::npos || close + 2 - at > 75) std::abort();
    plain = close + 2;
  }
  if (header.find("=?", plain) != std::string::npos) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace channeld;
  const std::string value(fuzz::as_text(data, size));
  try {
    render::mime::require_header_safe(value, "fuzz");
  } catch (const InputError&) {
    return 0;
  }
  check_lines("Reply-To: " + render::mime::mailbox(value, "partners@mkt.vendor.example"));
  check_lines("Subject: " + render::mime::unstructured("Subject", value));
  return 0;
}
