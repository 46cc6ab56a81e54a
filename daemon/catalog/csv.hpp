// catalog internals: an RFC 4180 reader that streams records from a file one at a time, for
// contact CSVs (up to millions of rows) and the suppression list. Not part of the catalog's
// interface.
#pragma once

#include <cstddef>
#include <fstream>
#include <string>
#include <vector>

namespace channeld::catalog::detail {

struct CsvRecord {
  std::vector<std::string> fields;
  std::size_t line = 0;  // physical line the record starts on (1-based)
  std::string error;     // non-empty: the record is malformed; fields hold what could be read
};

// Quoted fields may hold commas, doubled quotes and line breaks; records end with LF or CRLF; a
// UTF-8 byte-order mark before the first record is skipped; blank lines between records are
// skipped. Reads through a 64 KB buffer one byte at a time, so memory stays flat whatever the
// file size.
class CsvReader {
 public:
  // Throws InputError naming `path` if the file cannot be opened.
  explicit CsvReader(const std::string& path);
  CsvReader(const CsvReader&) = delete;
  CsvReader& operator=(const CsvReader&) = delete;

  // Fills `record` with the next record; false at end of file.
  bool next(CsvRecord& record);

 private:
  void read_quoted(std::string& field, CsvRecord& record);

  std::vector<char> buffer_;
  std::filebuf file_;
  std::size_t line_ = 1;
};

}  // namespace channeld::catalog::detail
