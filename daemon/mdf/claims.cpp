// Claims as users write them: periods, the CSV file and the JSON body, into Claim values.
#include <charconv>
#include <cstdio>

#include "mdf/mdf.hpp"

namespace channeld::mdf {

namespace {

bool all_digits(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int to_int(std::string_view digits) {
  int value = 0;
  std::from_chars(digits.data(), digits.data() + digits.size(), value);
  return value;
}

std::chrono::year_month_day parse_date(std::string_view text, const std::string& where) {
  auto bad = [&] {
    return InputError(where, "'" + std::string(text) + "' is not a date such as \"2026-12-01\"");
  };
  if (text.size() != 10 || text[4] != '-' || text[7] != '-' || !all_digits(text.substr(0, 4)) ||
      !all_digits(text.substr(5, 2)) || !all_digits(text.substr(8, 2))) {
    throw bad();
  }
  const std::chrono::year_month_day day{std::chrono::year{to_int(text.substr(0, 4))},
                                        std::chrono::month{unsigned(to_int(text.substr(5, 2)))},
                                        std::chrono::day{unsigned(to_int(text.substr(8, 2)))}};
  if (!day.ok()) throw bad();
  return day;
}

// Letters, digits, '-', '_' and '.': an id no spreadsheet can make a working formula of.
bool plain_id(std::string_view value) {
  return std::all_of(value.begin(), value.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

// Finance opens the report's CSV in a spreadsheet, which runs a cell starting with '=', '+',
// '-' or '@' as a formula (=HYPERLINK(...) sending the sheet's data away), quoted or not. A
// plain id such as a kit's "-beta" makes no formula that does anything, so a leading '-' is
// refused only with other characters.
void check_not_formula(const std::string& value, const std::string& where) {
  if (value.empty() || std::string_view("=+-@").find(value.front()) == std::string_view::npos)
    return;
  if (value.front() == '-' && plain_id(value)) return;
  throw InputError(where, "'" + value +
                              "' must not start with '=', '+', '-' or '@': a spreadsheet would "
                              "run it as a formula");
}

// Ids travel into reasons, file names of nobody and CSV cells: printable ASCII without spaces
// keeps every one of them unambiguous.
void check_id(const std::string& value, const std::string& where, bool lower_dash_only) {
  if (value.empty()) throw InputError(where, "must not be empty");
  if (value.size() > 200) throw InputError(where, "is longer than 200 characters");
  for (char c : value) {
    const bool ok = lower_dash_only ? ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')
                                    : (c > ' ' && c < 0x7f);
    if (!ok) {
      throw InputError(where, "'" + value + "' must be " +
                                  (lower_dash_only ? "lower-case letters, digits and '-'"
                                                   : "printable ASCII without spaces"));
    }
  }
}

// RFC 4180 records of a whole (small) file: claims files are written by people, a few hundred
// rows at most, so reading them whole keeps this pure. Each record keeps its first line.
struct Record {
  std::vector<std::string> fields;
  std::size_t line = 0;
  std::string error;
};

std::vector<Record> csv_records(std::string_view text) {
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  std::vector<Record> records;
  std::size_t line = 1;
  std::size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '\n' || (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n')) {
      i += text[i] == '\r' ? 2 : 1;  // blank line between records
      ++line;
      continue;
    }
    Record record;
    record.line = line;
    std::string field;
    bool done = false;
    while (!done) {
      if (i < text.size() && text[i] == '"') {
        ++i;
        bool closed = false;
        while (i < text.size()) {
          if (text[i] == '"') {
            if (i + 1 < text.size() && text[i + 1] == '"') {
              field += '"';
              i += 2;
              continue;
            }
            ++i;
            closed = true;
            break;
          }
          if (text[i] == '\n') ++line;
          field += text[i++];
        }
        if (!closed && record.error.empty()) record.error = "a quoted field is never closed";
        if (i < text.size() && text[i] != ',' && text[i] != '\n' && text[i] != '\r' &&
            record.error.empty()) {
          record.error = "text after a closing quote";
        }
      }
      while (i < text.size() && text[i] != ',' && text[i] != '\n' &&
             !(text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n')) {
        field += text[i++];
      }
      record.fields.push_back(std::move(field));
      field.clear();
      if (i < text.size() && text[i] == ',') {
        ++i;
        continue;
      }
      if (i < text.size()) {
        i += text[i] == '\r' ? 2 : 1;
        ++line;
      }
      done = true;
    }
    records.push_back(std::move(record));
  }
  return records;
}

std::string trimmed(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return std::string(text);
}

}  // namespace

std::string Period::text() const {
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "%04d-Q%d", year, quarter);
  return buffer;
}

Period parse_period(std::string_view text, const std::string& where) {
  if (text.size() != 7 || !all_digits(text.substr(0, 4)) || text.substr(4, 2) != "-Q" ||
      text[6] < '1' || text[6] > '4') {
    throw InputError(where, "'" + std::string(text) + "' is not a quarter such as \"2026-Q4\"");
  }
  return Period{to_int(text.substr(0, 4)), text[6] - '0'};
}

std::string date_text(std::chrono::year_month_day day) {
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "%04d-%02u-%02u", static_cast<int>(day.year()),
                static_cast<unsigned>(day.month()), static_cast<unsigned>(day.day()));
  return buffer;
}

Claim parse_claim(const std::map<std::string, std::string>& fields, const std::string& where,
                  ClaimSource source) {
  const bool intake = source == ClaimSource::intake;
  auto field = [&](std::string_view name, bool required = true) -> std::string {
    auto it = fields.find(std::string(name));
    std::string value = it == fields.end() ? "" : trimmed(it->second);
    if (required && value.empty()) {
      throw InputError(where, std::string(name) + ": missing (every claim needs it)");
    }
    return value;
  };
  auto at = [&](std::string_view name) { return where + ": " + std::string(name); };

  Claim c;
  c.claim_id = field("claim_id");
  check_id(c.claim_id, at("claim_id"), false);
  c.partner_id = field("partner_id");
  check_id(c.partner_id, at("partner_id"), true);
  c.kit_id = field("kit_id");
  check_id(c.kit_id, at("kit_id"), false);
  if (intake) {
    check_not_formula(c.claim_id, at("claim_id"));
    check_not_formula(c.kit_id, at("kit_id"));
  }
  c.period = parse_period(field("period"), at("period"));
  c.activity_start = parse_date(field("activity_start"), at("activity_start"));
  c.activity_end = parse_date(field("activity_end"), at("activity_end"));
  if (std::chrono::sys_days{c.activity_end} < std::chrono::sys_days{c.activity_start}) {
    throw InputError(at("activity_end"), date_text(c.activity_end) + " is before activity_start " +
                                             date_text(c.activity_start));
  }
  const std::int64_t most = intake ? kMaxMinorUnits : std::numeric_limits<std::int64_t>::max();
  c.amount_claimed = parse_minor_units(field("amount_claimed"), at("amount_claimed"), most);
  c.actual_spend = parse_minor_units(field("actual_spend"), at("actual_spend"), most);
  c.currency = field("currency");
  if (c.currency.size() != 3 || !std::all_of(c.currency.begin(), c.currency.end(),
                                             [](char ch) { return ch >= 'A' && ch <= 'Z'; })) {
    throw InputError(at("currency"),
                     "'" + c.currency + "' is not an ISO 4217 code such as \"USD\"");
  }
  c.invoice_ref = field("invoice_ref", false);
  if (!c.invoice_ref.empty()) check_id(c.invoice_ref, at("invoice_ref"), false);
  if (intake) check_not_formula(c.invoice_ref, at("invoice_ref"));
  return c;
}

std::vector<ClaimRow> read_claims_csv(std::string_view text, const std::string& file) {
  auto records = csv_records(text);
  if (records.empty()) throw InputError(file, "empty file: a header row is required");
  const Record& header = records.front();
  if (!header.error.empty()) throw InputError(file + ":1", header.error);
  std::map<std::string, std::size_t> column;
  for (std::size_t i = 0; i < header.fields.size(); ++i) {
    const std::string name = trimmed(header.fields[i]);
    if (!column.emplace(name, i).second) {
      throw InputError(file + ":1", "column '" + name + "' appears twice");
    }
  }
  for (std::string_view name : kClaimFields) {
    if (!column.contains(std::string(name))) {
      throw InputError(file + ":1", "missing column '" + std::string(name) +
                                        "' (the header names the contract's claim fields)");
    }
  }

  std::vector<ClaimRow> rows;
  for (std::size_t r = 1; r < records.size(); ++r) {
    const Record& record = records[r];
    ClaimRow row;
    row.where = file + ":" + std::to_string(record.line);
    if (!record.error.empty()) {
      row.error = record.error;
    } else if (record.fields.size() != header.fields.size()) {
      row.error = "has " + std::to_string(record.fields.size()) + " fields, the header " +
                  std::to_string(header.fields.size());
    } else {
      std::map<std::string, std::string> fields;
      for (const auto& [name, index] : column) fields[name] = record.fields[index];
      try {
        row.claim = parse_claim(fields, row.where);
      } catch (const InputError& e) {
        // The message already names the row; keep only what follows it.
        std::string message = e.what();
        row.error =
            message.starts_with(row.where + ": ") ? message.substr(row.where.size() + 2) : message;
      }
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

std::vector<ClaimRow> read_claims_json(const nlohmann::json& body, const std::string& where) {
  std::vector<const nlohmann::json*> objects;
  if (body.is_object()) {
    objects.push_back(&body);
  } else if (body.is_array()) {
    for (const auto& item : body) objects.push_back(&item);
  } else {
    throw InputError(where, "expected a claim object or an array of them");
  }
  std::vector<ClaimRow> rows;
  for (std::size_t i = 0; i < objects.size(); ++i) {
    ClaimRow row;
    row.where = body.is_array() ? where + ": claim " + std::to_string(i + 1) : where;
    const nlohmann::json& object = *objects[i];
    std::map<std::string, std::string> fields;
    if (!object.is_object()) {
      row.error = "not an object";
    } else {
      for (std::string_view name : kClaimFields) {
        auto it = object.find(std::string(name));
        if (it == object.end() || it->is_null()) continue;
        if (!it->is_string()) {
          row.error = std::string(name) + ": must be a string (amounts as \"1250.00\")";
          break;
        }
        fields[std::string(name)] = it->get<std::string>();
      }
    }
    if (row.error.empty()) {
      try {
        row.claim = parse_claim(fields, row.where);
      } catch (const InputError& e) {
        std::string message = e.what();
        row.error =
            message.starts_with(row.where + ": ") ? message.substr(row.where.size() + 2) : message;
      }
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

nlohmann::json to_json(const Claim& c) {
  return nlohmann::json{{"claim_id", c.claim_id},
                        {"partner_id", c.partner_id},
                        {"kit_id", c.kit_id},
                        {"period", c.period.text()},
                        {"activity_start", date_text(c.activity_start)},
                        {"activity_end", date_text(c.activity_end)},
                        {"amount_claimed", format_minor_units(c.amount_claimed)},
                        {"actual_spend", format_minor_units(c.actual_spend)},
                        {"currency", c.currency},
                        {"invoice_ref", c.invoice_ref}};
}

}  // namespace channeld::mdf
