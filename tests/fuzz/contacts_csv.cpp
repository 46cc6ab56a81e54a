// The contacts CSV reader: any bytes either fail at the header (InputError) or stream rows;
// every row it yields is UTF-8 with a plain email and names free of control characters.
#include <cstdlib>

#include "catalog/catalog.hpp"
#include "fuzz_support.hpp"

namespace {
bool has_control(const std::string& s) {
  for (unsigned char c : s)
    if ((c < 0x20 && c != '\t') || c == 0x7f) return true;
  return false;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace channeld;
  const auto file = fuzz::scratch() / "contacts.csv";
  fuzz::write(file, fuzz::as_text(data, size));
  try {
    catalog::ContactReader reader(file.string(), 256);
    while (auto contact = reader.next()) {
      if (contact->email.empty() || contact->email.find('@') == std::string::npos) std::abort();
      if (has_control(contact->first_name) || has_control(contact->last_name)) std::abort();
      if (contact->company.size() > 256) std::abort();
    }
  } catch (const InputError&) {
  }
  return 0;
}
