#include "app/hit_journal.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <random>
#include <spdlog/spdlog.h>
#include <stdexcept>

#include "app/journal_files.hpp"

namespace channeld::app {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kSegmentSuffix = ".hits";
constexpr std::size_t kFields = 10;

using journal_files::errno_text;
using journal_files::write_all;

// Text fields may hold anything a kit or a user agent holds: the separators are escaped.
void append_escaped(std::string& out, std::string_view text) {
  for (const char c : text) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\0': out += "\\0"; break;  // a segment's lines end at its first NUL
      default: out += c;
    }
  }
}

bool unescape(std::string_view text, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\') {
      out += text[i];
      continue;
    }
    if (++i == text.size()) return false;
    switch (text[i]) {
      case '\\': out += '\\'; break;
      case 't': out += '\t'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case '0': out += '\0'; break;
      default: return false;
    }
  }
  return true;
}

template <typename Int>
bool parse_int(std::string_view text, Int& value) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  return error == std::errc{} && end == text.data() + text.size() && !text.empty();
}

// Unique per start even when a restarted daemon keeps its owner name (and pid, in a container).
std::string journal_name(const std::string& owner) {
  std::random_device random;
  char suffix[17];
  std::snprintf(suffix, sizeof suffix, "%08x%08x", random(), random());
  return journal_files::safe_stem(owner) + "-" + suffix;
}

// A new file's name survives a power loss only once its folder is synced too.
void sync_folder(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// A segment is written out as zeros and synced before any hit goes into it, as PostgreSQL does
// with its WAL segments: an fdatasync after appending must also commit the file's new size to
// the file system's journal, one after overwriting blocks already written needs not (on the
// test VM's ext4: p99 3.4-6.8 ms appending, 1.6-2.2 ms overwriting).
bool create_zeroed(const fs::path& path, std::uintmax_t bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  static const std::string zeros(std::size_t{1} << 20, '\0');
  bool ok = true;
  for (std::uintmax_t done = 0; ok && done < bytes; done += zeros.size()) {
    ok = write_all(fd, std::string_view(zeros).substr(
                           0, static_cast<std::size_t>(std::min<std::uintmax_t>(zeros.size(),
                                                                                bytes - done))));
  }
  ok = ok && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    std::error_code ignored;
    fs::remove(path, ignored);
  }
  return ok;
}

bool pwrite_all(int fd, std::string_view text, off_t offset) {
  while (!text.empty()) {
    const ssize_t n = ::pwrite(fd, text.data(), text.size(), offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    text.remove_prefix(static_cast<std::size_t>(n));
    offset += n;
  }
  return true;
}

// A segment's lines: everything before the first NUL (the zeros it was created with).
std::vector<std::string> segment_lines(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  bytes.resize(std::min(bytes.size(), bytes.find('\0')));
  std::vector<std::string> lines;
  for (std::size_t start = 0; start < bytes.size();) {
    const auto end = bytes.find('\n', start);
    // A last piece without its newline is torn (power lost mid-write): never answered, and
    // possibly cut at a tab, where it would parse: left out.
    if (end == std::string::npos) break;
    lines.push_back(bytes.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

}  // namespace

std::string hit_journal_line(std::uint64_t line, const store::Hit& hit) {
  std::string out = std::to_string(line);
  out += hit.click ? "\t1\t" : "\t0\t";
  out += std::to_string(hit.outbox_id);
  out += hit.proxy ? "\t1\t" : "\t0\t";
  out += std::to_string(hit.link_index);
  out += '\t';
  out += std::to_string(hit.at.time_since_epoch().count());
  for (const std::string_view text : {std::string_view(hit.kit_id), std::string_view(hit.partner_id),
                                      std::string_view(hit.link)}) {
    out += '\t';
    append_escaped(out, text);
  }
  out += '\t';
  append_escaped(out, store::clip_user_agent(hit.user_agent));
  out += '\n';
  return out;
}

bool parse_hit_journal_line(std::string_view text, std::uint64_t& line, store::Hit& hit) {
  std::vector<std::string_view> fields;
  for (std::size_t start = 0;;) {
    const auto tab = text.find('\t', start);
    fields.push_back(text.substr(start, tab == std::string_view::npos ? tab : tab - start));
    if (tab == std::string_view::npos) break;
    start = tab + 1;
  }
  if (fields.size() != kFields) return false;
  store::Hit h;
  long long at = 0;
  if (!parse_int(fields[0], line) || line == 0 || (fields[1] != "0" && fields[1] != "1") ||
      !parse_int(fields[2], h.outbox_id) || (fields[3] != "0" && fields[3] != "1") ||
      !parse_int(fields[4], h.link_index) || !parse_int(fields[5], at) ||
      !unescape(fields[6], h.kit_id) || !unescape(fields[7], h.partner_id) ||
      !unescape(fields[8], h.link) || !unescape(fields[9], h.user_agent)) {
    return false;
  }
  h.click = fields[1] == "1";
  h.proxy = fields[3] == "1";
  h.at = SysTime(std::chrono::seconds(at));
  hit = std::move(h);
  return true;
}

HitJournal::HitJournal(fs::path dir, const std::string& owner, store::Engagement& engagement,
                       HitJournalOptions options)
    : dir_(std::move(dir)),
      name_(journal_name(owner)),
      engagement_(engagement),
      options_(options) {
  lock_fd_ = journal_files::take_lock(dir_, name_);
  // Named for top -H and perf (at most 15 characters).
  writer_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "hits-writer");
    write_loop();
  });
  applier_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "hits-applier");
    apply_loop();
  });
  preparer_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "hits-spare");
    prepare_loop();
  });
}

HitJournal::~HitJournal() {
  stop(std::chrono::milliseconds(0));
}

fs::path HitJournal::segment_path(std::uint64_t n) const {
  return dir_ / (name_ + "." + std::to_string(n) + std::string(kSegmentSuffix));
}

void HitJournal::record(store::Hit hit, store::HitRecorded done) {
  {
    std::lock_guard lock(mutex_);
    if (!disk_refused_ && !stopping_writer_ &&
        unapplied_count_ + incoming_.size() < options_.max_waiting) {
      incoming_.push_back({std::move(hit), std::move(done)});
      wake_writer_.notify_one();
      return;
    }
    ++bypassed_;
  }
  engagement_.record(std::move(hit), std::move(done));
}

std::size_t HitJournal::waiting() const {
  std::lock_guard lock(mutex_);
  return unapplied_count_;
}

std::uint64_t HitJournal::bypassed() const {
  std::lock_guard lock(mutex_);
  return bypassed_;
}

void HitJournal::wait_applied() {
  std::unique_lock lock(mutex_);
  applied_.wait(lock, [&] { return incoming_.empty() && !writing_ && unapplied_count_ == 0; });
}

bool HitJournal::append(const std::vector<Queued>& batch, std::uint64_t first_line) {
  std::string text;
  text.reserve(batch.size() * 192);
  for (std::size_t i = 0; i < batch.size(); ++i)
    text += hit_journal_line(first_line + i, batch[i].hit);
  if (fd_ < 0) {
    const std::uint64_t n = next_segment_;
    const fs::path path = segment_path(n);
    bool ready = false;
    {
      // The spare the preparer zeroes ahead of time; if it is still at it, wait for it rather
      // than race it for the same file.
      std::unique_lock lock(mutex_);
      spare_done_.wait(lock, [&] { return preparing_ != n; });
      ready = spare_ready_ && spare_ == n;
      if (ready) {
        spare_ready_ = false;
      } else if (spare_ == n) {
        spare_wanted_ = false;  // made here, now: the preparer must not start on it as well
      }
    }
    if (!ready && !create_zeroed(path, options_.segment_bytes)) {
      if (const auto count = disk_log_.failure(std::chrono::steady_clock::now()))
        spdlog::warn("hits: cannot create {}: {}; opens and clicks go straight to the database "
                     "({} batches so far)",
                     path.string(), errno_text(), count);
      return false;
    }
    fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd_ < 0) {
      if (const auto count = disk_log_.failure(std::chrono::steady_clock::now()))
        spdlog::warn("hits: cannot open {}: {}; opens and clicks go straight to the database ({} "
                     "batches so far)",
                     path.string(), errno_text(), count);
      return false;
    }
    sync_folder(dir_);
    segment_size_ = 0;
    {
      std::lock_guard lock(mutex_);
      segments_.push_back({n, 0});
      next_segment_ = n + 1;
      spare_ = n + 1;
      spare_wanted_ = true;
    }
    wake_preparer_.notify_one();
  }
  const auto offset = static_cast<off_t>(segment_size_);
  if (!pwrite_all(fd_, text, offset) || ::fdatasync(fd_) != 0) {
    const std::string why = errno_text();
    // Lines that reached the file but were never answered would be counted twice (here, by the
    // direct path, and again by a replay): they are zeroed again, or the journal is not used
    // again.
    const std::string zeros(text.size(), '\0');
    if (!pwrite_all(fd_, zeros, offset) || ::fdatasync(fd_) != 0) broken_ = true;
    if (const auto count = disk_log_.failure(std::chrono::steady_clock::now()))
      spdlog::warn("hits: cannot write {}: {}; opens and clicks go straight to the database{} ({} "
                   "batches so far)",
                   segment_path(next_segment_ - 1).string(), why,
                   broken_ ? " until the daemon restarts" : "", count);
    return false;
  }
  if (const auto n = disk_log_.success())
    spdlog::info("hits: the journal takes opens and clicks again after {} refused batches", n);
  segment_size_ += text.size();
  return true;
}

void HitJournal::write_loop() {
  std::vector<Queued> batch;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_writer_.wait(lock, [&] { return stopping_writer_ || !incoming_.empty(); });
      if (incoming_.empty()) return;
      batch.swap(incoming_);
      writing_ = true;
    }
    const std::uint64_t first = last_line_ + 1;
    if (!broken_ && append(batch, first)) {
      last_line_ += batch.size();
      auto chunk = std::make_shared<Chunk>();
      chunk->first_line = first;
      chunk->hits.reserve(batch.size());
      for (auto& queued : batch) chunk->hits.push_back(std::move(queued.hit));
      {
        std::lock_guard lock(mutex_);
        segments_.back().last_line = last_line_;
        unapplied_count_ += chunk->hits.size();
        unapplied_.push_back(std::move(chunk));
        writing_ = false;
      }
      wake_applier_.notify_one();
      // The next batch may be larger than what is left: a segment never grows past its zeros.
      if (segment_size_ + kRoomForABatch >= options_.segment_bytes) {
        ::close(fd_);
        fd_ = -1;
      }
      // Durable on disk: the answers go out now, PostgreSQL hears of these hits after.
      for (auto& queued : batch) {
        if (queued.done) queued.done(nullptr);
      }
    } else {
      {
        std::lock_guard lock(mutex_);
        disk_refused_ = broken_;
        bypassed_ += batch.size();
        writing_ = false;
      }
      for (auto& queued : batch) engagement_.record(std::move(queued.hit), std::move(queued.done));
    }
    applied_.notify_all();
    batch.clear();
  }
}

void HitJournal::remove_applied_segments(std::uint64_t applied) {
  std::vector<fs::path> gone;
  {
    std::lock_guard lock(mutex_);
    // Never the newest: the journal thread may still be appending to it.
    while (segments_.size() > 1 && segments_.front().last_line <= applied) {
      gone.push_back(segment_path(segments_.front().n));
      segments_.pop_front();
    }
  }
  for (const auto& path : gone) {
    std::error_code ignored;
    fs::remove(path, ignored);
  }
}

void HitJournal::prepare_loop() {
  for (;;) {
    std::uint64_t n = 0;
    {
      std::unique_lock lock(mutex_);
      wake_preparer_.wait(lock, [&] { return stopping_preparer_ || spare_wanted_; });
      if (!spare_wanted_) return;
      spare_wanted_ = false;
      n = spare_;
      preparing_ = n;
    }
    const bool ok = create_zeroed(segment_path(n), options_.segment_bytes);
    {
      std::lock_guard lock(mutex_);
      preparing_ = kNone;
      spare_ready_ = ok && spare_ == n;
    }
    spare_done_.notify_all();
  }
}

void HitJournal::apply_loop() {
  std::vector<store::Hit> hits;
  std::vector<std::shared_ptr<const Chunk>> taken;  // the chunks this batch reads, front first
  auto retry = options_.first_retry;
  auto last_apply = std::chrono::steady_clock::time_point{};
  for (;;) {
    std::size_t offset = 0;  // into taken.front()
    std::size_t n = 0;
    {
      std::unique_lock lock(mutex_);
      wake_applier_.wait(lock, [&] { return stopping_applier_ || unapplied_count_ > 0; });
      if (unapplied_count_ == 0) return;
      // Hits are answered already: waiting for a fuller batch costs nobody a thing, and each
      // statement and commit saved is PostgreSQL CPU and a WAL fsync the journal's own
      // fdatasync no longer queues behind.
      wake_applier_.wait_until(lock, last_apply + options_.apply_every, [&] {
        return stopping_applier_ || unapplied_count_ >= options_.max_batch;
      });
      last_apply = std::chrono::steady_clock::now();
      n = std::min(unapplied_count_, options_.max_batch);
      offset = unapplied_offset_;
      std::size_t covered = 0;
      for (const auto& chunk : unapplied_) {
        if (covered >= n) break;
        taken.push_back(chunk);
        covered += chunk->hits.size() - (taken.size() == 1 ? offset : 0);
      }
    }
    // Outside the lock: only this thread takes from the front, and queued chunks never change.
    hits.clear();
    std::uint64_t through = 0;
    for (std::size_t c = 0; c < taken.size() && hits.size() < n; ++c) {
      const Chunk& chunk = *taken[c];
      for (std::size_t i = c == 0 ? offset : 0; i < chunk.hits.size() && hits.size() < n; ++i) {
        hits.push_back(chunk.hits[i]);
        through = chunk.first_line + i;
      }
    }
    try {
      engagement_.record_journaled(hits, name_, through);
      retry = options_.first_retry;
      if (const auto failures = database_log_.success())
        spdlog::info("hits: the database takes journaled opens and clicks again after {} failures",
                     failures);
      std::vector<std::shared_ptr<const Chunk>> done;  // freed after the lock is released
      {
        std::lock_guard lock(mutex_);
        std::size_t left = n;
        while (left > 0) {
          const std::size_t in_front = unapplied_.front()->hits.size() - unapplied_offset_;
          if (in_front > left) {
            unapplied_offset_ += left;
            break;
          }
          left -= in_front;
          done.push_back(std::move(unapplied_.front()));
          unapplied_.pop_front();
          unapplied_offset_ = 0;
        }
        unapplied_count_ -= n;
      }
      taken.clear();
      applied_.notify_all();
      remove_applied_segments(through);
    } catch (const std::exception& e) {
      taken.clear();
      if (const auto failures = database_log_.failure(std::chrono::steady_clock::now()))
        spdlog::warn("hits: {} opens and clicks wait in {} for the database ({} failures): {}",
                     waiting(), dir_.string(), failures, e.what());
      std::unique_lock lock(mutex_);
      const auto now = std::chrono::steady_clock::now();
      if (stopping_applier_ && now >= give_up_at_) return;
      const auto until = stopping_applier_ ? std::min(now + retry, give_up_at_) : now + retry;
      wake_applier_.wait_until(lock, until, [&] {
        return stopping_applier_ && std::chrono::steady_clock::now() >= give_up_at_;
      });
      if (stopping_applier_ && std::chrono::steady_clock::now() >= give_up_at_) return;
      retry = std::min(retry * 2, options_.max_retry);
    }
  }
}

void HitJournal::stop(std::chrono::milliseconds grace) {
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    stopped_ = true;
    stopping_writer_ = true;
  }
  wake_writer_.notify_all();
  if (writer_.joinable()) writer_.join();
  {
    std::lock_guard lock(mutex_);
    stopping_applier_ = true;
    give_up_at_ = std::chrono::steady_clock::now() + grace;
  }
  wake_applier_.notify_all();
  if (applier_.joinable()) applier_.join();
  {
    std::lock_guard lock(mutex_);
    stopping_preparer_ = true;
  }
  wake_preparer_.notify_all();
  if (preparer_.joinable()) preparer_.join();
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  std::size_t left = 0;
  std::deque<Segment> segments;
  {
    std::lock_guard lock(mutex_);
    left = unapplied_count_;
    segments.swap(segments_);
  }
  std::error_code ignored;
  // A spare holds no line: it goes either way (a replay would find nothing in it).
  fs::remove(segment_path(next_segment_), ignored);
  const bool nothing_to_replay = left == 0 && !broken_;
  if (nothing_to_replay) {
    for (const auto& segment : segments) fs::remove(segment_path(segment.n), ignored);
    try {
      engagement_.forget_journal(name_);
    } catch (const std::exception& e) {
      // Only a mark of a journal that no longer exists: harmless, and never read again.
      spdlog::debug("hits: journal {} stays marked in the database: {}", name_, e.what());
    }
  } else if (left > 0) {
    spdlog::warn("hits: {} opens and clicks stay in {} for the next start to record", left,
                 dir_.string());
  }
  journal_files::release_lock(dir_, name_, lock_fd_, nothing_to_replay);
  lock_fd_ = -1;
}

std::size_t replay_dead_hit_journals(const fs::path& dir, store::Engagement& engagement,
                                     std::size_t max_batch) {
  std::size_t replayed = 0;
  journal_files::replay_dead(
      dir, kSegmentSuffix, [&](const std::string& journal, const journal_files::Segments& segments) {
        const std::uint64_t applied = engagement.journal_applied(journal);
        std::vector<store::Hit> hits;
        std::uint64_t last = 0;
        auto flush = [&] {
          if (hits.empty()) return;
          engagement.record_journaled(hits, journal, last);
          replayed += hits.size();
          hits.clear();
        };
        for (const auto& [n, path] : segments) {
          std::uint64_t line = 0;
          store::Hit hit;
          // A torn last line (power lost mid-write) was never answered: it is skipped.
          for (const auto& text : segment_lines(path)) {
            if (!parse_hit_journal_line(text, line, hit) || line <= applied || line <= last)
              continue;
            last = line;
            hits.push_back(std::move(hit));
            if (hits.size() >= max_batch) flush();
          }
        }
        flush();
        engagement.forget_journal(journal);
      });
  return replayed;
}

}  // namespace channeld::app
