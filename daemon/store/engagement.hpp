// store/engagement: what happened after a message went out, in PostgreSQL: opens and clicks
// per message, unsubscribes, bounces and complaints reported later, leads and their
// attribution, per-(kit, partner) results, and API token hashes. Same threading and error
// rules as Store (any thread; StoreError on failure; the caller's `now` for every timestamp).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "store/store.hpp"

namespace soci {
class session;
}

namespace channeld::store {

// An outbox row as engagement sees it.
struct MessageRef {
  std::int64_t outbox_id = 0;
  std::string idempotency_key;
  std::string kit_id;
  std::string step_id;
  std::string partner_id;
  std::string email;
  std::string contact_json;
  std::string state;
  std::string message_id;    // "" until rendered
  int rendered_version = 0;  // 0 until rendered
  std::optional<SysTime> sent_at;
};

// A message that reached a contact: a candidate last touch for a lead.
struct Touch {
  std::int64_t outbox_id = 0;
  std::string kit_id;
  std::string step_id;
  std::string message_id;
  SysTime sent_at{};
  bool clicked = false;  // at least one human click
};

enum class ReportKind { hard_bounce, soft_bounce, complaint };

// One open (the pixel was fetched) or one click of the kit's link `link`, the `link_index`th of
// the message. `proxy`: fetched by a privacy proxy or link scanner, counted in the totals but
// not as a person's open or click.
struct Hit {
  bool click = false;
  std::int64_t outbox_id = 0;
  std::string kit_id;
  std::string partner_id;
  bool proxy = false;
  int link_index = 0;      // clicks only
  std::string link;        // clicks only
  std::string user_agent;  // attacker-chosen: clipped and made valid UTF-8 before it is stored
  SysTime at{};
};
// User agents are attacker-chosen text: at most 200 bytes of valid UTF-8 without NUL, each
// byte that does not start or continue a well-formed sequence replaced by '?'.
std::string clip_user_agent(std::string_view text);

// Called once a hit's transaction committed (nullptr: durable) or failed (the error), on the
// recorder's thread: it must not block.
using HitRecorded = std::function<void(std::exception_ptr)>;

struct LeadRecord {
  std::string partner_id;
  std::string external_id;
  std::string email;
  std::string stage;  // lead | opportunity | won
  std::int64_t amount_minor = 0;
  std::string currency;
  // Attribution, used only when the lead is new: a later report moves stage and amount only.
  std::optional<Touch> touch;
  std::string origin;  // partner_sourced | influenced | unattributed
};

struct LeadSaved {
  bool created = false;
  std::string stage;
  std::string origin;
  std::optional<std::string> kit_id, step_id;
};

// Results of one kit for one partner (email messages only). Amounts in minor units of the
// installation's currency.
struct KitPartnerResult {
  std::string kit_id;
  std::string partner_id;
  std::int64_t sent = 0;       // handed to the relay: delivered + bounced
  std::int64_t delivered = 0;  // accepted and not bounced since
  std::int64_t bounced = 0;
  std::int64_t unique_opens = 0;         // messages opened at least once, proxies not counted
  std::int64_t unique_human_clicks = 0;  // messages clicked at least once by a person
  std::int64_t unsubscribes = 0;
  std::int64_t complaints = 0;
  std::int64_t leads = 0;
  std::int64_t pipeline_minor = 0;  // leads at stage lead or opportunity
  std::int64_t won_minor = 0;
  std::optional<SysTime> last_sent_at;
};

class Engagement {
 public:
  explicit Engagement(Store& store) : store_(store) {}

  std::optional<MessageRef> message_by_key(const std::string& idempotency_key);
  std::optional<MessageRef> message_by_message_id(const std::string& message_id);

  ~Engagement();  // records what is queued, then stops the recorder
  Engagement(const Engagement&) = delete;
  Engagement& operator=(const Engagement&) = delete;

  // Records an open or click (see Hit) without waiting: `done` hears when it is durable. A
  // person's first open, and first click of each link, also queue a partner feed event when the
  // partner's feed wants it, in the same transaction. Hits queued meanwhile are recorded
  // together by one thread, in one statement and one commit (see Recorder), so a burst of
  // clicks costs one fsync and one round trip per batch rather than per click.
  void record(Hit hit, HitRecorded done);
  // Waits until every hit queued so far has been recorded (or failed) and its `done` has run.
  void drain();
  // The same, waiting until the hit is durable; throws StoreError if it could not be recorded.
  void record_open(const MessageRef& message, bool proxy, const std::string& user_agent,
                   SysTime now);
  void record_click(const MessageRef& message, int link_index, const std::string& link, bool proxy,
                    const std::string& user_agent, SysTime now);

  // ---- hits made durable in a local journal first (app::HitJournal) ----
  // Records `hits` (as record() does) and notes, in the same transaction, that journal
  // `journal` is applied through line `through`, so a replay after a crash skips exactly what
  // PostgreSQL already has. Throws StoreError; nothing is recorded then.
  void record_journaled(const std::vector<Hit>& hits, const std::string& journal,
                        std::uint64_t through);
  // The last line of `journal` recorded; 0 for a journal never applied.
  std::uint64_t journal_applied(const std::string& journal);
  // The journal is gone from disk: its row goes too.
  void forget_journal(const std::string& journal);

  // Suppresses `email` for `partner_id` and marks the partner's latest message to it as the one
  // that was unsubscribed from (queuing the partner feed's `unsubscribed` event). Idempotent.
  // Returns false if the address was already suppressed for that partner (or globally).
  bool unsubscribe(const std::string& partner_id, const std::string& email, SysTime now);

  // A bounce or complaint reported after the send, about one message or (message == nullopt)
  // the latest message sent to `email`. Hard bounces move the message to `bounced`; hard
  // bounces and complaints suppress the address for every partner. Returns how many messages
  // it touched (0 when the address had no message: the suppression still applies).
  std::size_t report(ReportKind kind, const std::optional<MessageRef>& message,
                     const std::string& email, SysTime now);

  // Messages the partner sent to `email` that went out within [since, until], newest first.
  std::vector<Touch> touches(const std::string& partner_id, const std::string& email, SysTime since,
                             SysTime until);
  // Inserts the lead, or moves the stage and amount of the partner's lead with the same
  // external id.
  LeadSaved save_lead(const LeadRecord& lead, SysTime now);

  // Per (kit, partner); an empty filter matches every kit or partner. Sorted by kit, partner.
  std::vector<KitPartnerResult> results(const std::string& kit_id, const std::string& partner_id);

  // ---- API tokens ----
  // Throws StoreError if a live token has that name.
  void add_token(const std::string& name, const std::string& token_hash, const std::string& role);
  bool revoke_token(const std::string& name, SysTime now);
  bool token_by_name_exists(const std::string& name);  // a live token has this name
  // (name, role) of a live token with this hash.
  std::optional<std::pair<std::string, std::string>> token_by_hash(const std::string& token_hash);

 private:
  // Group commit on threads of their own: record() queues, a free thread takes everything
  // queued (up to kMaxBatch), writes it in one transaction, and reports to each caller. Two
  // threads, so that one batch's statement runs while the other waits for its commit's fsync:
  // a hit then waits for one commit, not for the end of the one before. Started on the first
  // hit, so a process that records none (the CLI) has no such threads. If a batch's
  // transaction fails, every hit in it gets the error: each is one well-formed row about a
  // message just read from the outbox, so what fails a batch is the database itself.
  struct Recorder {
    struct Queued {
      Hit hit;
      HitRecorded done;
    };
    std::mutex mutex;
    std::condition_variable wake;
    std::deque<Queued> queue;
    int writing = 0;               // batches taken from the queue and being recorded
    std::condition_variable idle;  // the queue is empty and no batch is being recorded
    bool stopping = false;
    std::vector<std::thread> threads;
  };
  static constexpr std::size_t kMaxBatch = 1000;
  static constexpr std::size_t kRecorderThreads = 2;
  void record_batches();
  void write_batch(const std::vector<Recorder::Queued>& batch);
  // One transaction: the hits, then `also` (a journal's mark) before the commit.
  void write_hits(const std::vector<Hit>& hits, const char* what,
                  const std::function<void(soci::session&)>& also);

  Store& store_;
  Recorder recorder_;
};

}  // namespace channeld::store
