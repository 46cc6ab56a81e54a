#include "deliver/verdict.hpp"

#include <curl/curl.h>

namespace channeld::deliver {

// What libcurl 7.88 reports for each refusal, measured against tests/support/smtp_server.py
// (tests/integration/smtp_test.cpp pins these, so a libcurl that changes them fails the suite
// rather than suppressing addresses):
//   550 to RCPT TO                  CURLE_SEND_ERROR (55), "RCPT failed: 550", code 550
//   550 (or 552) to MAIL FROM       CURLE_SEND_ERROR (55), "MAIL failed: 550", code 550
//   451 or 554 after the data       CURLE_WEIRD_SERVER_REPLY (8), empty text, code 451/554
//   nothing listening               CURLE_COULDNT_CONNECT (7), code 0
// and from libcurl's smtp.c: a 5xx to the DATA command itself is CURLE_SEND_ERROR with
// "DATA failed: 5xx"; a 535 to AUTH is CURLE_LOGIN_DENIED (67).
// CURLINFO_RESPONSE_CODE is the last reply read, so a dropped connection after a 250 can show
// 250 with an error: only the CURLcode says whether the message was accepted.
Verdict classify_smtp(int curl_code, long server_code, std::string_view curl_error) {
  if (curl_code == CURLE_OK) return Verdict::sent;
  // A relay refusing our credentials (535) or demanding them (530) is the operator's to fix;
  // failing the messages would lose them for a configuration mistake.
  if (curl_code == CURLE_LOGIN_DENIED || server_code == 530) return Verdict::retry;
  if (server_code >= 400 && server_code < 500) return Verdict::retry;
  if (server_code >= 500 && server_code < 600) {
    bool at_recipient = curl_code == CURLE_SEND_ERROR && curl_error.starts_with("RCPT failed");
    if (!at_recipient) return Verdict::failed;
    // RFC 5321 4.5.3.1.10: a 552 to RCPT means too many recipients or a full mailbox, which
    // clients should treat as temporary.
    if (server_code == 552) return Verdict::retry;
    return Verdict::hard_bounce;
  }
  // No reply code: refused, timed out, DNS, TLS handshake, connection dropped. And anything
  // libcurl might report that is not listed here: a message is only given up on when a server
  // said so.
  return Verdict::retry;
}

std::string_view to_string(Verdict v) {
  switch (v) {
    case Verdict::sent: return "sent";
    case Verdict::retry: return "retry";
    case Verdict::failed: return "failed";
    case Verdict::hard_bounce: return "hard_bounce";
    case Verdict::unsent: return "unsent";
  }
  return "unknown";
}

}  // namespace channeld::deliver
