// deliver/verdict: what an SMTP exchange's result means for the message. Pure.
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

// curl_code is a CURLcode, server_code the last SMTP reply code (0 if none), curl_error the text
// libcurl left in CURLOPT_ERRORBUFFER. libcurl reports a refusal at MAIL FROM and one at RCPT TO
// with the same CURLcode; only the error text ("RCPT failed: 550") says which, so without it a
// 5xx is never taken for a bad address (see verdict.cpp).
Verdict classify_smtp(int curl_code, long server_code, std::string_view curl_error = {});

std::string_view to_string(Verdict v);

}  // namespace channeld::deliver
