#include "app/journal.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <utility>

#include "app/journal_files.hpp"

namespace channeld::app {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kSegmentSuffix = ".journal";

using journal_files::errno_text;

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
    : dir_(std::move(dir)),
      owner_(std::move(owner)),
      stem_(journal_files::safe_stem(owner_)),
      lock_fd_(journal_files::take_lock(dir_, stem_)) {}

Journal::~Journal() {
  if (fd_ >= 0) ::close(fd_);
  // Nothing left to replay: only a dead daemon's files are looked at, and ours go now.
  journal_files::release_lock(dir_, stem_, lock_fd_, segments_.empty());
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
  if (!journal_files::write_all(fd_, line))
    return "cannot write " + segment_path(segment_).string() + ": " + errno_text();
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
  std::size_t replayed = 0;
  journal_files::replay_dead(
      dir, kSegmentSuffix, [&](const std::string&, const journal_files::Segments& segments) {
        // Later lines win: a row's verdict is written once, but replaying in order is what a
        // reader expects.
        std::map<std::string, std::map<std::int64_t, store::Outcome>> by_owner;
        for (const auto& [n, path] : segments) {
          std::ifstream in(path);
          std::string line, owner;
          store::Outcome outcome;
          while (std::getline(in, line)) {
            if (parse_journal_line(line, owner, outcome)) by_owner[owner][outcome.id] = outcome;
          }
        }
        for (const auto& [owner, rows] : by_owner) {
          std::vector<store::Outcome> outcomes;
          outcomes.reserve(rows.size());
          for (const auto& [id, o] : rows) outcomes.push_back(o);
          record(owner, outcomes);
          replayed += outcomes.size();
        }
      });
  return replayed;
}

}  // namespace channeld::app
