#include "app/snapshot.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "schedule/schedule.hpp"

namespace channeld::app {

std::string_view to_string(KitState s) {
  switch (s) {
    case KitState::live: return "live";
    case KitState::refused: return "refused";
    case KitState::expired: return "expired";
    case KitState::done: return "done";
  }
  return "unknown";
}

std::string read_secret(const std::string& path, const std::string& key) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(key, "cannot read secret file " + path);
  std::ostringstream s;
  s << in.rdbuf();
  std::string secret = s.str();
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.empty()) throw InputError(key, "secret file " + path + " is empty");
  return secret;
}

namespace {

// A kit is expired once every partner it could reach is past its expiry day in that partner's
// zone; with no eligible partner, UTC decides.
bool expired_everywhere(const Kit& kit, const catalog::PartnerSet& partners, SysTime now) {
  bool any_partner = false;
  for (const auto& [id, partner] : partners.partners) {
    if (schedule::ineligibility(kit, partner)) continue;
    any_partner = true;
    if (!schedule::expired(kit, date::locate_zone(partner.timezone), now)) return false;
  }
  return any_partner || schedule::expired(kit, date::locate_zone("UTC"), now);
}

}  // namespace

std::shared_ptr<const Snapshot> load_snapshot(const Config& config, const Snapshot* previous,
                                              SysTime now, const std::string& stored_secret,
                                              std::vector<std::string>& problems) {
  namespace fs = std::filesystem;
  auto next = std::make_shared<Snapshot>();
  next->config = config;
  next->link_secret = config.http.link_secret_file.empty()
                          ? stored_secret
                          : read_secret(config.http.link_secret_file, "http.link_secret_file");

  next->partners = catalog::load_partners(config.paths.partners);
  for (const auto& p : next->partners.problems) problems.push_back(p.text());

  std::error_code ec;
  fs::directory_iterator folders(config.paths.campaigns, ec);
  if (ec) {
    problems.push_back(config.paths.campaigns + ": cannot list kits: " + ec.message());
    return next;
  }
  for (const auto& folder : folders) {
    if (!folder.is_directory()) continue;
    const std::string id = folder.path().filename().string();
    const KitEntry* before = nullptr;
    if (previous != nullptr) {
      auto it = previous->kits.find(id);
      if (it != previous->kits.end()) before = &it->second;
    }
    // A folder still being copied keeps whatever was live before; the watcher looks again when
    // the copy finishes.
    if (catalog::looks_incomplete(folder.path().string(), std::chrono::milliseconds(0))) {
      if (before != nullptr) next->kits.emplace(id, *before);
      continue;
    }
    KitEntry entry;
    try {
      auto valid = std::make_shared<const catalog::ValidKit>(
          catalog::validate_kit(folder.path().string(), config, next->partners, next->link_secret));
      entry.version_seen = valid->kit.version;
      entry.live = std::move(valid);
      entry.state = KitState::live;
    } catch (const InputError& e) {
      entry.error = e.what();
      problems.push_back(std::string("kit refused: ") + e.what());
      if (before != nullptr && before->live) {
        entry.live = before->live;  // the previous version keeps running
        entry.state = KitState::live;
      } else {
        entry.state = KitState::refused;
      }
    }
    if (entry.live && expired_everywhere(entry.live->kit, next->partners, now))
      entry.state = KitState::expired;
    next->kits.emplace(id, std::move(entry));
  }
  return next;
}

}  // namespace channeld::app
