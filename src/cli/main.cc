// `cloudyknight`: the daemon (`serve`) and the command-line interface in one binary.
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <unistd.h>

#include "cli/backup_cmd.h"
#include "cli/workspace_cmd.h"
#include "core/config.h"
#include "core/log.h"
#include "daemon/daemon.h"
#include "git/push_repos.h"
#include "runtime/process/init.h"

#ifndef CK_VERSION
#define CK_VERSION "dev"
#endif

namespace {

std::string self_exe(const char* argv0) {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n > 0) return std::string(buf, static_cast<size_t>(n));
  return argv0;
}

// The configuration: --config FILE, then CK_* environment, then the flags given.
std::optional<ck::Config> load(const std::string& config_file, const std::vector<ck::Setting>& flags) {
  std::optional<std::filesystem::path> file;
  if (!config_file.empty()) file = config_file;
  auto env = [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    return v ? std::optional<std::string>(v) : std::nullopt;
  };
  auto config = ck::load_config(file, env, flags);
  if (config.has_error()) {
    std::cerr << "cloudyknight: " << config.error().message << "\n";
    return std::nullopt;
  }
  if (auto r = ck::log::setup(config.value().log_format, config.value().log_level); r.has_error()) {
    std::cerr << "cloudyknight: " << r.error().message << "\n";
    return std::nullopt;
  }
  return config.value();
}

// Where workspaces are stored, as given on the command line (DESIGN.md "Command line").
struct StorageFlags {
  std::string workspaces, storage, endpoint, region, profile;

  void add_to(CLI::App* cmd, bool with_workspaces) {
    if (with_workspaces) cmd->add_option("--workspaces", workspaces, "Folder whose subfolders are workspaces (dir storage)");
    cmd->add_option("--storage", storage, "Storage URL: s3://BUCKET/PREFIX (or a folder for dir storage)");
    cmd->add_option("--s3-endpoint", endpoint, "S3 endpoint URL for MinIO, R2 or other S3-compatible servers");
    cmd->add_option("--s3-region", region, "S3 region (default: AWS_REGION, the AWS profile, else us-east-1)");
    cmd->add_option("--s3-profile", profile, "AWS profile for the S3 keys (default: AWS_PROFILE, else default)");
  }

  void append(std::vector<ck::Setting>& flags) const {
    if (!workspaces.empty()) {
      flags.push_back({"storage.kind", "dir", "--workspaces"});
      flags.push_back({"storage.path", workspaces, "--workspaces"});
    }
    if (!storage.empty()) {
      if (storage.starts_with("s3://")) {
        std::string rest = storage.substr(5);
        auto slash = rest.find('/');
        flags.push_back({"storage.kind", "s3", "--storage"});
        flags.push_back({"storage.bucket", rest.substr(0, slash), "--storage"});
        flags.push_back({"storage.prefix", slash == std::string::npos ? "" : rest.substr(slash + 1), "--storage"});
      } else {
        flags.push_back({"storage.kind", "dir", "--storage"});
        flags.push_back({"storage.path", storage, "--storage"});
      }
    }
    if (!endpoint.empty()) flags.push_back({"storage.endpoint", endpoint, "--s3-endpoint"});
    if (!region.empty()) flags.push_back({"storage.region", region, "--s3-region"});
    if (!profile.empty()) flags.push_back({"storage.profile", profile, "--s3-profile"});
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "__init") == 0) return ck::run_init(argc, argv);
  // Hidden: the hook git runs in a push-to-deploy repository (git/push_repos.h).
  if (argc > 1 && std::strcmp(argv[1], "git-hook") == 0) return ck::git::run_git_hook(argc, argv);

  CLI::App app{"CloudyKnight: self-hosted workspaces, each in its own container, behind one gateway"};
  app.require_subcommand(1);
  app.set_version_flag("--version", CK_VERSION);

  auto* serve = app.add_subcommand("serve", "Run the daemon: gateway, monitor and API");
  std::string config_file, listen, data, runtime, log_format, log_level;
  StorageFlags storage;
  int threads = -1;
  serve->add_option("--config", config_file, "YAML configuration file");
  serve->add_option("--listen", listen, "Gateway address, ADDR:PORT (default 127.0.0.1:8080)");
  storage.add_to(serve, true);
  serve->add_option("--data", data, "Folder for state, logs and app copies (default ./data)");
  serve->add_option("--runtime", runtime, "auto, docker, process or swarm");
  serve->add_option("--threads", threads, "Gateway worker threads (0 = one per core)");
  serve->add_option("--log-format", log_format, "text or json");
  serve->add_option("--log-level", log_level, "debug, info, warn or error");

  auto* images = app.add_subcommand("images", "Runtime images for the docker runtime");
  images->require_subcommand(1);
  auto* images_build = images->add_subcommand(
      "build", "Build the runtime images (offline from Debian packages when no registry answers); "
               "quick when they exist");
  std::vector<std::string> image_types;
  bool force = false, no_pull = false;
  std::string images_config;
  images_build->add_option("types", image_types, "Types to build: node python php go ruby (default: all)");
  images_build->add_flag("--force", force, "Rebuild even if the images exist");
  images_build->add_flag("--no-pull", no_pull, "Do not try the registry; build offline");
  images_build->add_option("--config", images_config, "YAML configuration file (images, data)");
  images_build->add_option("--data", data, "Folder for scratch space (default ./data)");

  auto* ws = app.add_subcommand("workspace", "Work with workspaces");
  ws->alias("ws");
  ws->require_subcommand(1);
  auto* compose = ws->add_subcommand("compose", "Print the docker-compose.yml a workspace runs with");
  std::string ws_name, ws_config;
  compose->add_option("name", ws_name, "Workspace name")->required();
  compose->add_option("--config", ws_config, "YAML configuration file");
  compose->add_option("--workspaces", storage.workspaces, "Folder whose subfolders are workspaces");

  auto* git_init = ws->add_subcommand("git-init", "Make a new workspace a clone of a git remote it then follows");
  std::string git_url, git_branch;
  git_init->add_option("name", ws_name, "Workspace name")->required();
  git_init->add_option("url", git_url, "Remote URL (https://, ssh://, git://, user@host:path)")->required();
  git_init->add_option("--branch", git_branch, "Branch to follow (default: the remote's default branch)");
  git_init->add_option("--config", ws_config, "YAML configuration file");
  git_init->add_option("--workspaces", storage.workspaces, "Folder whose subfolders are workspaces");

  // upload / sync / download / list / delete: source to and from S3.
  std::string ws_dir;
  ck::cli::TransferFlags transfer;
  bool ws_json = false;
  auto transfer_cmd = [&](const char* name, const char* help, bool upload) {
    auto* cmd = ws->add_subcommand(name, help);
    cmd->add_option("name", ws_name, "Workspace name")->required();
    cmd->add_option("dir", ws_dir, "Local folder")->required();
    cmd->add_flag("--dry-run", transfer.dry_run, "Show what would be done; change nothing");
    cmd->add_option("-j,--jobs", transfer.jobs, "Transfers in flight (default 64)");
    cmd->add_option("--config", ws_config, "YAML configuration file");
    storage.add_to(cmd, false);
    if (upload) {
      cmd->add_flag("--watch", transfer.watch, "Keep running and upload every change within a second");
      cmd->add_flag("--include-env", transfer.include_env, "Upload .env files too (never uploaded otherwise)");
      cmd->add_flag("--no-lock", transfer.no_lock, "Let ignore patterns exclude lockfiles (kept by default)");
    }
    return cmd;
  };
  auto* upload = transfer_cmd("upload", "Upload a folder's source (honours .gitignore and .ckignore)", true);
  upload->add_flag("--delete", transfer.delete_extra, "Also delete objects that have no local source file");
  auto* sync_cmd = transfer_cmd("sync", "Make the stored source exactly the folder's (upload --delete)", true);
  auto* download = transfer_cmd("download", "Download a workspace's source into a folder", false);
  download->add_flag("--delete", transfer.delete_extra, "Also delete local source files that are not stored");
  auto* list = ws->add_subcommand("list", "List the stored workspaces");
  list->add_flag("--json", ws_json, "Print JSON");
  list->add_option("--config", ws_config, "YAML configuration file");
  storage.add_to(list, false);
  auto* del = ws->add_subcommand("delete", "Delete a workspace's stored source");
  del->add_option("name", ws_name, "Workspace name")->required();
  del->add_flag("--dry-run", transfer.dry_run, "Show what would be deleted");
  del->add_option("--config", ws_config, "YAML configuration file");
  storage.add_to(del, false);

  // backup [list|check|prune] and restore (issue 17).
  ck::cli::BackupFlags bk;
  std::string bk_config;
  auto backup_options = [&](CLI::App* cmd, bool with_workspace) {
    cmd->add_option("--dest", bk.dest, "Only this destination (a backup.destinations name)");
    if (with_workspace) cmd->add_option("--workspace", bk.workspace, "Only this workspace");
    cmd->add_option("--config", bk_config, "YAML configuration file");
    storage.add_to(cmd, true);
  };
  auto* backup = app.add_subcommand("backup", "Back up every workspace to the configured destinations");
  backup_options(backup, true);
  backup->add_flag("--dry-run", bk.dry_run, "Show what would be uploaded; write nothing");
  auto* backup_list = backup->add_subcommand("list", "List the snapshots per destination and workspace");
  backup_options(backup_list, true);
  backup_list->add_flag("--json", bk.json, "Print JSON");
  auto* backup_check = backup->add_subcommand("check", "Verify every blob each snapshot needs");
  backup_options(backup_check, false);
  auto* backup_prune = backup->add_subcommand("prune", "Drop the snapshots backup.keep does not keep, and their data");
  backup_options(backup_prune, false);
  backup_prune->add_flag("--dry-run", bk.dry_run, "Show what would be removed");
  auto* restore = app.add_subcommand("restore", "Restore workspaces from a backup destination");
  backup_options(restore, true);
  restore->add_option("--mode", bk.mode, "mirror (exactly the snapshot) or merge (add and overwrite; default)");
  auto* pit = restore->add_option("--point-in-time", bk.point_in_time,
                                  "The last snapshot at or before \"YYYY-MM-DD HH:MM:SS\" (local time)");
  restore->add_option("--snapshot", bk.snapshot, "A snapshot id (see backup list)")->excludes(pit);
  restore->add_option("--to", bk.to, "Restore into this folder instead of the live workspace");
  restore->add_flag("--dry-run", bk.dry_run, "Show what would change; change nothing");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (serve->parsed()) {
    std::vector<ck::Setting> flags;
    auto flag = [&](const std::string& value, const char* key, const char* name) {
      if (!value.empty()) flags.push_back({key, value, name});
    };
    flag(listen, "gateway.listen", "--listen");
    storage.append(flags);
    flag(data, "data", "--data");
    flag(runtime, "runtime.kind", "--runtime");
    if (threads >= 0) flags.push_back({"gateway.threads", std::to_string(threads), "--threads"});
    flag(log_format, "log.format", "--log-format");
    flag(log_level, "log.level", "--log-level");

    auto config = load(config_file, flags);
    if (!config) return 2;
    return ck::run_daemon(*config, self_exe(argv[0]));
  }
  if (images_build->parsed()) {
    std::vector<ck::Setting> flags;
    if (!data.empty()) flags.push_back({"data", data, "--data"});
    auto config = load(images_config, flags);
    if (!config) return 2;
    return ck::build_images_command(*config, image_types, force, !no_pull);
  }
  std::vector<ck::Setting> ws_flags;
  storage.append(ws_flags);
  if (backup->parsed() || restore->parsed()) {
    auto config = load(bk_config, ws_flags);
    if (!config) return 2;
    if (restore->parsed()) return ck::cli::restore_run(*config, bk);
    if (backup_list->parsed()) return ck::cli::backup_list(*config, bk);
    if (backup_check->parsed()) return ck::cli::backup_check(*config, bk);
    if (backup_prune->parsed()) return ck::cli::backup_prune(*config, bk);
    return ck::cli::backup_run(*config, bk);
  }
  if (compose->parsed()) {
    auto config = load(ws_config, ws_flags);
    if (!config) return 2;
    return ck::compose_command(*config, ws_name);
  }
  if (git_init->parsed()) {
    auto config = load(ws_config, ws_flags);
    if (!config) return 2;
    return ck::git_init_command(*config, ws_name, git_url, git_branch);
  }
  if (upload->parsed() || sync_cmd->parsed() || download->parsed() || list->parsed() || del->parsed()) {
    auto config = load(ws_config, ws_flags);
    if (!config) return 2;
    if (sync_cmd->parsed()) transfer.delete_extra = true;
    if (upload->parsed() || sync_cmd->parsed()) return ck::cli::workspace_upload(*config, ws_name, ws_dir, transfer);
    if (download->parsed()) return ck::cli::workspace_download(*config, ws_name, ws_dir, transfer);
    if (list->parsed()) return ck::cli::workspace_list(*config, ws_json);
    return ck::cli::workspace_delete(*config, ws_name, transfer.dry_run);
  }
  return 0;
}
