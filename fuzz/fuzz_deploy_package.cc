// A deploy's tar (PUT /workspaces/{name}/source, storage/deploy.h): any bytes give a package or
// one error, never a crash; every path in an accepted package is one check_path() accepts (so
// nothing written from it can leave the folder), its bytes stay within the limits, and the plan
// against a fixed current source deletes only files that source has.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "storage/deploy.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  ck::deploy::Limits limits;
  limits.max_bytes = 1u << 20;
  limits.max_files = 1000;
  limits.max_path = 256;
  (void)ck::deploy::parse_list(body, limits);
  auto pkg = ck::deploy::read_package(body, limits);
  if (!pkg.has_value()) return 0;
  std::uint64_t bytes = 0;
  for (const auto& f : pkg.value().files) {
    auto checked = ck::deploy::check_path(f.path, limits);
    if (!checked.has_value() || checked.value() != f.path) std::abort();
    bytes += f.data.size();
  }
  if (bytes != pkg.value().bytes || bytes > limits.max_bytes || pkg.value().files.size() > limits.max_files) {
    std::abort();
  }
  const std::vector<ck::deploy::Entry> current = {
      {"index.html", 4, "0123456789abcdef0123456789abcdef", false},
      {"src/app.js", 10, "fedcba9876543210fedcba9876543210", true}};
  auto plan = ck::deploy::plan(pkg.value(), current);
  if (plan.has_value()) {
    for (const auto& r : plan.value().remove) {
      if (r != "index.html" && r != "src/app.js") std::abort();
    }
    for (auto i : plan.value().write) {
      if (i >= pkg.value().files.size()) std::abort();
    }
  }
  return 0;
}
