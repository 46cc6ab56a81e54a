#include "app/proofs.hpp"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "catalog/catalog.hpp"
#include "schedule/schedule.hpp"
#include "store/proofs.hpp"

namespace channeld::app {

namespace {

constexpr std::size_t kBatch = 2000;

std::string lower(std::string text) {
  for (char& c : text)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return text;
}

Decision settle(std::int64_t id, store::OutcomeKind kind, std::string detail,
                SysTime retry_at = {}) {
  Decision d;
  d.settle = make_outcome(id, kind, std::move(detail));
  d.settle->retry_at = retry_at;
  return d;
}

// The partner's contacts the step will reach: valid rows of its file, less suppressed ones.
std::int64_t audience(store::Proofs& proofs, const Partner& partner, std::size_t field_bytes,
                      std::vector<std::string>& columns) {
  catalog::ContactReader reader(partner.contacts_file, field_bytes);
  columns = reader.extra_columns();
  std::vector<std::string> batch;
  std::int64_t total = 0;
  auto flush = [&] {
    total += static_cast<std::int64_t>(batch.size()) -
             static_cast<std::int64_t>(proofs.suppressed_among(partner.id, batch));
    batch.clear();
  };
  while (auto contact = reader.next()) {
    batch.push_back(contact->email);
    if (batch.size() == kBatch) flush();
  }
  flush();
  return total;
}

}  // namespace

std::string proof_json(const ProofDetails& details) {
  return nlohmann::json{{"proof", {{"audience", details.audience}, {"columns", details.columns}}}}
      .dump();
}

ProofDetails proof_from_json(const std::string& text) {
  const auto j = nlohmann::json::parse(text).at("proof");
  ProofDetails d;
  d.audience = j.at("audience").get<std::int64_t>();
  d.columns = j.at("columns").get<std::vector<std::string>>();
  return d;
}

Contact sample_contact(const std::vector<std::string>& extra_columns) {
  Contact c;
  c.email = "sample.contact@example.com";
  c.first_name = "[first_name]";
  c.last_name = "[last_name]";
  c.company = "[company]";
  for (const auto& column : extra_columns) c.extra[column] = "[" + column + "]";
  return c;
}

std::string goes_out_text(SysTime at, const date::time_zone* zone) {
  return "on " + date::format("%A %d %B %Y at %H:%M %Z", date::make_zoned(zone, at)) + " (" +
         std::string(zone->name()) + ")";
}

ProofPlanner::Result ProofPlanner::run(const Snapshot& snapshot, SysTime now) {
  Result result;
  if (snapshot.config.proofs.lead_time <= std::chrono::minutes::zero()) return result;
  store::Proofs proofs(store_);
  const auto opted_out = proofs.opted_out_pairs();
  struct Due {
    const catalog::ValidKit* kit;
    const Partner* partner;
    std::string step_id;
    std::string key;
  };
  std::vector<Due> due;
  for (const auto& [kit_id, entry] : snapshot.kits) {
    if (!entry.live || entry.state == KitState::expired) continue;
    const Kit& kit = entry.live->kit;
    for (const auto& [partner_id, partner] : snapshot.partners.partners) {
      if (schedule::ineligibility(kit, partner)) continue;
      // Held back: nothing is planned for it, so nothing is announced either.
      if (entry.live->held_partners.count(partner_id) != 0) continue;
      if (opted_out.count({kit_id, partner_id}) != 0) continue;
      const auto* zone = date::locate_zone(partner.timezone);
      if (schedule::expired(kit, zone, now)) continue;
      const auto timing = schedule::proof_timing(kit, partner.webhook.has_value(), zone,
                                                 snapshot.config.proofs.lead_time, now);
      if (!timing) continue;
      if (partner.branding.reply_to.empty()) {
        if (warned_.emplace(kit_id, partner_id).second)
          spdlog::warn("kit {}: partner {} has no branding.reply_to, so it gets no proof", kit_id,
                       partner_id);
        continue;
      }
      if (timing->due > now) {
        if (!result.next_due || timing->due < *result.next_due) result.next_due = timing->due;
        continue;
      }
      const std::string& step_id = kit.steps[timing->email_step].id;
      due.push_back({entry.live.get(), &partner, step_id,
                     store::proof_key(kit.id, kit.version, step_id, partner_id)});
    }
  }
  if (due.empty()) return result;
  std::vector<std::string> keys;
  for (const auto& d : due) keys.push_back(d.key);
  const auto queued = proofs.existing(keys);
  for (const auto& d : due) {
    if (queued.count(d.key) != 0) continue;
    const Kit& kit = d.kit->kit;
    try {
      ProofDetails details;
      details.audience =
          audience(proofs, *d.partner, snapshot.config.limits.contact_field_bytes, details.columns);
      const std::size_t n = store_.enqueue(
          {store::NewMessage{kit.id, kit.version, d.step_id, d.partner->id, Channel::proof,
                             lower(d.partner->branding.reply_to), proof_json(details), now}});
      result.enqueued += n;
      if (n > 0)
        spdlog::info("kit {} v{} step {}: proof queued for partner {} ({} contacts)", kit.id,
                     kit.version, d.step_id, d.partner->id, details.audience);
    } catch (const std::exception& e) {
      // The next pass tries again: nothing was queued.
      spdlog::error("kit {}: proof for partner {} not queued: {}", kit.id, d.partner->id, e.what());
    }
  }
  return result;
}

std::vector<std::string> proof_warnings(const Snapshot& snapshot, SysTime now) {
  std::vector<std::string> out;
  if (snapshot.config.proofs.lead_time <= std::chrono::minutes::zero()) return out;
  for (const auto& [kit_id, entry] : snapshot.kits) {
    if (!entry.live || entry.state == KitState::expired) continue;
    const Kit& kit = entry.live->kit;
    for (const auto& [partner_id, partner] : snapshot.partners.partners) {
      if (!partner.branding.reply_to.empty() || schedule::ineligibility(kit, partner)) continue;
      const auto* zone = date::locate_zone(partner.timezone);
      if (!schedule::proof_timing(kit, partner.webhook.has_value(), zone,
                                  snapshot.config.proofs.lead_time, now))
        continue;
      out.push_back("kit " + kit_id + ": partner " + partner_id +
                    " has no branding.reply_to, so it gets no proof of the kit's first email");
    }
  }
  return out;
}

Decision decide_proof(const store::ClaimedMessage& row, const Snapshot& snapshot, SysTime now,
                      const RetryPolicy& policy) {
  using store::OutcomeKind;
  if (row.suppressed)
    return settle(row.id, OutcomeKind::suppressed, "the partner's reply_to address is suppressed");
  const SysTime look_again = now + snapshot.config.delivery.scan_interval;
  if (!snapshot.sending_held().empty())
    return settle(row.id, OutcomeKind::deferred, snapshot.sending_held(), look_again);
  const catalog::ValidKit* kit = snapshot.live_kit(row.kit_id);
  if (kit == nullptr) {
    if (snapshot.kits.count(row.kit_id) != 0)
      return settle(row.id, OutcomeKind::deferred, "kit is refused; waiting for a fix", look_again);
    return settle(row.id, OutcomeKind::expired, "kit is no longer live");
  }
  const Partner* partner = snapshot.partner(row.partner_id);
  if (partner == nullptr && snapshot.partners.broken.count(row.partner_id) != 0)
    return settle(row.id, OutcomeKind::deferred, "partner file is refused; waiting for a fix",
                  look_again);
  if (partner == nullptr || !partner->active)
    return settle(row.id, OutcomeKind::expired, "partner is removed or suspended");
  if (auto held = kit->held_partners.find(row.partner_id); held != kit->held_partners.end())
    return settle(row.id, OutcomeKind::deferred, "partner held back for this kit: " + held->second,
                  look_again);
  const auto* zone = date::locate_zone(partner->timezone);
  if (schedule::expired(kit->kit, zone, now))
    return settle(row.id, OutcomeKind::expired, "kit expired");
  if (row.kit_version != kit->kit.version)
    return settle(row.id, OutcomeKind::expired,
                  "superseded by kit version " + std::to_string(kit->kit.version) +
                      ", which has a proof of its own while its first step is ahead");
  const auto timing = schedule::proof_timing(kit->kit, partner->webhook.has_value(), zone,
                                             snapshot.config.proofs.lead_time, now);
  if (!timing)
    return settle(row.id, OutcomeKind::expired,
                  "no proof is due any more: the kit's first step is due, or proofs are off");
  const Step& step = kit->kit.steps[timing->email_step];
  if (step.id != row.step_id)
    return settle(row.id, OutcomeKind::expired,
                  "the kit's first email step is now '" + step.id + "'");
  if (row.attempts > policy.max_attempts)
    return settle(row.id, OutcomeKind::failed,
                  "gave up after " + std::to_string(policy.max_attempts) + " attempts");
  Decision d;
  d.send = Sendable{kit, &step, partner};
  return d;
}

render::RenderedEmail render_proof_row(const Sendable& send, const render::Context& ctx,
                                       const store::ClaimedMessage& row, SysTime now,
                                       std::chrono::minutes lead_time) {
  const ProofDetails details = proof_from_json(row.contact_json);
  const auto* zone = date::locate_zone(send.partner->timezone);
  const auto timing = schedule::proof_timing(send.kit->kit, send.partner->webhook.has_value(), zone,
                                             lead_time, now);
  if (!timing) throw std::logic_error("render_proof_row: no proof is due");
  render::ProofNotice notice;
  notice.recipient = row.email;
  notice.goes_out = goes_out_text(timing->email_at, zone);
  notice.audience = details.audience;
  return render::render_proof(*send.kit->templates, *send.step, ctx,
                              sample_contact(details.columns), row.idempotency_key, now, notice);
}

}  // namespace channeld::app
