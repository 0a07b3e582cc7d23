// URL paths against a real folder: whatever the bytes, a resolved file lies inside the root.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include "gateway/static_files.h"

namespace fs = std::filesystem;

static const fs::path& root() {
  static const fs::path r = [] {
    fs::path base = fs::temp_directory_path() / ("ck-fuzz-static-" + std::to_string(::getpid()));
    fs::create_directories(base / "site" / "sub");
    std::ofstream(base / "site" / "index.html") << "x";
    std::ofstream(base / "site" / "sub" / "a.txt") << "x";
    std::ofstream(base / "secret") << "x";
    std::error_code ec;
    fs::create_symlink(base / "secret", base / "site" / "out", ec);
    fs::create_symlink("/", base / "site" / "rootlink", ec);
    return fs::canonical(base / "site");
  }();
  return r;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string path(reinterpret_cast<const char*>(data), size);
  auto r = ck::resolve_static(root(), path);
  if (r.kind == ck::StaticLookup::file) {
    auto rel = r.path.lexically_relative(root());
    if (rel.empty() || *rel.begin() == "..") std::abort();  // escaped the workspace
  }
  return 0;
}
