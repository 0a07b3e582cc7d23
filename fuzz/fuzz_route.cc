// Request targets from the network: routing must never crash and must keep its invariants.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "gateway/route.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string target(reinterpret_cast<const char*>(data), size);
  for (bool www : {false, true}) {
    auto d = ck::route_request(target, [&](std::string_view n) {
      return n == "app" || n == "a-b" || (www && n == "www");
    });
    if (d.kind == ck::RouteKind::workspace) {
      // The app always sees an origin-form path, and a prefix is "/<name>" or empty.
      if (d.upstream_target.empty() || d.upstream_target.front() != '/') std::abort();
      if (!d.prefix.empty() && d.prefix != "/" + d.workspace) std::abort();
    }
    if (d.kind == ck::RouteKind::redirect && d.location.rfind("/app/", 0) != 0 &&
        d.location.rfind("/a-b/", 0) != 0) {
      std::abort();
    }
  }
  return 0;
}
