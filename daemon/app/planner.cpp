#include "app/planner.hpp"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "schedule/schedule.hpp"
#include "store/proofs.hpp"

namespace channeld::app {

namespace {
constexpr std::size_t kBatch = 2000;
}  // namespace

std::string Planner::audience_digest(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  auto size = fs::file_size(path, ec);
  if (ec) return {};
  auto mtime = fs::last_write_time(path, ec).time_since_epoch().count();
  auto& cached = digests_[path];
  if (std::get<2>(cached).empty() || std::get<0>(cached) != size || std::get<1>(cached) != mtime)
    cached = {size, mtime, catalog::contacts_digest(path)};
  return std::get<2>(cached);
}

Planner::Result Planner::run(const Snapshot& snapshot, SysTime now) {
  Result result;
  // A partner that opted out of a kit (by its proof's link or the API) gets nothing from it.
  const auto opted_out = store::Proofs(store_).opted_out_pairs();
  for (const auto& [kit_id, entry] : snapshot.kits) {
    if (!entry.live || entry.state == KitState::expired) continue;
    const Kit& kit = entry.live->kit;
    for (const auto& [partner_id, partner] : snapshot.partners.partners) {
      if (schedule::ineligibility(kit, partner)) continue;
      // Held back (its data does not fit this kit; load_snapshot logged why): plan nothing,
      // so fixing the data plans it with the audience as it then is.
      if (entry.live->held_partners.count(partner_id) != 0) continue;
      if (opted_out.count({kit_id, partner_id}) != 0) continue;
      const auto* zone = date::locate_zone(partner.timezone);
      if (schedule::expired(kit, zone, now)) continue;
      for (std::size_t i = 0; i < kit.steps.size(); ++i) {
        const Step& step = kit.steps[i];
        // A partner without a [webhook] has nowhere to receive a webhook step.
        if (step.channel == Channel::webhook && !partner.webhook) continue;
        const SysTime due = schedule::step_due(kit, i, zone);
        if (due > now) {
          if (!result.next_due || due < *result.next_due) result.next_due = due;
          result.kits_with_steps_ahead.insert(kit.id);
          continue;
        }
        const std::string digest = audience_digest(partner.contacts_file);
        if (digest.empty()) {
          spdlog::warn("partner {}: contacts file {} is missing; nothing queued", partner.id,
                       partner.contacts_file);
          continue;
        }
        if (store_.expanded(kit.id, step.id, partner.id, digest)) continue;
        try {
          expand(kit, step, partner, due, digest, snapshot.config.limits.contact_field_bytes,
                 result);
        } catch (const std::exception& e) {
          // Whatever one partner's contacts file does costs that partner only; the pass goes
          // on, and the next pass tries again (nothing was marked expanded).
          spdlog::error("kit {} step {}: partner {} not queued: {}", kit.id, step.id, partner.id,
                        e.what());
        }
      }
    }
  }
  return result;
}

void Planner::expand(const Kit& kit, const Step& step, const Partner& partner, SysTime due,
                     const std::string& audience_digest, std::size_t field_bytes, Result& result) {
  catalog::ContactReader reader(partner.contacts_file, field_bytes);
  std::vector<store::NewMessage> batch;
  batch.reserve(kBatch);
  std::size_t inserted = 0;
  auto flush = [&] {
    inserted += store_.enqueue(batch);
    batch.clear();
  };
  while (auto contact = reader.next()) {
    batch.push_back(store::NewMessage{kit.id, kit.version, step.id, partner.id, step.channel,
                                      contact->email, store::contact_json(*contact), due});
    if (batch.size() == kBatch) flush();
  }
  flush();
  for (const auto& problem : reader.problems()) spdlog::warn("{}", problem.text());
  store_.mark_expanded(kit.id, step.id, partner.id, audience_digest);
  result.enqueued += inserted;
  spdlog::info("kit {} v{} step {}: queued {} messages for partner {}", kit.id, kit.version,
               step.id, inserted, partner.id);
}

}  // namespace channeld::app
