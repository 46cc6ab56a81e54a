// store/migrations: the schema this binary ships, compiled in from store/migrations/*.sql by a
// CMake step (see CMakeLists.txt). Internal to the store component; Store::migrate() applies
// them. Immutable static data, safe from any thread.
#pragma once

#include <span>
#include <string_view>

namespace channeld::store {

struct Migration {
  int version;            // NNNN of the file name; strictly increasing in the table
  std::string_view file;  // "0001_outbox.sql", for error messages
  std::string_view sql;   // the file's text, run verbatim
};

// Every migration, in version order.
std::span<const Migration> migrations();

}  // namespace channeld::store
