// app/hit_journal: opens and clicks made durable on local disk before they are answered, and
// carried into PostgreSQL afterwards in large batches.
//
// Why: a click's redirect waited for the PostgreSQL commit that recorded it, so each answer
// cost a WAL fsync plus the batch's statement (4 ms at the median under load on the test VM),
// and every click paid PostgreSQL's per-statement work in small batches. Here the journal
// thread writes every hit queued meanwhile with one pwrite(2) and one fdatasync(2) (0.3 ms on
// the same disk) into a segment already written out as zeros, and only then answers: from the moment a recipient gets the redirect, the
// click survives a crash of the daemon, of PostgreSQL or of the host. The applier thread then
// records the hits in PostgreSQL, thousands per statement, each batch noting in the same
// transaction the last journal line it holds (store::Engagement::record_journaled), so a
// replay after a crash records every hit exactly once.
//
// Files, in their own folder (paths.state/hits, apart from the delivery journal's): per daemon
// start, <journal>.lock (flock-ed for the journal's whole life: a lock that can be taken
// belongs to a dead daemon) and segments <journal>.<n>.hits of lines "<line number>\t...\n".
// <journal> is unique per start, so a restarted daemon never appends to what it left. A
// segment goes once PostgreSQL has all its lines; a clean stop leaves nothing behind.
//
// Failures: a write or fdatasync that fails (a full disk) is undone (the lines zeroed again)
// and those hits go straight to PostgreSQL as before (store::Engagement::record); the next
// batch tries the disk again, unless the undo failed too: then every later hit goes straight.
// PostgreSQL away: hits wait on disk and in memory, retried with backoff; past `max_waiting`
// hits not yet in PostgreSQL, new hits take the direct path too, so memory stays bounded.
//
// Threads: record() from any thread; one journal thread writes and answers (`done` runs there
// and must not block); one applier thread talks to PostgreSQL; one prepares the next segment.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "metrics/log_throttle.hpp"
#include "store/engagement.hpp"

namespace channeld::app {

struct HitJournalOptions {
  std::size_t max_batch = 5000;       // hits per PostgreSQL statement
  // At most one statement per interval unless max_batch hits wait: hits are answered already,
  // so fewer, fuller statements cost nobody any latency.
  std::chrono::milliseconds apply_every{100};
  std::size_t max_waiting = 200'000;  // hits journaled and not yet in PostgreSQL (~300 B each)
  std::uintmax_t segment_bytes = 4u << 20;  // about 20,000 hits; written out as zeros first
  std::chrono::milliseconds first_retry{250};  // doubled per failure up to max_retry
  std::chrono::milliseconds max_retry{10'000};
};

class HitJournal {
 public:
  // Creates `dir` if needed and takes the new journal's lock. Throws std::runtime_error naming
  // the path if the folder cannot be used (a start-up error, like the delivery journal's).
  HitJournal(std::filesystem::path dir, const std::string& owner, store::Engagement& engagement,
             HitJournalOptions options = {});
  // stop(0): what is queued is answered; what PostgreSQL does not take at the first try stays
  // on disk for the next start.
  ~HitJournal();
  HitJournal(const HitJournal&) = delete;
  HitJournal& operator=(const HitJournal&) = delete;

  // Makes the hit durable, then calls `done` (nullptr) on the journal thread; if the journal
  // cannot take it, hands it to store::Engagement::record, whose `done` reports as before.
  void record(store::Hit hit, store::HitRecorded done);

  // Answers every hit queued so far, then gives PostgreSQL until `grace` has passed to take
  // every hit journaled; what it has not taken by then stays on disk and the next start
  // replays it. Idempotent; record() must not be called after it.
  void stop(std::chrono::milliseconds grace);

  // Waits until every hit recorded so far is in PostgreSQL (tests, --until-idle).
  void wait_applied();

  const std::string& name() const { return name_; }
  // Hits journaled and not yet in PostgreSQL.
  std::size_t waiting() const;
  // Hits that took the direct path because the journal could not take them.
  std::uint64_t bypassed() const;

 private:
  struct Queued {
    store::Hit hit;
    store::HitRecorded done;
  };
  struct Segment {
    std::uint64_t n = 0;
    std::uint64_t last_line = 0;  // the last line written to it
  };

  void write_loop();
  void apply_loop();
  void prepare_loop();
  // Appends `batch` as lines first_line.., then fdatasync; false (and the segment as it was)
  // if the disk refused.
  bool append(const std::vector<Queued>& batch, std::uint64_t first_line);
  std::filesystem::path segment_path(std::uint64_t n) const;
  void remove_applied_segments(std::uint64_t applied);

  std::filesystem::path dir_;
  std::string name_;
  store::Engagement& engagement_;
  HitJournalOptions options_;
  int lock_fd_ = -1;

  // Journal thread only.
  int fd_ = -1;  // the open segment, or -1 until the next write
  std::uintmax_t segment_size_ = 0;
  std::uint64_t next_segment_ = 0;
  std::uint64_t last_line_ = 0;
  bool broken_ = false;  // the disk refused a write that could not be undone: direct path only
  metrics::LogThrottle disk_log_{std::chrono::minutes(1)};
  // Applier thread only.
  metrics::LogThrottle database_log_{std::chrono::minutes(1)};

  mutable std::mutex mutex_;
  std::condition_variable wake_writer_, wake_applier_, applied_;
  std::vector<Queued> incoming_;
  // Journaled and not yet in PostgreSQL, oldest first: one chunk per written batch, shared and
  // never changed once queued, so the applier takes a batch by copying pointers under the lock
  // and the hits themselves outside it. Copying thousands of hits under the lock made every
  // click wait behind the applier (and behind its thread's time slice when it lost the CPU).
  struct Chunk {
    std::uint64_t first_line = 0;  // hits[i] is line first_line + i
    std::vector<store::Hit> hits;
  };
  std::deque<std::shared_ptr<const Chunk>> unapplied_;
  std::size_t unapplied_offset_ = 0;  // hits of the front chunk PostgreSQL has already
  std::size_t unapplied_count_ = 0;   // hits in unapplied_ past that offset
  std::deque<Segment> segments_;                                // on disk, oldest first
  std::uint64_t bypassed_ = 0;
  bool writing_ = false;  // the journal thread holds a batch taken from incoming_
  bool stopping_writer_ = false, stopping_applier_ = false, stopped_ = false;
  std::chrono::steady_clock::time_point give_up_at_{};
  bool disk_refused_ = false;  // under mutex_: mirrors broken_ for record()

  // The spare segment: the next one, zeroed ahead of time by the preparer thread so the
  // writer never stalls its answers on it (create_zeroed in hit_journal.cpp says why zeros).
  static constexpr std::uint64_t kNone = ~std::uint64_t{0};
  static constexpr std::uintmax_t kRoomForABatch = 256u << 10;
  std::condition_variable wake_preparer_, spare_done_;
  std::uint64_t spare_ = kNone, preparing_ = kNone;
  bool spare_wanted_ = false, spare_ready_ = false, stopping_preparer_ = false;

  std::thread writer_, applier_, preparer_;
};

// One line of a hit journal (exposed for tests): the fields tab-separated, text escaped.
std::string hit_journal_line(std::uint64_t line, const store::Hit& hit);
// Parses a line without its newline; false if it is not one (a torn last line).
bool parse_hit_journal_line(std::string_view text, std::uint64_t& line, store::Hit& hit);

// Records in PostgreSQL what the hit journals of dead daemons in `dir` hold beyond their marks,
// then deletes them. A journal whose recording throws is kept for the next start and the
// exception propagates. Returns how many hits were recorded. A missing `dir` is an empty one.
std::size_t replay_dead_hit_journals(const std::filesystem::path& dir,
                                     store::Engagement& engagement, std::size_t max_batch = 5000);

}  // namespace channeld::app
