#include "app/tracking.hpp"

#include "store/store.hpp"

namespace channeld::app {

std::optional<std::string> tracked_link(const Snapshot& snapshot, const store::MessageRef& message,
                                        const render::ClickTarget& target) {
  const catalog::ValidKit* kit = snapshot.live_kit(message.kit_id);
  const Partner* partner = snapshot.partner(message.partner_id);
  if (kit == nullptr || partner == nullptr) return std::nullopt;
  const Step* step = nullptr;
  for (const auto& s : kit->kit.steps) {
    if (s.id == message.step_id && s.channel == Channel::email) step = &s;
  }
  if (step == nullptr) return std::nullopt;
  const render::Context ctx =
      render::make_context(snapshot.config, kit->kit, *partner, snapshot.link_secret);
  const auto links = render::email_links(*kit->templates, *step, ctx,
                                         store::contact_from_json(message.contact_json),
                                         message.idempotency_key);
  const auto index = static_cast<std::size_t>(target.index);
  if (index < links.size() && render::link_digest(links[index]) == target.link_digest)
    return links[index];
  for (const auto& link : links) {
    if (render::link_digest(link) == target.link_digest) return link;
  }
  return std::nullopt;
}

}  // namespace channeld::app
