// The kit loader: any bytes as kit.toml either load or raise InputError.
#include "catalog/catalog.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace channeld;
  const auto folder = fuzz::scratch() / "fuzzkit";
  fuzz::write(folder / "kit.toml", fuzz::as_text(data, size));
  try {
    catalog::load_kit(folder.string());
  } catch (const InputError&) {
  }
  return 0;
}
