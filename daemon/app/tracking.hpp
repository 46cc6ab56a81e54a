// app/tracking: what the engagement endpoints need from the running daemon's snapshot. Runs
// on HTTP worker threads; reads the published snapshot only.
#pragma once

#include <optional>
#include <string>

#include "app/snapshot.hpp"
#include "render/render.hpp"
#include "store/engagement.hpp"

namespace channeld::app {

// The URL behind a click token: the message is rendered again with its kit as live now, and
// the link at the token's position is used if its digest matches what was sent; otherwise the
// first link with that digest (a newer kit version that moved the link). nullopt when the kit,
// partner or step is gone, or the kit no longer has that link. Never a URL from the request.
std::optional<std::string> tracked_link(const Snapshot& snapshot, const store::MessageRef& message,
                                        const render::ClickTarget& target);

}  // namespace channeld::app
