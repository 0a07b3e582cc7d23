#pragma once
// `cloudyknight backup [list|check|prune]` and `cloudyknight restore`: the backup module
// (src/backup) driven from the configuration's backup: section. Each returns the process exit
// code (0 success, 1 failure: any destination failed, each named with why on one stderr line).

#include <string>

#include "core/config.h"

namespace ck::cli {

struct BackupFlags {
  std::string dest;       // "" = every destination (restore: the first)
  std::string workspace;  // "" = every workspace
  bool dry_run = false;
  bool json = false;
  std::string mode = "merge";  // restore: mirror | merge
  std::string point_in_time;   // restore: "YYYY-MM-DD HH:MM:SS", local time
  std::string snapshot;        // restore: a snapshot id
  std::string to;              // restore: a folder instead of the live workspace
};

int backup_run(const Config& config, const BackupFlags& flags);
int backup_list(const Config& config, const BackupFlags& flags);
int backup_check(const Config& config, const BackupFlags& flags);
int backup_prune(const Config& config, const BackupFlags& flags);
int restore_run(const Config& config, const BackupFlags& flags);

}  // namespace ck::cli
