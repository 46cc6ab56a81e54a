#include "app/snapshot.hpp"

#include <stdlib.h>

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

std::map<std::string, std::string> kit_files(const std::string& folder) {
  namespace fs = std::filesystem;
  std::map<std::string, std::string> files;
  std::error_code ec;
  fs::recursive_directory_iterator it(folder, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    if (it->path().filename().string().starts_with(".")) {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file()) continue;
    std::ifstream in(it->path(), std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    if (!in) throw InputError(it->path().string(), "cannot read");
    files.emplace(it->path().lexically_relative(folder).generic_string(), bytes.str());
  }
  if (ec) throw InputError(folder, "cannot list the kit folder: " + ec.message());
  return files;
}

namespace {

// A scratch folder, removed with its contents when it goes out of scope.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "channeld-last-good-XXXXXX");
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

// The last good version of a kit, validated again from a scratch copy of its files (they must
// still pass against today's partners and shared templates). Null if there is none or it no
// longer passes.
std::shared_ptr<const catalog::ValidKit> last_good_kit(const std::string& id, const Config& config,
                                                       const Snapshot& next,
                                                       const LastGood* last_good,
                                                       std::vector<std::string>& problems) {
  if (last_good == nullptr) return nullptr;
  auto it = last_good->kit_files.find(id);
  if (it == last_good->kit_files.end()) return nullptr;
  try {
    ScratchDir scratch;
    const auto folder = scratch.path() / id;
    for (const auto& [relative, bytes] : it->second) {
      const auto file = (folder / relative).lexically_normal();
      // Paths came from our own listing, but they are read back from a database.
      if (!path_within(file.string(), folder.string())) continue;
      write_bytes(file, bytes);
    }
    auto valid = std::make_shared<catalog::ValidKit>(
        catalog::validate_kit(folder.string(), config, next.partners, next.link_secret));
    // Messages and logs name the real folder, not the scratch copy.
    valid->kit.folder = (std::filesystem::path(config.paths.campaigns) / id).string();
    return valid;
  } catch (const std::exception& e) {
    problems.push_back("kit " + id + ": the last good version no longer loads: " + e.what());
    return nullptr;
  }
}

void carry_broken_partners(const Config& config, const Snapshot* previous,
                           const LastGood* last_good, catalog::PartnerSet& partners,
                           std::vector<std::string>& problems) {
  for (const auto& [id, why] : partners.broken) {
    if (previous != nullptr) {
      if (const Partner* before = previous->partner(id)) {
        partners.partners.emplace(id, *before);
        problems.push_back("partner " + id + ": keeping the version loaded before until " +
                           "the file is fixed");
        continue;
      }
    }
    if (last_good == nullptr) continue;
    auto it = last_good->partner_files.find(id);
    if (it == last_good->partner_files.end()) continue;
    try {
      ScratchDir scratch;
      const auto file = scratch.path() / (id + ".toml");
      write_bytes(file, it->second);
      Partner partner = catalog::load_partner_file(file.string(), config.paths.partners);
      partner.source_file =
          (std::filesystem::path(config.paths.partners) / (id + ".toml")).string();
      partners.partners.emplace(id, std::move(partner));
      problems.push_back("partner " + id + ": keeping the last good version until the file " +
                         "is fixed");
    } catch (const std::exception& e) {
      problems.push_back("partner " + id + ": the last good version no longer loads: " + e.what());
    }
  }
}

void read_suppressions(const Config& config, Snapshot& next, std::vector<std::string>& problems) {
  const std::string path = config.paths.partners + "/suppressions.csv";
  std::vector<catalog::Problem> rows_skipped;
  try {
    next.suppressions = catalog::load_suppressions(path, rows_skipped);
  } catch (const std::exception& e) {
    next.suppressions_error =
        std::string(e.what()) + ": no new message goes out until the suppression file is fixed";
    problems.push_back(next.suppressions_error);
  }
  for (const auto& p : rows_skipped) problems.push_back(p.text());
}

}  // namespace

std::shared_ptr<const Snapshot> load_snapshot(const Config& config, const Snapshot* previous,
                                              SysTime now, const std::string& stored_secret,
                                              std::vector<std::string>& problems,
                                              const LastGood* last_good) {
  namespace fs = std::filesystem;
  auto next = std::make_shared<Snapshot>();
  next->config = config;
  next->link_secret = config.http.link_secret_file.empty()
                          ? stored_secret
                          : read_secret(config.http.link_secret_file, "http.link_secret_file");

  next->partners = catalog::load_partners(config.paths.partners);
  for (const auto& p : next->partners.problems) problems.push_back(p.text());
  carry_broken_partners(config, previous, last_good, next->partners, problems);
  read_suppressions(config, *next, problems);

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
      for (const auto& [partner, why] : valid->held_partners) {
        std::string held = "partner " + partner + " held back: " + why;
        problems.push_back("kit " + id + ": " + held);
        entry.error += (entry.error.empty() ? "" : "\n") + held;
      }
      entry.live = std::move(valid);
      entry.state = KitState::live;
      entry.folder_valid = true;
    } catch (const InputError& e) {
      entry.error = e.what();
      problems.push_back(std::string("kit refused: ") + e.what());
      if (before != nullptr && before->live) {
        entry.live = before->live;  // the previous version keeps running
      } else {
        entry.live = last_good_kit(id, config, *next, last_good, problems);
      }
      entry.state = entry.live ? KitState::live : KitState::refused;
    }
    if (entry.live && expired_everywhere(entry.live->kit, next->partners, now))
      entry.state = KitState::expired;
    next->kits.emplace(id, std::move(entry));
  }
  return next;
}

}  // namespace channeld::app
