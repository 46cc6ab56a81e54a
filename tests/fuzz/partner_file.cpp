// The partner file reader: any bytes as acme-it.toml load or are reported as a problem.
#include <cstdlib>

#include "catalog/catalog.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace channeld;
  const auto dir = fuzz::scratch() / "partners";
  fuzz::write(dir / "acme-it.toml", fuzz::as_text(data, size));
  catalog::PartnerSet set = catalog::load_partners(dir.string());
  // One file: it either loaded or is reported, never both, never neither.
  if (set.partners.size() + set.problems.size() != 1) std::abort();
  return 0;
}
