// package.json / workspace.json from a user's folder: detection reports, never crashes.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include "workspace/workspace.h"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("ck-fuzz-manifest-" + std::to_string(::getpid()));
    fs::create_directories(d);
    std::ofstream(d / "index.html") << "x";
    return d;
  }();
  std::string bytes(reinterpret_cast<const char*>(data), size);
  // The first byte picks the file, the rest is its content.
  const char* file = (size > 0 && (data[0] & 1)) ? "package.json" : "workspace.json";
  fs::remove(dir / "package.json");
  fs::remove(dir / "workspace.json");
  std::ofstream(dir / file, std::ios::binary) << (size > 0 ? bytes.substr(1) : bytes);
  auto spec = ck::detect_workspace("w", dir);
  (void)spec.fingerprint();
  return 0;
}
