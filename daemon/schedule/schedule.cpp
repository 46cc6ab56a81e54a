#include "schedule/schedule.hpp"

#include <algorithm>
#include <stdexcept>
#include <string_view>

namespace channeld::schedule {
namespace {

// The model speaks std::chrono local_time; date/tz has its own local_t clock tag with the same
// meaning (a wall-clock reading with no zone), so the two convert through the epoch count.
date::local_seconds to_date_local(LocalTime t) {
  return date::local_seconds{t.time_since_epoch()};
}

// A local reading resolved to an instant: a reading skipped by a spring-forward gap becomes the
// instant the gap ends (date/tz returns the transition for nonexistent times when told how to
// choose), and a reading repeated by a fall-back takes its first occurrence.
SysTime to_instant(const date::time_zone* zone, date::local_seconds local) {
  return zone->to_sys(local, date::choose::earliest);
}

// Bit of `day` in SendWindow::days: bit 0 = Monday ... bit 6 = Sunday.
std::uint8_t day_bit(date::local_days day) {
  return static_cast<std::uint8_t>(1u << (date::weekday{day}.iso_encoding() - 1));
}

bool window_never_opens(const SendWindow& window) {
  return (window.days & 0x7f) == 0 || window.from_minute >= window.to_minute;
}

template <typename T, typename ToText>
std::string listing(const std::vector<T>& values, ToText to_text) {
  std::string out;
  for (const auto& v : values) {
    if (!out.empty()) out += ", ";
    out += to_text(v);
  }
  return out;
}

template <typename T, typename ToText>
std::optional<std::string> outside(std::string_view what, const T& value,
                                   const std::vector<T>& allowed, ToText to_text) {
  if (allowed.empty() || std::find(allowed.begin(), allowed.end(), value) != allowed.end()) {
    return std::nullopt;
  }
  return std::string(what) + " " + std::string(to_text(value)) + " is not in the kit's audience (" +
         listing(allowed, to_text) + ")";
}

// splitmix64 (Steele, Lea, Flood 2014): one well-mixed 64-bit output per input, stateless, so a
// message's retry jitter is a function of its seed and attempt alone.
std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

std::optional<std::string> ineligibility(const Kit& kit, const Partner& partner) {
  if (!partner.active) return "partner is suspended";
  const Audience& audience = kit.audience;
  auto tier_text = [](Tier t) { return std::string(to_string(t)); };
  auto type_text = [](PartnerType t) { return std::string(to_string(t)); };
  auto region_text = [](const std::string& r) { return r; };
  if (auto why = outside("tier", partner.tier, audience.tiers, tier_text)) return why;
  if (auto why = outside("type", partner.type, audience.types, type_text)) return why;
  if (auto why = outside("region", partner.region, audience.regions, region_text)) return why;
  if (audience.enrollment == Enrollment::opt_in &&
      std::find(partner.opt_in_kits.begin(), partner.opt_in_kits.end(), kit.id) ==
          partner.opt_in_kits.end()) {
    return "partner has not opted in to this kit";
  }
  return std::nullopt;
}

SysTime step_due(const Kit& kit, std::size_t step_index, const date::time_zone* zone) {
  if (step_index >= kit.steps.size()) {
    throw std::out_of_range("kit " + kit.id + " has no step " + std::to_string(step_index));
  }
  std::chrono::minutes offset{0};
  for (std::size_t i = 0; i <= step_index; ++i) offset += kit.steps[i].delay;
  // Delays are wall-clock: "1d" after a 09:00 start is 09:00 the next day even across a DST
  // change, which is what a marketer planning in local time means.
  const SysTime local_due = to_instant(zone, to_date_local(kit.schedule.start + offset));
  if (auto open = next_window_open(kit.schedule.window, zone, local_due)) return *open;
  // The catalog refuses such kits at load; reaching here means a kit bypassed validation.
  throw InputError("kit " + kit.id + ": schedule.window",
                   "the send window never opens (no days, or from is not before to)");
}

bool in_window(const SendWindow& window, const date::time_zone* zone, SysTime at) {
  const auto local = zone->to_local(at);
  const auto day = date::floor<date::days>(local);
  const auto minute = std::chrono::duration_cast<std::chrono::minutes>(local - day).count();
  return (window.days & day_bit(day)) != 0 && minute >= window.from_minute &&
         minute < window.to_minute;
}

std::optional<SysTime> next_window_open(const SendWindow& window, const date::time_zone* zone,
                                        SysTime at) {
  if (window_never_opens(window)) return std::nullopt;
  if (in_window(window, zone, at)) return at;
  // Any window with at least one day opens within a week; the eighth day covers a week-day-only
  // window entered just after it closed. Each opening is resolved in the zone on its own day, so
  // DST changes in between cost nothing.
  const auto today = date::floor<date::days>(zone->to_local(at));
  for (int d = 0; d <= 7; ++d) {
    const date::local_days day = today + date::days{d};
    if ((window.days & day_bit(day)) == 0) continue;
    const SysTime open = to_instant(zone, day + std::chrono::minutes{window.from_minute});
    // A DST gap can push an opening past its own window (a 02:00-02:30 window on the
    // spring-forward night), so the candidate must still be inside the window.
    if (open > at && in_window(window, zone, open)) return open;
  }
  return std::nullopt;
}

bool expired(const Kit& kit, const date::time_zone* zone, SysTime now) {
  const auto local_day = date::floor<date::days>(zone->to_local(now));
  const auto expiry_day = std::chrono::local_days{kit.expires};
  return local_day.time_since_epoch() > expiry_day.time_since_epoch();
}

std::optional<ProofTiming> proof_timing(const Kit& kit, bool partner_has_webhook,
                                        const date::time_zone* zone, std::chrono::minutes lead_time,
                                        SysTime now) {
  if (lead_time <= std::chrono::minutes::zero()) return std::nullopt;
  std::optional<std::size_t> email, first;
  for (std::size_t i = 0; i < kit.steps.size(); ++i) {
    const Channel channel = kit.steps[i].channel;
    if (channel == Channel::webhook && !partner_has_webhook) continue;
    if (!first) first = i;
    if (channel == Channel::email && !email) email = i;
  }
  if (!email || !first) return std::nullopt;
  ProofTiming timing;
  timing.email_step = *email;
  timing.email_at = step_due(kit, *email, zone);
  timing.first_step_at = step_due(kit, *first, zone);
  if (timing.first_step_at <= now) return std::nullopt;
  timing.due = std::max(timing.first_step_at - lead_time, now);
  return timing;
}

std::chrono::seconds retry_delay(int attempt, std::chrono::seconds base, std::chrono::seconds max,
                                 std::uint64_t jitter_seed) {
  if (base <= std::chrono::seconds::zero() || max <= std::chrono::seconds::zero()) {
    return std::chrono::seconds::zero();
  }
  // Doubling stops at the cap, so a large attempt count cannot overflow.
  std::chrono::seconds ceiling = std::min(base, max);
  for (int i = 1; i < attempt && ceiling < max; ++i) ceiling = std::min(ceiling * 2, max);

  const auto fixed = ceiling / 2;
  const auto span = static_cast<std::uint64_t>((ceiling - fixed).count());
  const std::uint64_t draw =
      splitmix64(jitter_seed ^ splitmix64(static_cast<std::uint64_t>(attempt)));
  return fixed + std::chrono::seconds{static_cast<std::int64_t>(draw % (span + 1))};
}

}  // namespace channeld::schedule
