#include "deliver/smtp_protocol.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <stdexcept>

namespace channeld::deliver::smtp {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// Splits "KEYWORD params" at the first space.
std::pair<std::string_view, std::string_view> keyword(std::string_view line) {
  auto space = line.find(' ');
  if (space == std::string_view::npos) return {line, {}};
  return {line.substr(0, space), line.substr(space + 1)};
}

}  // namespace

Endpoint parse_url(std::string_view url) {
  Endpoint e;
  if (url.starts_with("smtps://")) {
    e.implicit_tls = true;
    url.remove_prefix(8);
  } else if (url.starts_with("smtp://")) {
    url.remove_prefix(7);
  } else {
    throw std::invalid_argument("not an smtp:// or smtps:// URL");
  }
  std::string_view authority = url.substr(0, url.find_first_of("/?#"));
  if (authority.size() < url.size() && url[authority.size()] == '/') {
    std::string_view path = url.substr(authority.size() + 1);
    e.helo_domain = path.substr(0, path.find_first_of("?#"));
  }
  std::string_view port;
  if (authority.starts_with("[")) {
    auto close = authority.find(']');
    if (close == std::string_view::npos) throw std::invalid_argument("unclosed '['");
    e.host = authority.substr(1, close - 1);
    if (authority.size() > close + 1 && authority[close + 1] == ':')
      port = authority.substr(close + 2);
  } else {
    auto colon = authority.rfind(':');
    e.host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (e.host.empty()) throw std::invalid_argument("no host");
  e.port = port.empty() ? (e.implicit_tls ? "465" : "25") : std::string(port);
  return e;
}

std::optional<Reply> parse_reply(std::string_view input, std::size_t& consumed) {
  Reply reply;
  std::size_t at = 0;
  for (;;) {
    auto end = input.find('\n', at);
    if (end == std::string_view::npos) return std::nullopt;
    std::string_view line = input.substr(at, end - at);
    at = end + 1;
    if (line.ends_with('\r')) line.remove_suffix(1);
    int code = 0;
    auto [ptr, ec] =
        std::from_chars(line.data(), line.data() + std::min<std::size_t>(3, line.size()), code);
    const bool well_formed = line.size() >= 3 && ec == std::errc() && ptr == line.data() + 3 &&
                             code >= 200 && code <= 599 &&
                             (line.size() == 3 || line[3] == ' ' || line[3] == '-');
    if (!well_formed || (reply.code != 0 && code != reply.code)) {
      consumed = at;
      return Reply{0, std::string(line), std::string(line)};
    }
    if (reply.code != 0) reply.text += '\n';
    reply.code = code;
    reply.text.append(line.size() > 4 ? line.substr(4) : std::string_view());
    reply.last_line.assign(line);
    if (line.size() == 3 || line[3] == ' ') {
      consumed = at;
      return reply;
    }
  }
}

Extensions parse_ehlo(const Reply& reply) {
  Extensions x;
  // The first line is the server's greeting, not an extension.
  std::string_view text = reply.text;
  auto greeting_end = text.find('\n');
  text =
      greeting_end == std::string_view::npos ? std::string_view() : text.substr(greeting_end + 1);
  while (!text.empty()) {
    auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    auto [word, params] = keyword(line);
    if (iequals(word, "PIPELINING")) {
      x.pipelining = true;
    } else if (iequals(word, "STARTTLS")) {
      x.starttls = true;
    } else if (iequals(word, "8BITMIME")) {
      x.eight_bit_mime = true;
    } else if (iequals(word, "SMTPUTF8")) {
      x.smtputf8 = true;
    } else if (iequals(word, "SIZE")) {
      std::size_t limit = 0;
      std::from_chars(params.data(), params.data() + params.size(), limit);
      x.size_limit = limit;
    } else if (iequals(word, "AUTH")) {
      while (!params.empty()) {
        auto [mechanism, rest] = keyword(params);
        if (iequals(mechanism, "PLAIN")) x.auth_plain = true;
        if (iequals(mechanism, "LOGIN")) x.auth_login = true;
        params = rest;
      }
    }
  }
  return x;
}

std::string dot_stuff(std::string_view mime) {
  std::string out;
  out.reserve(mime.size() + mime.size() / 64 + 5);
  std::size_t at = 0;
  while (at < mime.size()) {
    if (mime[at] == '.') out += '.';
    auto nl = mime.find('\n', at);
    std::size_t end = nl == std::string_view::npos ? mime.size() : nl + 1;
    out.append(mime.substr(at, end - at));
    at = end;
  }
  if (!out.ends_with("\r\n")) {
    if (out.ends_with('\r')) out.pop_back();
    out += "\r\n";
  }
  out += ".\r\n";
  return out;
}

bool has_eight_bit(std::string_view text) {
  return std::any_of(text.begin(), text.end(),
                     [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

std::string mail_command(std::string_view from, std::size_t size, bool eight_bit,
                         bool utf8_addresses, const Extensions& server) {
  std::string command = "MAIL FROM:<";
  command.append(from).append(">");
  if (server.size_limit) command.append(" SIZE=").append(std::to_string(size));
  if (eight_bit && server.eight_bit_mime) command.append(" BODY=8BITMIME");
  if (utf8_addresses && server.smtputf8) command.append(" SMTPUTF8");
  command.append("\r\n");
  return command;
}

std::string_view to_string(Stage stage) {
  switch (stage) {
    case Stage::connect:
      return "connect";
    case Stage::greeting:
      return "greeting";
    case Stage::hello:
      return "EHLO";
    case Stage::starttls:
      return "STARTTLS";
    case Stage::auth:
      return "AUTH";
    case Stage::mail:
      return "MAIL FROM";
    case Stage::rcpt:
      return "RCPT TO";
    case Stage::data:
      return "DATA";
    case Stage::message:
      return "end of data";
  }
  return "unknown";
}

Verdict verdict_for(Stage stage, int code) {
  // A relay refusing our credentials (535) or demanding them (530, at any stage) is the
  // operator's to fix; failing the messages would lose them for a configuration mistake.
  if (code == 530 || code == 535) return Verdict::retry;
  if (code >= 500 && code < 600) {
    if (stage == Stage::rcpt) return code == 552 ? Verdict::retry : Verdict::hard_bounce;
    // Before a transaction (greeting, EHLO, STARTTLS, AUTH) a 5xx is about the relay or our
    // credentials, never this message: 530/535 and friends wait for the operator.
    if (stage != Stage::mail && stage != Stage::data && stage != Stage::message)
      return Verdict::retry;
    return Verdict::failed;
  }
  return Verdict::retry;
}

}  // namespace channeld::deliver::smtp
