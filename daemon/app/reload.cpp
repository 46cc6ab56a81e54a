#include "app/reload.hpp"

#include <functional>
#include <utility>

namespace channeld::app {

namespace {

using Same = std::function<bool(const Config&, const Config&)>;

template <typename Field>
Same same(Field field) {
  return [field](const Config& a, const Config& b) { return field(a) == field(b); };
}

const std::vector<std::pair<std::string, Same>>& keys() {
  static const std::vector<std::pair<std::string, Same>> all{
      {"database.url", same([](const Config& c) { return c.database_url; })},
      {"database.api_sessions", same([](const Config& c) { return c.database.api_sessions; })},
      {"database.api_session_wait",
       same([](const Config& c) { return c.database.api_session_wait; })},
      {"http.listen", same([](const Config& c) { return c.http.listen; })},
      {"http.public_listen", same([](const Config& c) { return c.http.public_listen; })},
      {"paths.campaigns", same([](const Config& c) { return c.paths.campaigns; })},
      {"paths.partners", same([](const Config& c) { return c.paths.partners; })},
      {"paths.outbox", same([](const Config& c) { return c.paths.outbox; })},
      {"smtp.url", same([](const Config& c) { return c.smtp.url; })},
      {"smtp.username", same([](const Config& c) { return c.smtp.username; })},
      {"smtp.password_file", same([](const Config& c) { return c.smtp.password_file; })},
      {"smtp.max_connections", same([](const Config& c) { return c.smtp.max_connections; })},
      {"smtp.timeout", same([](const Config& c) { return c.smtp.timeout; })},
      {"webhooks.allow", same([](const Config& c) { return c.webhooks.allow; })},
      {"limits.messages_per_second",
       same([](const Config& c) { return c.limits.messages_per_second; })},
      {"limits.per_partner_per_second",
       same([](const Config& c) { return c.limits.per_partner_per_second; })},
      {"limits.per_domain_per_second",
       same([](const Config& c) { return c.limits.per_domain_per_second; })},
      {"delivery.batch_size", same([](const Config& c) { return c.delivery.batch_size; })},
      {"delivery.lease", same([](const Config& c) { return c.delivery.lease; })},
      {"delivery.max_attempts", same([](const Config& c) { return c.delivery.max_attempts; })},
      {"delivery.backoff_base", same([](const Config& c) { return c.delivery.backoff_base; })},
      {"delivery.backoff_max", same([](const Config& c) { return c.delivery.backoff_max; })},
  };
  return all;
}

}  // namespace

const std::vector<std::string>& restart_only_keys() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& [name, unused] : keys()) out.push_back(name);
    return out;
  }();
  return names;
}

std::vector<std::string> restart_only_changes(const Config& before, const Config& after) {
  std::vector<std::string> changed;
  for (const auto& [name, equal] : keys())
    if (!equal(before, after)) changed.push_back(name);
  return changed;
}

}  // namespace channeld::app
