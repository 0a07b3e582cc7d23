#pragma once
// The Storage seam: where workspace source lives. The monitor asks it which workspaces exist
// and where their source can be read from on this host. Drivers: dir/ (s3/ and git/ later).

#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"

namespace ck {

/// One top-level entry of the storage root, before its name was validated.
struct StorageEntry {
  std::string folder;                // the raw folder (or prefix) name
  std::filesystem::path local_path;  // where its source can be read on this host
};

class Storage {
 public:
  virtual ~Storage() = default;
  /// "dir", "s3", ...
  virtual std::string kind() const = 0;
  /// A human description of where the source lives ("/srv/workspaces").
  virtual std::string location() const = 0;
  /// Every top-level workspace folder, sorted by name. Blocking; call from a worker or the
  /// monitor's scan. Fails when the root itself cannot be read.
  virtual Result<std::vector<StorageEntry>> list() = 0;
};

}  // namespace ck
