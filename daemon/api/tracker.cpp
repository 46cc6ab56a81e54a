#include "api/tracker.hpp"

#include "api/attribution.hpp"
#include "api/pages.hpp"

namespace channeld::api {

namespace {

std::string user_agent(const Request& request) {
  auto it = request.headers.find("user-agent");
  return it == request.headers.end() ? std::string() : it->second;
}

Response no_pixel() {
  return json_error(404, "no such tracking pixel");
}

}  // namespace

Response redirect_to(const std::string& url) {
  Response r{302, "text/plain; charset=utf-8", "", {}};
  r.headers.emplace("Location", url);
  r.headers.emplace("Cache-Control", "no-store");
  r.headers.emplace("Referrer-Policy", "no-referrer");
  return r;
}

Response tracking_pixel() {
  // A 1x1 transparent GIF.
  static const std::string kGif(
      "GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff\x21\xf9\x04\x01\x00\x00\x00"
      "\x00\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b",
      43);
  Response r{200, "image/gif", kGif, {}};
  r.headers.emplace("Cache-Control", "no-store, no-cache, must-revalidate, private");
  return r;
}

Response link_gone_page() {
  return page(410, "Link no longer available",
              "<p>The campaign this link came from has changed and no longer has this link.</p>");
}

Tracker::Tracker(EngagementDeps deps, Offload offload, std::size_t capacity)
    : deps_(std::move(deps)), offload_(std::move(offload)), capacity_(capacity) {}

bool Tracker::serve(const Request& request, Reply reply, bool may_block) {
  if (request.method != "GET" && request.method != "HEAD") return false;
  Kind kind;
  if (request.path.starts_with("/c/")) {
    kind = Kind::click;
  } else if (request.path.starts_with("/o/")) {
    kind = Kind::open;
  } else {
    return false;
  }
  std::string token = request.path.substr(3);
  const bool head = request.method == "HEAD";
  const std::string secret = deps_.settings().link_secret;
  std::optional<render::ClickTarget> target;
  std::string key;
  if (kind == Kind::click) {
    target = render::verify_click_token(secret, token);
    if (!target) {
      reply(not_found_page());
      return true;
    }
    key = target->idempotency_key;
  } else {
    auto verified = render::verify_open_token(secret, token);
    if (!verified) {
      reply(no_pixel());
      return true;
    }
    key = std::move(*verified);
  }
  std::string agent = user_agent(request);
  const int link_index = target ? target->index : 0;
  if (auto found = recall(token, kind)) {
    answer(kind, *found, head, agent, link_index, std::move(reply));
    return true;
  }
  auto work = [this, kind, token = std::move(token), key = std::move(key), target, head,
               agent = std::move(agent),
               reply = std::move(reply)] { look_up(kind, token, key, target, head, agent, reply); };
  if (offload_ && !may_block) {
    offload_(std::move(work));
  } else {
    work();
  }
  return true;
}

void Tracker::look_up(Kind kind, const std::string& token, const std::string& key,
                      const std::optional<render::ClickTarget>& target, bool head,
                      const std::string& agent, const Reply& reply) {
  try {
    // Read before resolving: kits that change meanwhile leave this entry stale, not wrong.
    const std::uint64_t generation = deps_.generation ? deps_.generation() : 0;
    auto message = deps_.store->message_by_key(key);
    if (!message) {
      reply(kind == Kind::click ? not_found_page() : no_pixel());
      return;
    }
    Found found{message->outbox_id, message->kit_id, message->partner_id, std::nullopt, generation};
    if (kind == Kind::click) found.link = deps_.link(*message, *target);
    remember(token, found);
    answer(kind, found, head, agent, target ? target->index : 0, reply);
  } catch (...) {
    reply(failure_response(std::current_exception()));
  }
}

void Tracker::answer(Kind kind, const Found& found, bool head, const std::string& agent,
                     int link_index, Reply reply) {
  if (kind == Kind::click && !found.link) {
    reply(link_gone_page());
    return;
  }
  // A HEAD is a client checking that the link or the pixel exists (a link checker, a mail
  // scanner), not a reader's click or open: answered, not recorded.
  if (head) {
    reply(kind == Kind::click ? redirect_to(*found.link) : tracking_pixel());
    return;
  }
  store::Hit hit{kind == Kind::click,
                 found.outbox_id,
                 found.kit_id,
                 found.partner_id,
                 is_machine_fetch(agent),
                 link_index,
                 found.link.value_or(""),
                 agent,
                 deps_.clock()};
  Response ok = kind == Kind::click ? redirect_to(*found.link) : tracking_pixel();
  // Called once: the response moves out rather than being copied on the journal's thread.
  store::HitRecorded done = [reply = std::move(reply),
                              ok = std::move(ok)](std::exception_ptr error) mutable {
    reply(error ? failure_response(error) : std::move(ok));
  };
  if (deps_.record) {
    deps_.record(std::move(hit), std::move(done));
  } else {
    deps_.store->record(std::move(hit), std::move(done));
  }
}

std::optional<Tracker::Found> Tracker::recall(const std::string& token, Kind kind) {
  const std::uint64_t generation = deps_.generation ? deps_.generation() : 0;
  std::lock_guard lock(mutex_);
  auto it = index_.find(token);
  if (it == index_.end()) return std::nullopt;
  if (kind == Kind::click && it->second->second.generation != generation) {
    recent_.erase(it->second);
    index_.erase(it);
    return std::nullopt;
  }
  recent_.splice(recent_.begin(), recent_, it->second);
  return it->second->second;
}

void Tracker::remember(const std::string& token, const Found& found) {
  if (capacity_ == 0) return;
  std::lock_guard lock(mutex_);
  if (auto it = index_.find(token); it != index_.end()) {
    it->second->second = found;
    recent_.splice(recent_.begin(), recent_, it->second);
    return;
  }
  recent_.emplace_front(token, found);
  index_.emplace(token, recent_.begin());
  if (recent_.size() > capacity_) {
    index_.erase(recent_.back().first);
    recent_.pop_back();
  }
}

std::size_t Tracker::cached() const {
  std::lock_guard lock(mutex_);
  return recent_.size();
}

}  // namespace channeld::api
