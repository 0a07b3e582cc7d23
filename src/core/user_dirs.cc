#include "core/user_dirs.h"

#include <cstdlib>

namespace ck {

std::filesystem::path user_cache_dir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && *x == '/') return x;
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return std::filesystem::path(home) / ".cache";
  }
  return std::filesystem::temp_directory_path();
}

}  // namespace ck
