// The suppression list reader: any bytes either are refused whole (InputError) or give rows
// with an email; bad rows are reported.
#include <cstdlib>

#include "catalog/catalog.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace channeld;
  const auto file = fuzz::scratch() / "suppressions.csv";
  fuzz::write(file, fuzz::as_text(data, size));
  std::vector<catalog::Problem> problems;
  try {
    for (const auto& row : catalog::load_suppressions(file.string(), problems))
      if (row.email.find('@') == std::string::npos) std::abort();
  } catch (const InputError&) {
  }
  return 0;
}
