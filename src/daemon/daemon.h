#pragma once
// The wiring for `cloudyknight serve`: builds storage, runtime, monitor, API and gateway from
// the configuration, runs until SIGINT/SIGTERM, then stops every workspace and exits.

#include <string>

#include <vector>

#include "core/config.h"
#include "monitor/monitor.h"

namespace ck {

/// Runs the daemon on the calling thread (the control-plane io_context). Returns the exit
/// code; start-up failures are logged as one clear line and return 1.
int run_daemon(const Config& config, const std::string& self_exe);

/// The monitor's settings from the configuration.
MonitorOptions monitor_options(const Config& config);

/// `cloudyknight images build [TYPE...]`: exit code; progress on stdout, one clear line on
/// stderr on failure.
int build_images_command(const Config& config, const std::vector<std::string>& types, bool force,
                         bool pull);

class GitWorkspaces;
struct ApiServices;

/// git_services.cc: the API's git services (status, clones, webhooks, autocommit, git push to
/// deploy under DATA/git) through `git`, for folder storage.
void add_git_services(ApiServices& services, GitWorkspaces& git, const std::filesystem::path& data,
                      const std::string& self_exe);

class BackupService;
/// backups.cc: the API's backup services (GET|POST /backups, POST /workspaces/{name}/restore).
void add_backup_services(ApiServices& services, BackupService& backups);

/// `cloudyknight workspace compose NAME`: prints the docker-compose.yml the docker runtime
/// runs the workspace with.
int compose_command(const Config& config, const std::string& name);

/// `cloudyknight workspace git-init NAME URL [--branch B]`: clones URL as the new workspace NAME
/// (folder storage), which then follows it. Exit code; one clear line on stderr on failure.
int git_init_command(const Config& config, const std::string& name, const std::string& url,
                     const std::string& branch);

}  // namespace ck
