// A bucket notification POSTed to /monitor/api/v1/storage/events (MinIO's webhook; no auth
// yet): parsed or refused, never a crash.
#include <cstdint>
#include <string_view>

#include "api/api.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  auto n = ck::parse_bucket_notification(body);
  if (n.has_value()) {
    std::size_t total = 0;
    for (const auto& k : n.value().keys) total += k.size();
    (void)total;
  }
  return 0;
}
