// Configuration files: any bytes give settings or one error, never a crash.
#include <cstdint>
#include <string>

#include "core/config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto settings = ck::read_yaml_settings(text, "fuzz.yaml");
  if (settings.has_value()) {
    ck::Config c;
    for (const auto& s : settings.value()) (void)ck::apply_setting(c, s);
  }
  return 0;
}
