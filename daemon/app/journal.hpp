// app/journal: delivery verdicts kept in the state directory (paths.state) until PostgreSQL has
// them, so neither a crash nor a shutdown with the database away forgets what was sent.
//
// Each verdict is one line appended with write(2) before the connection that produced it starts
// its next message. After kill -9 the kernel still holds every completed write, so no fsync is
// needed for a crash of the process; a power loss or kernel crash can lose the last few seconds
// of lines (what the page cache had not written back), and those messages are then sent again
// when their leases expire, as they would be without a journal.
//
// Files, per running daemon: <owner>.lock (flock-ed for the daemon's whole life: a lock that can
// be taken belongs to a dead daemon) and <owner>.<n>.journal segments. The dispatcher cuts a new
// segment when it starts writing a batch of verdicts to the store, and deletes the segments
// before the cut once that batch is recorded. At start, replay_dead_journals() records what
// dead daemons left, as those daemons (store::Store::record only touches rows whose lease_owner
// matches), before this daemon claims anything.
//
// Threads: a Journal is used by the dispatcher's thread only; replay runs once at start.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "store/store.hpp"

namespace channeld::app {

class Journal {
 public:
  // Creates `dir` if needed and takes this owner's lock. Throws std::runtime_error naming the
  // path if the directory cannot be used (a start-up error).
  Journal(std::filesystem::path dir, std::string owner);
  // Removes this owner's files if every verdict was recorded; otherwise leaves them for the
  // next start to replay.
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Appends one verdict. A write error is returned as text (the verdict still goes to the store
  // as usual; only its crash safety is lost), empty on success.
  std::string append(const store::Outcome& outcome);
  // Starts a new segment; returns a mark covering every verdict appended so far.
  std::uint64_t cut();
  // Every verdict up to `mark` is in the store: their segments go.
  void recorded(std::uint64_t mark);
  // Verdicts appended and not yet covered by recorded().
  bool pending() const { return !segments_.empty(); }

 private:
  std::filesystem::path segment_path(std::uint64_t n) const;

  std::filesystem::path dir_;
  std::string owner_;
  std::string stem_;  // owner, made safe for a file name
  int lock_fd_ = -1;
  int fd_ = -1;                          // the open segment, or -1 until the next append
  std::uint64_t segment_ = 0;            // number of the current segment
  std::vector<std::uint64_t> segments_;  // segments on disk, oldest first
};

// One line of a journal, as written by Journal::append (exposed for tests).
std::string journal_line(const std::string& owner, const store::Outcome& outcome);
// Parses a line; false if it is not one (a torn last line after a power loss).
bool parse_journal_line(const std::string& line, std::string& owner, store::Outcome& outcome);

// Replays the journals of dead daemons in `dir` (locks nobody holds), calling `record(owner,
// outcomes)` for each owner found, then deletes those files. A journal whose `record` throws is
// kept for the next start and the exception propagates. Returns how many verdicts were
// replayed. A missing `dir` is an empty one.
std::size_t replay_dead_journals(
    const std::filesystem::path& dir,
    const std::function<void(const std::string&, const std::vector<store::Outcome>&)>& record);

}  // namespace channeld::app
