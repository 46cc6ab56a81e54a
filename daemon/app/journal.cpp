#include "app/journal.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <utility>

namespace channeld::app {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kLockSuffix = ".lock";
constexpr std::string_view kSegmentSuffix = ".journal";

std::string safe_stem(const std::string& owner) {
  std::string out = owner;
  for (char& c : out) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '-' || c == '_' || c == ':';
    if (!plain) c = '_';
  }
  return out.empty() ? "_" : out;
}

std::string errno_text() {
  return std::strerror(errno);
}

// "<stem>.<n>.journal" -> n, for segments of `stem`.
bool segment_number(const std::string& name, const std::string& stem, std::uint64_t& n) {
  if (!name.starts_with(stem + ".") || !name.ends_with(kSegmentSuffix)) return false;
  const std::string middle =
      name.substr(stem.size() + 1, name.size() - stem.size() - 1 - kSegmentSuffix.size());
  if (middle.empty() || middle.find_first_not_of("0123456789") != std::string::npos) return false;
  n = std::stoull(middle);
  return true;
}

}  // namespace

std::string journal_line(const std::string& owner, const store::Outcome& o) {
  nlohmann::json j = {
      {"owner", owner},
      {"id", o.id},
      {"kind", store::to_string(o.kind)},
      {"detail", o.detail},
      {"retry_at",
       std::chrono::duration_cast<std::chrono::seconds>(o.retry_at.time_since_epoch()).count()},
  };
  if (!o.message_id.empty()) j["message_id"] = o.message_id;
  if (o.rendered_version != 0) j["rendered_version"] = o.rendered_version;
  // The verdict's time, so that a replay after a crash records when the message was sent,
  // not when the journal was found.
  const SysTime at =
      o.at == SysTime{} ? std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now())
                        : o.at;
  j["at"] = at.time_since_epoch().count();
  // Invalid UTF-8 in a server's reply must not make the line unwritable.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

bool parse_journal_line(const std::string& line, std::string& owner, store::Outcome& o) {
  try {
    auto j = nlohmann::json::parse(line);
    owner = j.at("owner").get<std::string>();
    o = store::Outcome{};
    o.id = j.at("id").get<std::int64_t>();
    const auto kind = store::outcome_kind_from(j.at("kind").get<std::string>());
    if (!kind) return false;
    o.kind = *kind;
    o.detail = j.value("detail", "");
    o.retry_at = SysTime(std::chrono::seconds(j.value("retry_at", std::int64_t{0})));
    o.message_id = j.value("message_id", "");
    o.rendered_version = j.value("rendered_version", 0);
    // Lines written before verdicts carried their time have none: recorded as of the replay.
    o.at = SysTime(std::chrono::seconds(j.value("at", std::int64_t{0})));
    return !owner.empty();
  } catch (const std::exception&) {
    return false;
  }
}

Journal::Journal(fs::path dir, std::string owner)
    : dir_(std::move(dir)), owner_(std::move(owner)), stem_(safe_stem(owner_)) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) {
    throw std::runtime_error("paths.state: cannot create " + dir_.string() + ": " + ec.message());
  }
  const fs::path lock = dir_ / (stem_ + std::string(kLockSuffix));
  lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0 || ::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    const std::string why = errno_text();
    if (lock_fd_ >= 0) ::close(lock_fd_);
    throw std::runtime_error("paths.state: cannot lock " + lock.string() + ": " + why);
  }
}

Journal::~Journal() {
  if (fd_ >= 0) ::close(fd_);
  if (segments_.empty()) {
    // Nothing left to replay: only a dead daemon's files are looked at, and ours go now.
    std::error_code ignored;
    fs::remove(dir_ / (stem_ + std::string(kLockSuffix)), ignored);
  }
  ::close(lock_fd_);
}

fs::path Journal::segment_path(std::uint64_t n) const {
  return dir_ / (stem_ + "." + std::to_string(n) + std::string(kSegmentSuffix));
}

std::string Journal::append(const store::Outcome& outcome) {
  if (fd_ < 0) {
    fd_ = ::open(segment_path(segment_).c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd_ < 0) return "cannot open " + segment_path(segment_).string() + ": " + errno_text();
    segments_.push_back(segment_);
  }
  const std::string line = journal_line(owner_, outcome);
  std::size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return "cannot write " + segment_path(segment_).string() + ": " + errno_text();
    done += static_cast<std::size_t>(n);
  }
  return {};
}

std::uint64_t Journal::cut() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  return ++segment_;
}

void Journal::recorded(std::uint64_t mark) {
  while (!segments_.empty() && segments_.front() < mark) {
    std::error_code ignored;
    fs::remove(segment_path(segments_.front()), ignored);
    segments_.erase(segments_.begin());
  }
}

std::size_t replay_dead_journals(
    const fs::path& dir,
    const std::function<void(const std::string&, const std::vector<store::Outcome>&)>& record) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return 0;
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  std::size_t replayed = 0;
  for (const auto& name : names) {
    if (!name.ends_with(kLockSuffix)) continue;
    const std::string stem = name.substr(0, name.size() - kLockSuffix.size());
    const fs::path lock = dir / name;
    const int fd = ::open(lock.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) continue;                       // replayed and removed by another daemon meanwhile
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {  // its daemon is alive
      ::close(fd);
      continue;
    }
    std::map<std::uint64_t, fs::path> segments;
    for (const auto& other : names) {
      std::uint64_t n = 0;
      if (segment_number(other, stem, n)) segments[n] = dir / other;
    }
    // Later lines win: a row's verdict is written once, but replaying in order is what a reader
    // expects.
    std::map<std::string, std::map<std::int64_t, store::Outcome>> by_owner;
    for (const auto& [n, path] : segments) {
      std::ifstream in(path);
      std::string line, owner;
      store::Outcome outcome;
      while (std::getline(in, line)) {
        if (parse_journal_line(line, owner, outcome)) by_owner[owner][outcome.id] = outcome;
      }
    }
    try {
      for (const auto& [owner, rows] : by_owner) {
        std::vector<store::Outcome> outcomes;
        outcomes.reserve(rows.size());
        for (const auto& [id, o] : rows) outcomes.push_back(o);
        record(owner, outcomes);
        replayed += outcomes.size();
      }
    } catch (...) {
      ::close(fd);
      throw;
    }
    for (const auto& [n, path] : segments) fs::remove(path, ec);
    fs::remove(lock, ec);
    ::close(fd);
  }
  return replayed;
}

}  // namespace channeld::app
