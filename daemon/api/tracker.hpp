// api/tracker: the click and open endpoints (GET /c/<token>, GET /o/<token>), answered without
// holding the calling thread while the database works, so an event-driven server can serve
// them from its I/O thread (api::PublicServer) and cpp-httplib's workers can wait on the same
// code (engagement_routes).
//
// Per request: the token's HMAC is checked; the message and, for a click, the kit's link are
// found in a cache or, on a miss, looked up by `offload` (a database read and a render: they
// block); the hit is handed to `deps.record` (the daemon's app::HitJournal, durable on local
// disk) or else to store::Engagement's recorder; the answer (302 or the pixel) is sent once the
// hit is durable. A click that was redirected is a click that was counted.
//
// The cache holds, per token, what the lookup found: the message's outbox row (which never
// changes once sent) and the link's URL, valid while the kits are the ones it was resolved
// with (`generation`). Bounded (`capacity` entries, least recently used dropped), guarded by a
// mutex, so any thread may call serve().
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "api/engagement_routes.hpp"
#include "api/message.hpp"

namespace channeld::api {

class Tracker {
 public:
  // Runs blocking work (a database read, a render) somewhere that may block. The default runs
  // it on the caller's thread, which suits callers that may block anyway (httplib workers).
  using Offload = std::function<void(std::function<void()>)>;
  using Reply = std::function<void(Response)>;

  // `capacity` tokens are remembered (about 300 bytes each).
  explicit Tracker(EngagementDeps deps, Offload offload = {}, std::size_t capacity = 16384);

  // True when `request` is a GET or HEAD of /c/<token> or /o/<token>: `reply` is then called
  // exactly once, on this thread or another (the recorder's, the offload's). False for any
  // other request, and `reply` is not called. `may_block`: a cache miss is looked up on this
  // thread rather than handed to the offload.
  bool serve(const Request& request, Reply reply, bool may_block = false);

  // What the cache holds now, for tests and metrics.
  std::size_t cached() const;

 private:
  // What a token led to: the few columns of its outbox row a hit needs, and for a click the
  // link's URL (nullopt when the kit no longer has it) with the kits it was resolved against.
  struct Found {
    std::int64_t outbox_id = 0;
    std::string kit_id;
    std::string partner_id;
    std::optional<std::string> link;
    std::uint64_t generation = 0;
  };
  enum class Kind { click, open };

  std::optional<Found> recall(const std::string& token, Kind kind);
  void remember(const std::string& token, const Found& found);
  // The slow path, on the offload: reads the message and resolves the link.
  void look_up(Kind kind, const std::string& token, const std::string& key,
               const std::optional<render::ClickTarget>& target, bool head,
               const std::string& agent, const Reply& reply);
  void answer(Kind kind, const Found& found, bool head, const std::string& agent, int link_index,
              Reply reply);

  EngagementDeps deps_;
  Offload offload_;
  std::size_t capacity_;

  mutable std::mutex mutex_;                         // guards the cache
  std::list<std::pair<std::string, Found>> recent_;  // most recently used first
  std::unordered_map<std::string, std::list<std::pair<std::string, Found>>::iterator> index_;
};

// The answers, shared with the synchronous endpoints.
Response redirect_to(const std::string& url);
Response tracking_pixel();
Response link_gone_page();

}  // namespace channeld::api
