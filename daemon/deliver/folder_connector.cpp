// The `paths.outbox` mode: each message becomes files instead of an SMTP transaction.

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>

#include "deliver/connector.hpp"

namespace channeld::deliver {
namespace {

namespace fs = std::filesystem;

// partner_id is checked at load ([a-z0-9-]+), but a name that could leave `dir` is refused
// here too: this is the one place that turns it into a path.
bool plain_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find_first_of(std::string_view("/\0", 2)) == std::string::npos;
}

// file_stem ends in the contact's address, whose local part may legally hold a '/'.
std::string file_name_from(std::string stem) {
  for (char& c : stem) {
    if (c == '/' || c == '\0') c = '_';
  }
  if (stem.starts_with('.')) stem.insert(0, "_");
  return stem;
}

// Writes `content` to `path` through a temporary name in the same folder and a rename, so a
// reader never sees half a file. Returns the error, or nullopt.
std::optional<std::string> write_atomically(const fs::path& path, const std::string& content) {
  fs::path temp = path;
  temp += ".tmp";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    out.close();
    if (!out) {
      std::string error = "cannot write " + temp.string() + ": " + std::strerror(errno);
      std::error_code ignored;
      fs::remove(temp, ignored);
      return error;
    }
  }
  std::error_code ec;
  fs::rename(temp, path, ec);
  if (ec) {
    fs::remove(temp, ec);
    return "cannot rename to " + path.string() + ": " + ec.message();
  }
  return std::nullopt;
}

class FolderConnector final : public EmailConnector {
 public:
  FolderConnector(boost::asio::io_context& io, std::string dir) : io_(io), dir_(std::move(dir)) {}

  void send(OutgoingEmail email, Done done) override {
    SendResult result = write(email);
    ++*pending_;
    // Completion is posted even though the work is done, so `done` never runs inside send().
    boost::asio::post(
        io_, [pending = pending_, done = std::move(done), result = std::move(result)]() mutable {
          --*pending;
          done(std::move(result));
        });
  }

  std::size_t in_flight() const override { return *pending_; }
  // Each send is done inside send(); this only bounds how many results wait to be posted.
  std::size_t parallelism() const override { return 64; }

  // Files are written inside send(); nothing is ever running to abort, and the posted results
  // are true (the files exist), so they are delivered as they are.
  void cancel_all() override {}
  bool wants_html() const override { return true; }

 private:
  SendResult write(const OutgoingEmail& email) const {
    SendResult result;
    result.id = email.id;
    auto started = std::chrono::steady_clock::now();
    if (started > email.deadline) {
      result.verdict = Verdict::unsent;
      result.detail = "not started: its deadline passed while it waited";
      return result;
    }
    if (!plain_name(email.partner_id) || email.file_stem.empty()) {
      result.verdict = Verdict::failed;
      result.detail = "no usable file name for partner '" + email.partner_id + "' and stem '" +
                      email.file_stem + "'";
      return result;
    }
    fs::path folder = fs::path(dir_) / email.partner_id;
    std::string name = file_name_from(email.file_stem);
    std::error_code ec;
    fs::create_directories(folder, ec);
    std::optional<std::string> error;
    if (ec) error = "cannot create " + folder.string() + ": " + ec.message();
    // The .eml goes last: once it is there, its .html is too.
    if (!error && !email.html.empty())
      error = write_atomically(folder / (name + ".html"), email.html);
    if (!error) error = write_atomically(folder / (name + ".eml"), email.mime);
    // A full disk or a permission fixed later must not cost the message.
    result.verdict = error ? Verdict::retry : Verdict::sent;
    result.detail = error ? *error : (folder / (name + ".eml")).string();
    result.latency = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - started);
    return result;
  }

  boost::asio::io_context& io_;
  std::string dir_;
  // Shared with the posted completions, which may run after the connector is gone.
  std::shared_ptr<std::size_t> pending_ = std::make_shared<std::size_t>(0);
};

}  // namespace

std::unique_ptr<EmailConnector> make_folder_connector(boost::asio::io_context& io,
                                                      std::string dir) {
  return std::make_unique<FolderConnector>(io, std::move(dir));
}

}  // namespace channeld::deliver
