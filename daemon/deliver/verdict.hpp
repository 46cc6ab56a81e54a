// deliver/verdict: what a send's result means for the message. Pure.
#pragma once

#include <string_view>

namespace channeld::deliver {

enum class Verdict {
  sent,         // 250 to DATA
  retry,        // 4xx, timeout, connection refused or dropped: try again later
  failed,       // 5xx not about the recipient (message too big, policy): do not retry
  hard_bounce,  // 5xx to RCPT TO (550/551/553...): the address is bad; suppress it
  unsent,       // never started: its deadline passed first. Not an attempt; no server spoke
};

// Which reply means which verdict: smtp::verdict_for in deliver/smtp_protocol.hpp.
std::string_view to_string(Verdict v);

}  // namespace channeld::deliver
