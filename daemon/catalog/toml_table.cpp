#include "catalog/toml_table.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string_view>

#include "catalog/checks.hpp"

namespace channeld::catalog::detail {

namespace {

const char* describe(toml::value_t type) {
  switch (type) {
    case toml::value_t::boolean:
      return "true or false";
    case toml::value_t::integer:
      return "an integer";
    case toml::value_t::floating:
      return "a number";
    case toml::value_t::string:
      return "a string";
    case toml::value_t::offset_datetime:
      return "a date-time with offset";
    case toml::value_t::local_datetime:
      return "a local date-time";
    case toml::value_t::local_date:
      return "a date";
    case toml::value_t::local_time:
      return "a time";
    case toml::value_t::array:
      return "an array";
    case toml::value_t::table:
      return "a table";
    case toml::value_t::empty:
      break;
  }
  return "empty";
}

// toml11 formats a syntax error as a block quoting the source, sometimes in several places:
//   [error] toml::insert_value: table ("a") already exists.
//    --> kit.toml
//      |
//    1 | [a]
//      | ~~~ table already exists here
//    ...
//    5 | [a]
//      | ~~~ table defined twice
// The offending place is the last one quoted. Its line is taken from the quote rather than
// from the exception's location(), which says line 1 for some errors (invalid dates).
struct SyntaxReport {
  std::optional<unsigned long> line;
  std::string message;  // the summary, with the last quote's note in parentheses
};

SyntaxReport read_syntax_error(const std::string& what) {
  SyntaxReport report;
  std::string_view text(what);
  std::string_view summary = text.substr(0, text.find('\n'));
  if (summary.starts_with("[error] ")) summary.remove_prefix(8);
  if (summary.starts_with("toml::")) {
    auto colon = summary.find(": ");
    if (colon != std::string_view::npos) summary.remove_prefix(colon + 2);
  }
  std::string_view note;
  for (std::size_t start = 0; start < text.size();) {
    std::size_t end = std::min(text.find('\n', start), text.size());
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    auto bar = line.find(" | ");
    if (bar == std::string_view::npos) continue;
    std::string_view gutter = detail::trim(line.substr(0, bar));
    std::string_view body = line.substr(bar + 3);
    if (!gutter.empty() && gutter.find_first_not_of("0123456789") == std::string_view::npos) {
      report.line = std::stoul(std::string(gutter));
    } else if (gutter.empty()) {
      // A marker line under the quote: spaces, then ^--- or ~~~, then the note.
      auto marks = body.find_first_not_of(' ');
      if (marks != std::string_view::npos && (body[marks] == '^' || body[marks] == '~')) {
        auto note_start = body.find_first_not_of("^~- ", marks);
        if (note_start != std::string_view::npos) note = body.substr(note_start);
      }
    }
  }
  report.message = std::string(summary);
  if (!note.empty()) report.message += " (" + std::string(note) + ")";
  return report;
}

}  // namespace

toml::value parse_toml(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path, std::string("cannot read: ") + std::strerror(errno));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // TOML allows no NUL byte anywhere, and Debian's toml11 3.7 reads one byte past its buffer
  // on some inputs that have them (found by the partner_file fuzz target): refused here first.
  if (const auto nul = text.find('\0'); nul != std::string::npos) {
    const auto line = 1 + std::count(text.begin(), text.begin() + static_cast<long>(nul), '\n');
    throw InputError(path + ":" + std::to_string(line),
                     "NUL byte: the file is binary or damaged, not TOML");
  }
  // TOML is UTF-8, and the same parser over-reads on some malformed bytes inside quoted keys
  // (found by the kit_loader and partner_file fuzz targets): refused here, with the line.
  if (const auto bad = invalid_utf8_at(text); bad != std::string::npos) {
    const auto line = 1 + std::count(text.begin(), text.begin() + static_cast<long>(bad), '\n');
    throw InputError(path + ":" + std::to_string(line), "not valid UTF-8 (TOML files are UTF-8)");
  }
  // A final newline, so that no token can run into the end of the buffer (where the same
  // parser's error paths read past it); it changes nothing a TOML document means.
  if (text.empty() || text.back() != '\n') text += '\n';
  std::istringstream stream(std::move(text));
  try {
    return toml::parse(stream, path);
  } catch (const toml::syntax_error& e) {
    SyntaxReport report = read_syntax_error(e.what());
    unsigned long line = report.line.value_or(e.location().line());
    throw InputError(path + ":" + std::to_string(line), report.message);
  }
}

std::string where_of(const std::string& file, const toml::value& value) {
  return file + ":" + std::to_string(value.location().line());
}

TomlTable::TomlTable(const toml::value& table, std::string file, std::string name)
    : table_(&table), file_(std::move(file)), name_(std::move(name)) {}

std::string TomlTable::where() const {
  return name_.empty() ? file_ : where_of(file_, *table_);
}

std::string TomlTable::where(const std::string& key) const {
  const auto& t = table_->as_table();
  auto it = t.find(key);
  return it == t.end() ? where() : where_of(file_, it->second);
}

std::string TomlTable::field(const std::string& key) const {
  return name_.empty() ? key : name_ + "." + key;
}

InputError TomlTable::error(const std::string& key, const std::string& message) const {
  return InputError(where(key), field(key) + ": " + message);
}

const toml::value* TomlTable::get(const std::string& key) {
  known_.insert(key);
  const auto& t = table_->as_table();
  auto it = t.find(key);
  return it == t.end() ? nullptr : &it->second;
}

const toml::value& TomlTable::require(const std::string& key, toml::value_t type,
                                      const std::string& expected) {
  const toml::value* v = get(key);
  if (v == nullptr) throw InputError(where(), "missing required key '" + field(key) + "'");
  if (v->type() != type) {
    throw error(key, "must be " + expected + ", not " + describe(v->type()));
  }
  return *v;
}

std::optional<std::string> TomlTable::string(const std::string& key) {
  if (get(key) == nullptr) return std::nullopt;
  return require(key, toml::value_t::string, "a string").as_string().str;
}

std::string TomlTable::required_string(const std::string& key) {
  return require(key, toml::value_t::string, "a string").as_string().str;
}

std::optional<std::int64_t> TomlTable::integer(const std::string& key) {
  if (get(key) == nullptr) return std::nullopt;
  return require(key, toml::value_t::integer, "an integer").as_integer();
}

std::optional<bool> TomlTable::boolean(const std::string& key) {
  if (get(key) == nullptr) return std::nullopt;
  return require(key, toml::value_t::boolean, "true or false").as_boolean();
}

std::optional<double> TomlTable::number(const std::string& key) {
  const toml::value* v = get(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_integer()) return static_cast<double>(v->as_integer());
  return require(key, toml::value_t::floating, "a number").as_floating();
}

std::optional<std::vector<std::string>> TomlTable::strings(const std::string& key) {
  if (get(key) == nullptr) return std::nullopt;
  std::vector<std::string> out;
  for (const auto& item : require(key, toml::value_t::array, "an array of strings").as_array()) {
    if (!item.is_string()) {
      throw InputError(where_of(file_, item),
                       field(key) + ": must hold strings, not " + describe(item.type()));
    }
    out.push_back(item.as_string().str);
  }
  return out;
}

std::optional<TomlTable> TomlTable::table(const std::string& key) {
  if (get(key) == nullptr) return std::nullopt;
  return TomlTable(require(key, toml::value_t::table, "a table"), file_, field(key));
}

std::vector<TomlTable> TomlTable::tables(const std::string& key) {
  std::vector<TomlTable> out;
  if (get(key) == nullptr) return out;
  const auto& items =
      require(key, toml::value_t::array, "an array of tables ([[" + key + "]])").as_array();
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (!items[i].is_table()) {
      throw InputError(where_of(file_, items[i]),
                       field(key) + ": must be written as [[" + key + "]] tables");
    }
    out.emplace_back(items[i], file_, field(key) + "[" + std::to_string(i + 1) + "]");
  }
  return out;
}

void TomlTable::refuse_unknown_keys() const {
  const std::pair<const std::string, toml::value>* first = nullptr;
  auto line_of = [](const toml::value& v) { return v.location().line(); };
  for (const auto& entry : table_->as_table()) {
    if (known_.count(entry.first) != 0) continue;
    if (first == nullptr || line_of(entry.second) < line_of(first->second) ||
        (line_of(entry.second) == line_of(first->second) && entry.first < first->first)) {
      first = &entry;
    }
  }
  if (first == nullptr) return;
  std::string in = name_.empty()         ? "at the top level"
                   : name_.back() == ']' ? "in " + name_
                                         : "in [" + name_ + "]";
  throw InputError(where_of(file_, first->second), "unknown key '" + first->first + "' " + in);
}

}  // namespace channeld::catalog::detail
