// api/pages: the small HTML pages the public link endpoints answer with (/u/, /p/, /c/ errors):
// one look, escaped text, and headers that keep them out of caches and other sites' frames.
#pragma once

#include <string>
#include <string_view>

#include "api/message.hpp"
#include "render/render.hpp"

namespace channeld::api {

// Escaping is render's, so pages and mail escape alike.
using render::escape_html;
// `body_html` is trusted markup; `title` is escaped.
Response page(int status, const std::string& title, const std::string& body_html);
// The answer to a link whose token does not verify.
Response not_found_page();

}  // namespace channeld::api
