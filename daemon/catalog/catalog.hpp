// catalog: reads what users write (channeld.toml, partner files, contact CSVs, suppression CSV,
// kit folders) into model types, with errors that name file and line. All functions here run
// on whichever thread calls them (the app calls them off the network I/O thread); they touch
// only the filesystem, never the database. The formats are documented in docs/formats.md.
// Watching the folders for changes is catalog/watcher.hpp.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/model.hpp"
#include "render/render.hpp"

namespace channeld::catalog {

// A problem with one file or one row that did not stop the rest from loading.
struct Problem {
  std::string where;  // "partners/acme-it.csv:17"
  std::string message;
  std::string text() const { return where + ": " + message; }
};

// Reads and checks channeld.toml. Unknown keys, wrong types, bad URLs or durations throw
// InputError with file:line. Relative paths are resolved against the config file's folder.
Config load_config(const std::string& path);

// Parses durations as used in config and kits: "48h", "0d", "90m", "30s".
std::chrono::seconds parse_duration(const std::string& text, const std::string& where);

struct PartnerSet {
  std::map<std::string, Partner> partners;  // by id
  std::vector<Problem> problems;            // files that did not load
  // Partner files present but refused, by file stem (the id they should have): their partner
  // is broken, not removed, so its queued mail waits instead of being settled.
  std::map<std::string, std::string> broken;
};

// Loads every `<id>.toml` in `dir`. A bad file is reported in `problems` and `broken` and
// skipped; the other partners load. The contacts file and webhook secret_file must resolve
// (symlinks followed) inside `dir`.
PartnerSet load_partners(const std::string& dir);

// Loads one partner file; `dir` is the partners folder its relative paths are resolved
// against (the file itself may be elsewhere: a last good copy). Throws InputError.
Partner load_partner_file(const std::string& file, const std::string& dir);

// Streams a contacts CSV (RFC 4180, UTF-8, header row) one row at a time, so a million-row file
// never sits in memory. Bad rows (wrong field count, invalid email, duplicate email, a field
// that is not UTF-8 or longer than `field_bytes`, a line break or control character in a name)
// are reported with file:line and the column, and skipped.
class ContactReader {
 public:
  // Throws InputError if the file cannot be opened, is empty, or its header lacks the email
  // column or has an empty, duplicate or non-UTF-8 column name: nothing in such a file can be
  // trusted. A header without first_name, last_name or company is read (see missing_columns()).
  explicit ContactReader(const std::string& path, std::size_t field_bytes = 4096);
  ~ContactReader();
  ContactReader(const ContactReader&) = delete;
  ContactReader& operator=(const ContactReader&) = delete;

  // The next good row, or nullopt at end of file.
  std::optional<Contact> next();
  // Header columns beyond email,first_name,last_name,company.
  const std::vector<std::string>& extra_columns() const;
  // Which of first_name, last_name, company the header lacks, in that order. Rows read as
  // empty there; validate_kit holds the partner back from every kit that shows such a field.
  const std::vector<std::string>& missing_columns() const;
  // Rows skipped so far. After 1000 of them the rest are only counted, in one last problem
  // added at end of file: a file with that many bad rows has one mistake repeated.
  const std::vector<Problem>& problems() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// SHA-256 of a contacts file's bytes (hex), used to notice a changed audience without keeping
// it in memory. Content only: a file touched or copied unchanged keeps its digest.
std::string contacts_digest(const std::string& path);

// One row of `paths.partners/suppressions.csv` (email,partner_id,reason; partner_id empty = all
// partners). Imported into the store, which never removes a suppression on re-import.
// A missing file is an empty list. A bad header (no email column, an unknown column) throws
// InputError; bad rows go to `problems` with file:line and are skipped.
struct SuppressionRow {
  std::string email;
  std::string partner_id;
  std::string reason;
};
std::vector<SuppressionRow> load_suppressions(const std::string& path,
                                              std::vector<Problem>& problems);

// Parses kit.toml in `folder` and checks its structure: id matches the folder, unknown keys,
// bad dates, bad durations, step channels, duplicate step ids. Throws InputError with file:line.
Kit load_kit(const std::string& folder);

// A kit that passed every check, with its compiled templates.
struct ValidKit {
  Kit kit;
  std::shared_ptr<const render::KitTemplates> templates;
  // Eligible partners this kit cannot be rendered for (a variable their data lacks, a contacts
  // file that cannot be read or lacks a column this kit shows, a subject their data would break
  // into two lines), by id, with why. Only they are held back: nothing is planned for
  // them and their queued mail of this kit waits until a reload clears the problem.
  std::map<std::string, std::string> held_partners{};
};

// Full pre-flight of a kit folder: load_kit, compile its templates (within config.limits, every
// file inside the kit folder or paths.templates), and a trial render for every eligible partner
// (with that partner's contact CSV columns). A problem that only some partners have holds back
// those partners (ValidKit::held_partners); one every eligible partner has refuses the kit.
// Throws InputError with everything that is wrong.
ValidKit validate_kit(const std::string& folder, const Config& config, const PartnerSet& partners,
                      const std::string& link_secret);

// True for a kit folder still being copied: no kit.toml yet, a dot-name or a name ending in
// ".tmp"/".part", or a file changed less than `quiet` ago. Such folders are skipped silently and
// looked at again on the next change.
bool looks_incomplete(const std::string& folder, std::chrono::milliseconds quiet);

}  // namespace channeld::catalog
