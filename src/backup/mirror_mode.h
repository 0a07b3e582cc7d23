#pragma once
// Destinations in mode `mirror`: a plain one-way copy of each workspace at P/<workspace>/
// (sync::push with delete_extra), plus a marker P/.cloudyknight/backup/<workspace>.json (time,
// files, bytes) so `backup list` can show it. Keeps only the latest state. Internal.

#include <filesystem>
#include <string>
#include <vector>

#include "backup/backup.h"

namespace ck::backup {

Result<BackupReport> mirror_backup(const Destination& dest, const std::string& workspace,
                                   const std::filesystem::path& dir, const BackupOptions& opts);
Result<std::vector<SnapshotInfo>> mirror_list(const Destination& dest,
                                              const std::string& workspace);
/// Downloads the workspace's copy into `dir` (an empty staging folder).
Result<void> mirror_pull(const Destination& dest, const std::string& workspace,
                         const std::filesystem::path& dir, const RepoOptions& opts);

}  // namespace ck::backup
