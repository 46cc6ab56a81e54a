// api/pages: the small HTML pages the public link endpoints answer with (/u/, /p/, /c/ errors):
// one look, escaped text, and headers that keep them out of caches and other sites' frames.
#pragma once

#include <string>
#include <string_view>

#include "api/message.hpp"

namespace channeld::api {

std::string escape_html(std::string_view text);
// `body_html` is trusted markup; `title` is escaped.
Response page(int status, const std::string& title, const std::string& body_html);
// The answer to a link whose token does not verify.
Response not_found_page();

}  // namespace channeld::api
