// The CLI's contexts file (~/.config/cloudyknight/contexts.yaml): any bytes give contexts or one
// error, never a crash; what parses writes back and parses again to the same contexts.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "cli/contexts.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto parsed = ck::cli::parse_contexts(text, "fuzz.yaml");
  if (!parsed.has_value()) return 0;
  auto again = ck::cli::parse_contexts(ck::cli::format_contexts(parsed.value()), "fuzz.yaml");
  if (!again.has_value() || again.value().all.size() != parsed.value().all.size() ||
      again.value().current != parsed.value().current) {
    std::abort();  // what we write must read back
  }
  return 0;
}
