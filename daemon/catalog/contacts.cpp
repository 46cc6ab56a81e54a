// ContactReader, contacts_digest and load_suppressions, over the streaming CSV reader.
#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>

#include "catalog/catalog.hpp"
#include "catalog/checks.hpp"
#include "catalog/csv.hpp"

namespace channeld::catalog {

namespace detail {

namespace {
constexpr auto kEof = std::char_traits<char>::eof();
}

CsvReader::CsvReader(const std::string& path) : buffer_(64 * 1024) {
  // The buffer must be installed before open() for libstdc++ to use it.
  file_.pubsetbuf(buffer_.data(), static_cast<std::streamsize>(buffer_.size()));
  if (file_.open(path, std::ios::in | std::ios::binary) == nullptr) {
    throw InputError(path, std::string("cannot read: ") + std::strerror(errno));
  }
  // Spreadsheet programs often save "CSV UTF-8" with a byte-order mark.
  std::array<char, 3> start{};
  auto got = file_.sgetn(start.data(), start.size());
  if (got != 3 || start != std::array<char, 3>{'\xEF', '\xBB', '\xBF'}) {
    file_.pubseekpos(0, std::ios::in);
  }
}

void CsvReader::read_quoted(std::string& field, CsvRecord& record) {
  const std::size_t opened_on = line_;
  for (;;) {
    int c = file_.sbumpc();
    if (c == kEof) {
      record.error =
          "a quoted field opened on line " + std::to_string(opened_on) + " is never closed";
      return;
    }
    if (c == '"') {
      if (file_.sgetc() != '"') return;
      file_.sbumpc();
    } else if (c == '\n') {
      ++line_;
    }
    field.push_back(static_cast<char>(c));
  }
}

bool CsvReader::next(CsvRecord& record) {
  record.fields.clear();
  record.error.clear();
  // Blank lines carry no record; a trailing one at the end of the file is the common case.
  for (int c = file_.sgetc(); c == '\n' || c == '\r'; c = file_.sgetc()) {
    file_.sbumpc();
    if (c == '\n') ++line_;
  }
  if (file_.sgetc() == kEof) return false;
  record.line = line_;

  std::string field;
  bool quoted = false;  // the current field was quoted and its closing quote has been read
  for (;;) {
    int c = file_.sbumpc();
    if (c == kEof || c == '\n' || (c == '\r' && file_.sgetc() == '\n')) {
      if (c == '\r') file_.sbumpc();
      if (c != kEof) ++line_;
      record.fields.push_back(std::move(field));
      return true;
    }
    if (c == ',') {
      record.fields.push_back(std::move(field));
      field.clear();
      quoted = false;
      continue;
    }
    if (c == '"' && field.empty() && !quoted) {
      read_quoted(field, record);
      quoted = true;
      continue;
    }
    // Past here the byte is data. Two cases RFC 4180 forbids are reported but read on to the
    // end of the record, so the next record starts where it should.
    if (record.error.empty()) {
      if (quoted) {
        record.error = "text after a closing quote (a quote inside a quoted field is written \"\")";
      } else if (c == '"') {
        record.error =
            "a quote inside an unquoted field (quote the whole field and double "
            "the quote: \"a \"\"b\"\"\")";
      }
    }
    field.push_back(static_cast<char>(c));
  }
}

}  // namespace detail

namespace {

constexpr std::array<const char*, 4> kRequiredColumns{"email", "first_name", "last_name",
                                                      "company"};
// A file with thousands of bad rows is one mistake repeated; listing the first ones is enough.
constexpr std::size_t kMaxListedProblems = 1000;

// The emails a file has had so far, as 64-bit hashes in an open-addressed table: about 16
// bytes per contact instead of the addresses. Two different emails with the same hash (odds
// about n^2 / 2^65: 3e-8 for a million rows) would have the second reported as a duplicate and
// skipped; that is the only effect of a collision.
class SeenEmails {
 public:
  // False if the email was seen before.
  bool insert(std::string_view email) {
    if ((count_ + 1) * 2 > slots_.size()) grow();
    if (!place(slots_, hash(email))) return false;
    ++count_;
    return true;
  }

 private:
  static std::uint64_t hash(std::string_view email) {
    // std::hash is 64-bit on our platforms; the splitmix64 finaliser spreads it over the
    // low bits linear probing indexes by. 0 marks an empty slot, so it is moved to 1.
    std::uint64_t h = std::hash<std::string_view>{}(email);
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h == 0 ? 1 : h;
  }

  static bool place(std::vector<std::uint64_t>& slots, std::uint64_t h) {
    std::size_t mask = slots.size() - 1;
    for (std::size_t i = h & mask;; i = (i + 1) & mask) {
      if (slots[i] == h) return false;
      if (slots[i] == 0) {
        slots[i] = h;
        return true;
      }
    }
  }

  void grow() {
    std::vector<std::uint64_t> bigger(slots_.empty() ? 1024 : slots_.size() * 2, 0);
    for (std::uint64_t h : slots_) {
      if (h != 0) place(bigger, h);
    }
    slots_.swap(bigger);
  }

  std::vector<std::uint64_t> slots_;
  std::size_t count_ = 0;
};

std::string where_line(const std::string& path, std::size_t line) {
  return path + ":" + std::to_string(line);
}

}  // namespace

struct ContactReader::Impl {
  std::string path;
  detail::CsvReader csv;
  detail::CsvRecord record;
  std::size_t column_count = 0;
  std::array<std::size_t, 4> required_index{};  // positions of kRequiredColumns
  std::vector<std::size_t> extra_index;
  std::vector<std::string> extra_columns;
  SeenEmails seen;
  std::vector<Problem> problems;
  std::size_t unlisted_problems = 0;
  bool finished = false;
  std::size_t field_bytes;
  std::vector<std::string> column_names;  // as written, for messages
  std::vector<std::string> missing_columns;

  Impl(const std::string& file, std::size_t field_limit)
      : path(file), csv(file), field_bytes(field_limit) {}

  // Why the current record cannot be a contact, or "". Every value is checked, not only those
  // the kits use today: a row planned into the outbox must render for any kit.
  std::string bad_field() const {
    for (std::size_t i = 0; i < record.fields.size(); ++i) {
      const std::string& value = record.fields[i];
      const std::string& name = column_names[i];
      if (value.size() > field_bytes) {
        return name + " is " + std::to_string(value.size()) +
               " bytes, over limits.contact_field_bytes (" + std::to_string(field_bytes) + ")";
      }
      if (auto at = detail::invalid_utf8_at(value); at != std::string_view::npos) {
        return name + " is not valid UTF-8 (byte " + std::to_string(at + 1) +
               "); save the file as UTF-8";
      }
    }
    // Names go into the To header, where a line break would start a header of its own.
    for (std::size_t r = 1; r <= 2; ++r) {
      if (!has_column(r)) continue;
      if (detail::has_control_character(record.fields[required_index[r]]))
        return std::string(kRequiredColumns[r]) + " contains a line break or control character";
    }
    return {};
  }

  // Whether required column `r` (an index into kRequiredColumns) is in the header.
  bool has_column(std::size_t r) const {
    return std::find(missing_columns.begin(), missing_columns.end(), kRequiredColumns[r]) ==
           missing_columns.end();
  }

  void report(std::size_t line, std::string message) {
    if (problems.size() < kMaxListedProblems) {
      problems.push_back(Problem{where_line(path, line), std::move(message)});
    } else {
      ++unlisted_problems;
    }
  }

  void read_header() {
    if (!csv.next(record)) {
      throw InputError(path,
                       "the file is empty; it needs a header row "
                       "email,first_name,last_name,company");
    }
    const std::string where = where_line(path, record.line);
    if (!record.error.empty()) throw InputError(where, "header row: " + record.error);
    column_count = record.fields.size();
    std::array<bool, 4> found{};
    std::vector<std::string> seen_names;
    for (std::size_t i = 0; i < record.fields.size(); ++i) {
      std::string name(detail::trim(record.fields[i]));
      if (detail::invalid_utf8_at(name) != std::string_view::npos) {
        throw InputError(where, "header column " + std::to_string(i + 1) + " is not valid UTF-8");
      }
      if (name.empty()) {
        throw InputError(where, "header column " + std::to_string(i + 1) + " has no name");
      }
      std::string lowered = detail::lower_ascii(name);
      bool required = false;
      for (std::size_t r = 0; r < kRequiredColumns.size(); ++r) {
        if (lowered == kRequiredColumns[r]) {
          name = lowered;
          required_index[r] = i;
          found[r] = true;
          required = true;
        }
      }
      if (std::find(seen_names.begin(), seen_names.end(), name) != seen_names.end()) {
        throw InputError(where, "header column '" + name + "' appears twice");
      }
      seen_names.push_back(name);
      column_names.push_back(name);
      if (!required) {
        extra_index.push_back(i);
        extra_columns.push_back(name);
      }
    }
    // Without addresses there is nothing to read. A missing name or company column costs only
    // the kits that show that field (validate_kit holds the partner back from those); its rows
    // read as empty there.
    if (!found[0]) {
      throw InputError(where,
                       "header row lacks email (required: email,first_name,last_name,"
                       "company, any order)");
    }
    for (std::size_t r = 1; r < kRequiredColumns.size(); ++r) {
      if (!found[r]) missing_columns.emplace_back(kRequiredColumns[r]);
    }
  }

  std::optional<Contact> next() {
    while (!finished && csv.next(record)) {
      if (!record.error.empty()) {
        report(record.line, record.error);
        continue;
      }
      if (record.fields.size() != column_count) {
        report(record.line, std::to_string(record.fields.size()) + " fields, but the header has " +
                                std::to_string(column_count));
        continue;
      }
      if (auto bad = bad_field(); !bad.empty()) {
        report(record.line, bad);
        continue;
      }
      std::string email = detail::lower_ascii(detail::trim(record.fields[required_index[0]]));
      if (email.empty()) {
        report(record.line, "email is empty");
        continue;
      }
      if (!detail::is_email(email)) {
        report(record.line, "'" + email + "' is not a valid email address");
        continue;
      }
      if (!seen.insert(email)) {
        report(record.line, "duplicate email '" + email + "': an earlier row has it");
        continue;
      }
      Contact contact;
      contact.email = std::move(email);
      if (has_column(1)) contact.first_name = std::move(record.fields[required_index[1]]);
      if (has_column(2)) contact.last_name = std::move(record.fields[required_index[2]]);
      if (has_column(3)) contact.company = std::move(record.fields[required_index[3]]);
      for (std::size_t i = 0; i < extra_index.size(); ++i) {
        contact.extra.emplace(extra_columns[i], std::move(record.fields[extra_index[i]]));
      }
      return contact;
    }
    if (!finished && unlisted_problems > 0) {
      problems.push_back(
          Problem{path, "and " + std::to_string(unlisted_problems) + " more bad rows not listed"});
    }
    finished = true;
    return std::nullopt;
  }
};

ContactReader::ContactReader(const std::string& path, std::size_t field_bytes)
    : impl_(std::make_unique<Impl>(path, field_bytes)) {
  impl_->read_header();
}

ContactReader::~ContactReader() = default;

std::optional<Contact> ContactReader::next() {
  return impl_->next();
}

const std::vector<std::string>& ContactReader::extra_columns() const {
  return impl_->extra_columns;
}

const std::vector<std::string>& ContactReader::missing_columns() const {
  return impl_->missing_columns;
}

const std::vector<Problem>& ContactReader::problems() const {
  return impl_->problems;
}

std::string contacts_digest(const std::string& path) {
  detail::Sha256 sha;
  sha.update_file(path);
  return sha.hex_digest();
}

std::vector<SuppressionRow> load_suppressions(const std::string& path,
                                              std::vector<Problem>& problems) {
  std::vector<SuppressionRow> rows;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return rows;

  detail::CsvReader csv(path);
  detail::CsvRecord record;
  if (!csv.next(record)) return rows;
  const std::string header_where = where_line(path, record.line);
  if (!record.error.empty()) throw InputError(header_where, "header row: " + record.error);
  std::optional<std::size_t> email_at, partner_at, reason_at;
  for (std::size_t i = 0; i < record.fields.size(); ++i) {
    std::string name = detail::lower_ascii(detail::trim(record.fields[i]));
    // A misspelt partner_id column would silently turn every row into a suppression for all
    // partners, so unknown columns are refused rather than ignored.
    auto* slot = name == "email"        ? &email_at
                 : name == "partner_id" ? &partner_at
                 : name == "reason"     ? &reason_at
                                        : nullptr;
    if (slot == nullptr) {
      throw InputError(header_where,
                       "unknown column '" + name + "' (the columns are email,partner_id,reason)");
    }
    if (*slot) throw InputError(header_where, "column '" + name + "' appears twice");
    *slot = i;
  }
  if (!email_at) throw InputError(header_where, "header row lacks the email column");

  const std::size_t column_count = record.fields.size();
  while (csv.next(record)) {
    const std::string where = where_line(path, record.line);
    if (!record.error.empty()) {
      problems.push_back(Problem{where, record.error});
      continue;
    }
    if (record.fields.size() != column_count) {
      problems.push_back(Problem{where, std::to_string(record.fields.size()) +
                                            " fields, but the header has " +
                                            std::to_string(column_count)});
      continue;
    }
    SuppressionRow row;
    row.email = detail::lower_ascii(detail::trim(record.fields[*email_at]));
    if (!detail::is_email(row.email)) {
      problems.push_back(Problem{where, "'" + row.email + "' is not a valid email address"});
      continue;
    }
    if (partner_at) row.partner_id = std::string(detail::trim(record.fields[*partner_at]));
    if (!row.partner_id.empty() && !detail::is_partner_id(row.partner_id)) {
      problems.push_back(Problem{where, "'" + row.partner_id + "' is not a partner id"});
      continue;
    }
    if (reason_at) row.reason = std::move(record.fields[*reason_at]);
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace channeld::catalog
