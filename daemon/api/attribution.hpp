// api/attribution: pure decisions about engagement reports, unit-tested without a server.
//   - which message a lead is credited to (last touch within a window) and whether the
//     partner's campaign sourced it or only influenced it;
//   - whether an open or click came from a privacy proxy or link scanner rather than a person.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/model.hpp"
#include "store/engagement.hpp"

namespace channeld::api {

struct Attribution {
  std::optional<store::Touch> touch;  // nullopt: unattributed
  std::string origin;                 // partner_sourced | influenced | unattributed
};

// Last touch: of the partner's messages to the lead's contact sent within `window` before
// `reported_at` (inclusive), the newest one; when the report names a message (its Message-ID)
// and that message is in the window, that one. A touch whose message was clicked by a person
// made the lead `partner_sourced` (the partner's campaign brought the contact in); one that
// was only received `influenced` it. No touch in the window: `unattributed`.
Attribution attribute_lead(const std::vector<store::Touch>& touches, SysTime reported_at,
                           std::chrono::seconds window,
                           const std::optional<std::string>& message_id);

// True for user agents of mail privacy proxies and link scanners that fetch every image or
// link of a message whether or not a person looked: Apple Mail Privacy Protection, Gmail's
// and Yahoo's image proxies, security gateways (Proofpoint, Mimecast, Barracuda, Microsoft
// Safe Links), generic HTTP libraries and bots, and requests with no user agent at all.
bool is_machine_fetch(std::string_view user_agent);

}  // namespace channeld::api
