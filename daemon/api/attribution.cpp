#include "api/attribution.hpp"

#include <algorithm>
#include <array>
#include <cctype>

namespace channeld::api {

Attribution attribute_lead(const std::vector<store::Touch>& touches, SysTime reported_at,
                           std::chrono::seconds window,
                           const std::optional<std::string>& message_id) {
  const store::Touch* chosen = nullptr;
  for (const auto& touch : touches) {
    if (touch.sent_at > reported_at || touch.sent_at < reported_at - window) continue;
    if (message_id && !message_id->empty() && touch.message_id == *message_id) {
      chosen = &touch;
      break;
    }
    if (chosen == nullptr || touch.sent_at > chosen->sent_at ||
        (touch.sent_at == chosen->sent_at && touch.outbox_id > chosen->outbox_id)) {
      chosen = &touch;
    }
  }
  if (chosen == nullptr) return Attribution{std::nullopt, "unattributed"};
  return Attribution{*chosen, chosen->clicked ? "partner_sourced" : "influenced"};
}

bool is_machine_fetch(std::string_view user_agent) {
  std::string ua(user_agent);
  std::transform(ua.begin(), ua.end(), ua.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  while (!ua.empty() && ua.back() == ' ') ua.pop_back();
  if (ua.empty()) return true;
  // Apple Mail Privacy Protection fetches with a bare "Mozilla/5.0" or with Apple Mail's WebKit
  // string and nothing after it (a browser adds "Version/..." and "Safari/...").
  if (ua == "mozilla/5.0") return true;
  if (ua.rfind("mozilla/5.0 (macintosh; intel mac os x", 0) == 0 &&
      ua.find("applewebkit/") != std::string::npos && ua.find("safari") == std::string::npos &&
      ua.find("chrome") == std::string::npos && ua.find("firefox") == std::string::npos &&
      ua.ends_with("(khtml, like gecko)"))
    return true;
  static constexpr std::array<std::string_view, 22> kMarkers = {
      "googleimageproxy",
      "ggpht.com",
      "yahoomailproxy",
      "yahoo! slurp",
      "proofpoint",
      "mimecast",
      "barracuda",
      "safelinks",
      "symantec",
      "trendmicro",
      "bot",
      "crawler",
      "spider",
      "preview",
      "python-",
      "curl/",
      "wget/",
      "go-http-client",
      "java/",
      "headlesschrome",
      "okhttp",
      "microsoft office existence discovery"};
  return std::any_of(kMarkers.begin(), kMarkers.end(),
                     [&](std::string_view m) { return ua.find(m) != std::string::npos; });
}

}  // namespace channeld::api
