// app/journal_files: the files the delivery journal (app/journal) and the hit journal
// (app/hit_journal) share a shape of. A folder holds, per journal, `<stem>.lock`, flock-ed by
// its daemon for the journal's whole life, and numbered segments `<stem>.<n><suffix>`. A lock
// that can be taken belongs to a daemon that is gone: a new daemon replays its segments, then
// deletes them and the lock.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace channeld::app::journal_files {

// `owner` as a file name: letters, digits, '-', '_' and ':' kept, anything else '_'.
std::string safe_stem(const std::string& owner);

// strerror(errno), for messages.
std::string errno_text();

// Creates `dir` if needed and takes `<stem>.lock` for the caller's life; returns its
// descriptor. Throws std::runtime_error naming the path (paths.state) if it cannot.
int take_lock(const std::filesystem::path& dir, const std::string& stem);

// Gives back what take_lock took: deletes `<stem>.lock` first when `remove_file` (the journal
// left nothing to replay), then closes `fd`. A lock kept on disk tells the next start there is
// a journal to replay.
void release_lock(const std::filesystem::path& dir, const std::string& stem, int fd,
                  bool remove_file);

// "<stem>.<n><suffix>" -> n; false for any other name.
bool segment_number(std::string_view name, std::string_view stem, std::string_view suffix,
                    std::uint64_t& n);

// write(2) until all of `text` is written; false on an error (errno says which).
bool write_all(int fd, std::string_view text);

using Segments = std::map<std::uint64_t, std::filesystem::path>;  // by number

// For each journal in `dir` whose lock can be taken, holding that lock: `replay(stem,
// segments)`, then its segments and lock are deleted. If `replay` throws, the files stay for
// the next start and the exception propagates. A missing `dir` has no journal.
void replay_dead(const std::filesystem::path& dir, std::string_view suffix,
                 const std::function<void(const std::string& stem, const Segments&)>& replay);

}  // namespace channeld::app::journal_files
