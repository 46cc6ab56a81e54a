// catalog internals: reading a TOML table key by key. Every key a reader asks for is marked as
// known, so whatever remains at the end is a key channeld does not understand (usually a typo)
// and is refused with its file:line instead of being silently ignored. Type mismatches are
// reported the same way. Not part of the catalog's interface.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <toml.hpp>
#include <vector>

#include "model/model.hpp"

namespace channeld::catalog::detail {

// Parses a TOML file. An unreadable file or a syntax error becomes InputError("file:line", ...).
toml::value parse_toml(const std::string& path);

// "file:line" of a parsed value (for a table, the line of its header).
std::string where_of(const std::string& file, const toml::value& value);

// A view of one table of a parsed document; the document must outlive it.
class TomlTable {
 public:
  // `name` is how messages refer to the table: "" for the top level, "smtp", "steps[2]".
  TomlTable(const toml::value& table, std::string file, std::string name);

  const std::string& file() const { return file_; }
  // Where the table itself starts ("file:line"); the file alone for the top level.
  std::string where() const;
  // Where the value of `key` is written; the table's own place if the key is absent.
  std::string where(const std::string& key) const;
  // The key as messages name it: "smtp.timeout".
  std::string field(const std::string& key) const;
  // An error about `key`, located at its value and naming it: "f.toml:7: smtp.timeout: ...".
  InputError error(const std::string& key, const std::string& message) const;

  // The value of `key` (marking it known), or nullptr if absent.
  const toml::value* get(const std::string& key);

  std::optional<std::string> string(const std::string& key);
  std::string required_string(const std::string& key);
  std::optional<std::int64_t> integer(const std::string& key);
  std::optional<bool> boolean(const std::string& key);
  // An integer or a float.
  std::optional<double> number(const std::string& key);
  std::optional<std::vector<std::string>> strings(const std::string& key);
  // A sub-table, written as [a.b] or inline as b = { ... }.
  std::optional<TomlTable> table(const std::string& key);
  // An array of tables ([[steps]]); empty if absent.
  std::vector<TomlTable> tables(const std::string& key);

  // Throws InputError for the first key (in file order) nobody asked for.
  void refuse_unknown_keys() const;

 private:
  const toml::value& require(const std::string& key, toml::value_t type,
                             const std::string& expected);

  const toml::value* table_;
  std::string file_;
  std::string name_;
  std::set<std::string> known_;
};

}  // namespace channeld::catalog::detail
