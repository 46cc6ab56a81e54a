// deliver/smtp_protocol: the parts of an SMTP client conversation that are decisions, not I/O
// (RFC 5321, with PIPELINING from RFC 2920, SIZE from 1870, 8BITMIME from 6152, SMTPUTF8 from
// 6531, AUTH PLAIN and LOGIN from 4954). Pure functions; the Asio client in asio_smtp.cpp does
// the reading and writing.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "deliver/verdict.hpp"

namespace channeld::deliver::smtp {

// Where smtp.url points. The URL was checked when the configuration was loaded.
struct Endpoint {
  std::string host;           // without the brackets of an IPv6 literal
  std::string port;           // "25" or "465" when the URL names none
  bool implicit_tls = false;  // smtps://: TLS from the first byte
  std::string helo_domain;    // the URL's path ("smtp://relay/mkt.vendor.example"), or empty
};
// Throws std::invalid_argument for anything but smtp:// and smtps:// URLs with a host.
Endpoint parse_url(std::string_view url);

// One reply, possibly multi-line ("250-..." lines then "250 ..."). `text` holds every line's
// text after the code, joined by '\n'; `last_line` is the final line whole, for logs.
struct Reply {
  int code = 0;
  std::string text;
  std::string last_line;
};
// The first complete reply at the start of `input`, and how many bytes it took; nullopt while
// its last line has not arrived. A line that is not "ddd", "ddd " or "ddd-" followed by text
// is a protocol error, reported as code 0 (the caller drops the connection).
std::optional<Reply> parse_reply(std::string_view input, std::size_t& consumed);

// What a server's EHLO reply offers.
struct Extensions {
  bool pipelining = false;
  bool starttls = false;
  bool eight_bit_mime = false;
  bool smtputf8 = false;
  bool auth_plain = false;
  bool auth_login = false;
  std::optional<std::size_t> size_limit;  // SIZE's value; 0 means "no fixed limit"
};
Extensions parse_ehlo(const Reply& reply);

// The message body as DATA carries it: lines starting with '.' get another '.', the text ends
// with CRLF (added if missing) and the terminating ".\r\n" follows.
std::string dot_stuff(std::string_view mime);

// "MAIL FROM:<from> [SIZE=n] [BODY=8BITMIME] [SMTPUTF8]\r\n": parameters only when the server
// offered them and the message needs them. SIZE is the size the message will have on the wire.
std::string mail_command(std::string_view from, std::size_t size, bool eight_bit,
                         bool utf8_addresses, const Extensions& server);

// Whether `text` has a byte outside US-ASCII.
bool has_eight_bit(std::string_view text);

// Where in a transaction a reply came, which decides what a refusal means.
enum class Stage { connect, greeting, hello, starttls, auth, mail, rcpt, data, message };
std::string_view to_string(Stage stage);

// What a reply that is not the success `stage` waits for means for the message (code 0: no
// reply, the connection failed). Only a 5xx to RCPT TO is the address's fault, and 552 there is
// temporary (RFC 5321 4.5.3.1.10); a 5xx to MAIL, DATA or the message fails the message; a
// refused or missing login (535, 530) and a 5xx before the transaction are the operator's to
// fix and must not lose messages; any 4xx, and anything without a reply, is tried again.
Verdict verdict_for(Stage stage, int code);

}  // namespace channeld::deliver::smtp
