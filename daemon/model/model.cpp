#include "model/model.hpp"

#include <array>

namespace channeld {

bool path_within(std::string_view file, std::string_view folder) {
  while (folder.size() > 1 && folder.back() == '/') folder.remove_suffix(1);
  if (folder.empty() || !file.starts_with(folder)) return false;
  // "/srv/kits/q4-old" is not inside "/srv/kits/q4".
  return file.size() == folder.size() || file[folder.size()] == '/' || folder == "/";
}

std::int64_t parse_minor_units(std::string_view text, const std::string& where, std::int64_t most) {
  auto bad = [&] {
    return InputError(where, "'" + std::string(text) +
                                 "' is not an amount: write a decimal string such as \"5000.00\"");
  };
  auto too_large = [&] {
    return InputError(where, "'" + std::string(text) + "' is more than the largest amount taken, " +
                                 format_minor_units(most));
  };
  if (text.empty()) throw bad();
  std::int64_t whole = 0;
  std::size_t i = 0;
  for (; i < text.size() && text[i] != '.'; ++i) {
    char c = text[i];
    if (c < '0' || c > '9') throw bad();
    whole = whole * 10 + (c - '0');  // at most most / 10 + 9 here: no overflow
    if (whole > most / 100) throw too_large();
  }
  if (i == 0) throw bad();
  std::int64_t cents = 0;
  if (i < text.size()) {  // at '.'
    std::string_view frac = text.substr(i + 1);
    if (frac.empty() || frac.size() > 2) throw bad();
    for (char c : frac) {
      if (c < '0' || c > '9') throw bad();
    }
    cents = (frac[0] - '0') * 10 + (frac.size() == 2 ? frac[1] - '0' : 0);
  }
  if (whole * 100 > most - cents) throw too_large();  // whole * 100 <= most here
  return whole * 100 + cents;
}

std::string format_minor_units(std::int64_t minor) {
  bool negative = minor < 0;
  // Work in unsigned so INT64_MIN does not overflow on negation.
  std::uint64_t m = negative ? 0 - static_cast<std::uint64_t>(minor) : static_cast<std::uint64_t>(minor);
  std::string cents = std::to_string(m % 100);
  if (cents.size() == 1) cents.insert(0, "0");
  return (negative ? "-" : "") + std::to_string(m / 100) + "." + cents;
}

std::string escape_html(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 16);
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

namespace {
constexpr std::array<std::string_view, 4> kTiers{"registered", "silver", "gold", "platinum"};
constexpr std::array<std::string_view, 6> kTypes{"reseller", "var", "msp", "si", "isv", "referral"};
}  // namespace

std::optional<Tier> tier_from_string(std::string_view s) {
  for (std::size_t i = 0; i < kTiers.size(); ++i)
    if (kTiers[i] == s) return static_cast<Tier>(i);
  return std::nullopt;
}

std::optional<PartnerType> partner_type_from_string(std::string_view s) {
  for (std::size_t i = 0; i < kTypes.size(); ++i)
    if (kTypes[i] == s) return static_cast<PartnerType>(i);
  return std::nullopt;
}

std::string_view to_string(Tier t) { return kTiers.at(static_cast<std::size_t>(t)); }
std::string_view to_string(PartnerType t) { return kTypes.at(static_cast<std::size_t>(t)); }

}  // namespace channeld
