#pragma once
// For tests: a fresh directory under the system temp folder, removed with everything in it when
// the object goes away.

#include <cstdlib>
#include <filesystem>
#include <string>

namespace ck::test_util {

struct TempDir {
  explicit TempDir(const std::string& tag = "test") {
    std::string tmpl = (std::filesystem::temp_directory_path() / ("ck-" + tag + "-XXXXXX")).string();
    path = ::mkdtemp(tmpl.data()) != nullptr ? std::filesystem::path(tmpl) : std::filesystem::path();
  }
  ~TempDir() {
    std::error_code ec;
    if (!path.empty()) std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::filesystem::path operator/(const std::string& name) const { return path / name; }

  std::filesystem::path path;
};

}  // namespace ck::test_util
