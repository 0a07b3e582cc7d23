#pragma once
// `cloudyknight workspace upload|sync|download|list|delete`: the storage side of the CLI. Each
// returns the process exit code (0 success, 1 failure, 2 bad usage) and prints one clear line
// on stderr when it fails.

#include <filesystem>
#include <string>

#include "core/config.h"

namespace ck::cli {

struct TransferFlags {
  bool delete_extra = false;
  bool dry_run = false;
  bool watch = false;
  bool include_env = false;
  bool no_lock = false;
  int jobs = 64;
};

int workspace_upload(const Config& config, const std::string& name, const std::filesystem::path& dir,
                     const TransferFlags& flags);
int workspace_download(const Config& config, const std::string& name, const std::filesystem::path& dir,
                       const TransferFlags& flags);
int workspace_list(const Config& config, bool json);
int workspace_delete(const Config& config, const std::string& name, bool dry_run);
/// `ws gc NAME [DIR]`: aborts NAME's unfinished multipart uploads that are stale (initiated
/// over an hour ago, or, with DIR, left by an earlier upload of DIR; `all`: every one).
int workspace_gc(const Config& config, const std::string& name, const std::filesystem::path& dir, bool all,
                 bool dry_run);

}  // namespace ck::cli
