#include "storage/dir/dir_storage.h"

#include <algorithm>
#include <fmt/format.h>

namespace ck {
namespace fs = std::filesystem;

DirStorage::DirStorage(fs::path root) : root_(std::move(root)) {}

Result<std::vector<StorageEntry>> DirStorage::list() {
  std::error_code ec;
  if (!fs::is_directory(root_, ec)) {
    return fail(Errc::not_found,
                fmt::format("workspace folder {} does not exist or is not a folder: create it or "
                            "pass --workspaces DIR",
                            root_.string()));
  }
  std::vector<StorageEntry> out;
  fs::directory_iterator it(root_, ec);
  if (ec) {
    return fail(Errc::io, fmt::format("cannot list {}: {}", root_.string(), ec.message()));
  }
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) return fail(Errc::io, fmt::format("cannot list {}: {}", root_.string(), ec.message()));
    std::error_code ec2;
    if (!it->is_directory(ec2)) continue;
    std::string folder = it->path().filename().string();
    if (folder.starts_with('.')) continue;  // .git, .cache and friends are never workspaces
    out.push_back(StorageEntry{folder, it->path()});
  }
  std::sort(out.begin(), out.end(),
            [](const StorageEntry& a, const StorageEntry& b) { return a.folder < b.folder; });
  return out;
}

}  // namespace ck
