#include "app/journal_files.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace channeld::app::journal_files {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kLockSuffix = ".lock";

fs::path lock_path(const fs::path& dir, const std::string& stem) {
  return dir / (stem + std::string(kLockSuffix));
}

}  // namespace

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

int take_lock(const fs::path& dir, const std::string& stem) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    throw std::runtime_error("paths.state: cannot create " + dir.string() + ": " + ec.message());
  }
  const fs::path lock = lock_path(dir, stem);
  const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0 || ::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const std::string why = errno_text();
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("paths.state: cannot lock " + lock.string() + ": " + why);
  }
  return fd;
}

void release_lock(const fs::path& dir, const std::string& stem, int fd, bool remove_file) {
  if (remove_file) {
    std::error_code ignored;
    fs::remove(lock_path(dir, stem), ignored);
  }
  if (fd >= 0) ::close(fd);
}

bool segment_number(std::string_view name, std::string_view stem, std::string_view suffix,
                    std::uint64_t& n) {
  if (name.size() <= stem.size() + 1 + suffix.size() || !name.starts_with(stem) ||
      name[stem.size()] != '.' || !name.ends_with(suffix)) {
    return false;
  }
  const std::string_view middle =
      name.substr(stem.size() + 1, name.size() - stem.size() - 1 - suffix.size());
  const auto [end, error] = std::from_chars(middle.data(), middle.data() + middle.size(), n);
  return error == std::errc{} && end == middle.data() + middle.size();
}

bool write_all(int fd, std::string_view text) {
  while (!text.empty()) {
    const ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

void replay_dead(const fs::path& dir, std::string_view suffix,
                 const std::function<void(const std::string& stem, const Segments&)>& replay) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
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
    Segments segments;
    for (const auto& other : names) {
      std::uint64_t n = 0;
      if (segment_number(other, stem, suffix, n)) segments[n] = dir / other;
    }
    try {
      replay(stem, segments);
    } catch (...) {
      ::close(fd);
      throw;
    }
    for (const auto& [n, path] : segments) fs::remove(path, ec);
    fs::remove(lock, ec);
    ::close(fd);
  }
}

}  // namespace channeld::app::journal_files
