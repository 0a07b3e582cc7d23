// `cloudyknight`: the daemon (`serve`) and the command-line interface in one binary.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <cstring>
#include <iostream>
#include <unistd.h>

#include "cli/backup_cmd.h"
#include "cli/completion.h"
#include "cli/deploy_cmd.h"
#include "cli/remote_cmd.h"
#include "daemon/cleanup.h"
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


std::optional<std::string> getenv_opt(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  return v ? std::optional<std::string>(v) : std::nullopt;
}

// The rule shared by `workspace list|delete|sync` (src/cli/README.md): storage flags mean the
// storage command; so does --config, which names the storage.
bool storage_flag_given(const CLI::App* cmd) {
  for (const char* name : {"--storage", "--workspaces", "--s3-endpoint", "--s3-region", "--s3-profile", "--config"}) {
    const CLI::Option* o = cmd->get_option_no_throw(name);
    if (o != nullptr && o->count() > 0) return true;
  }
  return false;
}

constexpr const char* kRemoteRule =
    "\nGoes to the control plane's API when a context is current (cloudyknight login) or CK_URL is set, "
    "and no storage flag (--storage, --workspaces, --s3-*, --config) is given; otherwise works on the "
    "storage directly.";

constexpr const char* kApiOnly =
    "\nTalks to a server: CK_URL (with CK_TOKEN) when set, else the current context (cloudyknight "
    "login).";

std::string examples(std::initializer_list<const char*> lines) {
  std::string out = "\nExamples:";
  for (const char* l : lines) out += std::string("\n  ") + l;
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "__init") == 0) return ck::run_init(argc, argv);
  // Hidden: the hook git runs in a push-to-deploy repository (git/push_repos.h).
  if (argc > 1 && std::strcmp(argv[1], "git-hook") == 0) return ck::git::run_git_hook(argc, argv);

  CLI::App app{"CloudyKnight: self-hosted workspaces, each in its own container, behind one gateway"};
  app.require_subcommand(1);
  app.set_version_flag("--version", CK_VERSION);
  app.footer(
      "Exit codes: 0 ok, 1 failure, 2 usage (bad arguments, or no server to talk to), 3 not found, 4 not "
      "allowed (HTTP 401/403)." +
      examples({"cloudyknight serve --workspaces ./examples", "cloudyknight login https://ck.example.com --user ann",
                "cloudyknight ws ls", "cloudyknight ws logs app -f", "cloudyknight ws run app -- npm test"}));

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
  serve->footer(examples({"cloudyknight serve --workspaces ./examples --listen 127.0.0.1:8080",
                          "cloudyknight serve --config /etc/cloudyknight.yaml",
                          "cloudyknight serve --storage s3://bucket/sites --s3-endpoint http://127.0.0.1:9000"}));

  auto* images = app.add_subcommand("images", "Runtime images for the docker runtime");
  images->require_subcommand(1);
  images->footer(examples({"cloudyknight images build", "cloudyknight images build node python --no-pull"}));
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
  images_build->footer(examples({"cloudyknight images build", "cloudyknight images build node --force"}));

  auto* gc = app.add_subcommand("gc", "Remove what nothing uses any more: dependency volumes, built images, "
                                     "old trash, rotated logs, old state.db history");
  bool gc_dry = false, gc_json = false;
  std::string gc_config;
  gc->add_flag("--dry-run", gc_dry, "Show what would be removed; remove nothing");
  gc->add_flag("--json", gc_json, "Print the report as JSON");
  gc->add_option("--config", gc_config, "YAML configuration file (data, storage, runtime.deps_keep...)");
  gc->add_option("--data", data, "The daemon's data folder (default ./data)");
  storage.add_to(gc, true);
  gc->footer(std::string("\nGoes to the server (an admin token) when a context is current or CK_URL is set and "
                         "neither --data, --config nor a storage flag is given; otherwise works on this host's "
                         "Docker engine and the data folder.") +
             examples({"cloudyknight gc --dry-run", "cloudyknight gc --data /var/lib/cloudyknight"}));

  // ---- the remote client: contexts ------------------------------------------------------
  ck::cli::LoginOptions login_opts;
  std::string login_token;
  auto* login = app.add_subcommand("login", "Log in to a CloudyKnight server and make it the current context");
  login->add_option("url", login_opts.url, "The server's URL, e.g. https://ck.example.com")->required();
  auto* token_opt = login->add_option("--token", login_token, "An API token; '-' reads it from stdin");
  auto* user_opt = login->add_option("--user", login_opts.user,
                                     "Log in as this user (password read from the terminal, never stored); "
                                     "an API token is made for this CLI");
  token_opt->excludes(user_opt);
  login->add_option("--cacert", login_opts.cacert, "CA bundle (PEM) to trust for the server's certificate");
  login->add_option("--name", login_opts.name, "Context name (default: the URL's host[:port])");
  login->footer(
      "\nWithout --token or --user, a token is read from the terminal (without echo). The token is kept in "
      "$XDG_CONFIG_HOME/cloudyknight/contexts.yaml (else ~/.config/...), mode 0600; CK_URL, CK_TOKEN and "
      "CK_CACERT override the current context." +
      examples({"cloudyknight login https://ck.example.com --user ann",
                "echo \"$TOKEN\" | cloudyknight login https://ck.example.com --token -",
                "cloudyknight login https://ck.internal --cacert ca.pem --name work"}));

  ck::cli::DeployOptions deploy_opts;
  auto* deploy = app.add_subcommand("deploy", "Send a folder's source to the server, then follow it until it runs");
  deploy->add_option("dir", deploy_opts.dir, "The folder (default: the current one)");
  deploy->add_option("--name", deploy_opts.name, "Workspace name (default: the folder's name)");
  deploy->add_flag("--private", deploy_opts.private_ws, "Make the workspace private when the deploy creates it");
  deploy->add_flag("--detach", deploy_opts.detach, "Stop once the files are in place (do not follow the start)");
  deploy->add_flag("--watch", deploy_opts.watch, "Deploy again after each save, until Ctrl-C");
  deploy->footer(
      "\nSends only the files that differ from the server's copy (the same ignore rules as `ws upload`: "
      ".gitignore, .ckignore, node_modules and the like stay home), deletes there the source files the folder no "
      "longer has, and creates the workspace first when the server has none of that name. Needs a server: "
      "`cloudyknight login URL` first, or CK_URL and CK_TOKEN." +
      examples({"cloudyknight deploy", "cloudyknight deploy ./app --name shop --private",
                "cloudyknight deploy ./site --watch"}));

  std::string logout_name;
  auto* logout = app.add_subcommand("logout", "Revoke the context's token (when login made it) and forget it");
  logout->add_option("context", logout_name, "Context (default: the current one)");
  logout->footer(examples({"cloudyknight logout", "cloudyknight logout work"}));

  auto* context = app.add_subcommand("context", "List, pick or remove the servers the CLI knows");
  context->require_subcommand(1);
  context->footer(examples({"cloudyknight context list", "cloudyknight context use work",
                            "cloudyknight context remove old"}));
  bool context_json = false;
  std::string context_name;
  auto* context_list = context->add_subcommand("list", "List the contexts (* marks the current one)");
  context_list->add_flag("--json", context_json, "Print JSON");
  context_list->footer(examples({"cloudyknight context list", "cloudyknight context list --json"}));
  auto* context_use = context->add_subcommand("use", "Make a context current");
  context_use->add_option("name", context_name, "Context name")->required();
  context_use->footer(examples({"cloudyknight context use work"}));
  auto* context_remove = context->add_subcommand("remove", "Forget a context (its token is not revoked)");
  context_remove->add_option("name", context_name, "Context name")->required();
  context_remove->footer(examples({"cloudyknight context remove old"}));

  std::string shell;
  auto* completion = app.add_subcommand("completion", "Print the shell completion script");
  completion->add_option("shell", shell, "bash, zsh or fish")->required()->check(CLI::IsMember({"bash", "zsh", "fish"}));
  completion->footer(examples({"source <(cloudyknight completion bash)", "source <(cloudyknight completion zsh)",
                               "cloudyknight completion fish | source"}));

  // ---- workspace ------------------------------------------------------------------------
  auto* ws = app.add_subcommand("workspace", "Work with workspaces");
  ws->alias("ws");
  ws->require_subcommand(1);
  ws->footer(std::string(
                 "\nupload, download and compose work on storage; ls, status, create, start, stop, restart, logs, "
                 "run and open on a server (cloudyknight login); list, delete and sync on either.") +
             kRemoteRule +
             examples({"cloudyknight ws ls", "cloudyknight ws upload site ./site --storage s3://bucket/sites",
                       "cloudyknight ws logs site -f"}));
  auto* compose = ws->add_subcommand("compose", "Print the docker-compose.yml a workspace runs with");
  std::string ws_name, ws_config;
  compose->add_option("name", ws_name, "Workspace name")->required();
  compose->add_option("--config", ws_config, "YAML configuration file");
  compose->add_option("--workspaces", storage.workspaces, "Folder whose subfolders are workspaces");
  compose->footer(examples({"cloudyknight ws compose shop --workspaces ./examples"}));

  auto* git_init = ws->add_subcommand("git-init", "Make a new workspace a clone of a git remote it then follows");
  std::string git_url, git_branch;
  git_init->add_option("name", ws_name, "Workspace name")->required();
  git_init->add_option("url", git_url, "Remote URL (https://, ssh://, git://, user@host:path)")->required();
  git_init->add_option("--branch", git_branch, "Branch to follow (default: the remote's default branch)");
  git_init->add_option("--config", ws_config, "YAML configuration file");
  git_init->add_option("--workspaces", storage.workspaces, "Folder whose subfolders are workspaces");
  git_init->footer(examples({"cloudyknight ws git-init blog https://github.com/me/blog.git --workspaces ./ws"}));

  // upload / sync / download / list / delete: source to and from S3.
  std::string ws_dir;
  ck::cli::TransferFlags transfer;
  bool ws_json = false, ws_yes = false;
  auto transfer_cmd = [&](const char* name, const char* help, bool upload) {
    auto* cmd = ws->add_subcommand(name, help);
    cmd->add_option("name", ws_name, "Workspace name")->required();
    auto* dir = cmd->add_option("dir", ws_dir, "Local folder");
    if (std::strcmp(name, "sync") != 0) dir->required();
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
  upload->footer(examples({"cloudyknight ws upload site ./site --storage s3://bucket/sites",
                           "cloudyknight ws upload site ./site --watch --storage s3://bucket/sites "
                           "--s3-endpoint http://127.0.0.1:9000"}));
  auto* sync_cmd = transfer_cmd(
      "sync",
      "With DIR: make the stored source exactly the folder's (upload --delete). Without: have the server "
      "bring the workspace in step with its storage now",
      true);
  sync_cmd->footer(std::string("\nWith DIR it always works on the storage; without DIR it goes to the server.") +
                   examples({"cloudyknight ws sync site ./site --storage s3://bucket/sites", "cloudyknight ws sync site"}));
  auto* download = transfer_cmd("download", "Download a workspace's source into a folder", false);
  download->add_flag("--delete", transfer.delete_extra, "Also delete local source files that are not stored");
  download->footer(examples({"cloudyknight ws download site ./copy --storage s3://bucket/sites"}));
  auto* ws_gc = ws->add_subcommand("gc", "Abort a workspace's unfinished multipart uploads in S3 (left by killed uploads)");
  bool ws_gc_all = false;
  ws_gc->add_option("name", ws_name, "Workspace name")->required();
  ws_gc->add_option("dir", ws_dir, "The folder it is uploaded from: also aborts the uploads its earlier runs left");
  ws_gc->add_flag("--dry-run", transfer.dry_run, "Show what would be aborted");
  ws_gc->add_flag("--all", ws_gc_all, "Abort every unfinished upload under the workspace, however young");
  ws_gc->add_option("--config", ws_config, "YAML configuration file");
  storage.add_to(ws_gc, false);
  ws_gc->footer(std::string("\nStale: initiated over an hour ago, or recorded by an earlier `ws upload` of DIR that "
                            "never ended. `ws upload` does the same before every upload.") +
                examples({"cloudyknight ws gc site ./site --storage s3://bucket/sites"}));
  auto* list = ws->add_subcommand("list", "List the workspaces (on the server, or in the storage)");
  list->add_flag("--json", ws_json, "Print JSON");
  list->add_option("--config", ws_config, "YAML configuration file");
  storage.add_to(list, false);
  list->footer(kRemoteRule + examples({"cloudyknight ws list", "cloudyknight ws list --storage s3://bucket/sites --json"}));
  auto* del = ws->add_subcommand("delete", "Delete a workspace (on the server, or its stored source)");
  del->add_option("name", ws_name, "Workspace name")->required();
  del->add_flag("--dry-run", transfer.dry_run, "Show what would be deleted (storage only)");
  del->add_flag("-y,--yes", ws_yes, "Do not ask (server; needed when stdin is not a terminal)");
  del->add_option("--config", ws_config, "YAML configuration file");
  storage.add_to(del, false);
  del->footer(kRemoteRule + examples({"cloudyknight ws delete old-site", "cloudyknight ws delete old-site --yes",
                                      "cloudyknight ws delete old-site --storage s3://bucket/sites --dry-run"}));

  // Over the API only.
  auto* ls = ws->add_subcommand("ls", "List the server's workspaces as a table (API)");
  ls->add_flag("--json", ws_json, "Print JSON");
  ls->footer(kApiOnly + examples({"cloudyknight ws ls", "cloudyknight ws ls --json"}));
  auto* status = ws->add_subcommand("status", "A workspace's state, or the server's without NAME (API)");
  status->add_option("name", ws_name, "Workspace name");
  status->add_flag("--json", ws_json, "Print JSON");
  status->footer(kApiOnly + examples({"cloudyknight ws status", "cloudyknight ws status shop --json"}));
  ck::cli::CreateOptions create_opts;
  auto* create = ws->add_subcommand("create", "Create a workspace: empty, from a template, a clone or a git remote (API)");
  create->add_option("name", create_opts.name, "Workspace name")->required();
  auto* t_opt = create->add_option("--template", create_opts.template_name, "A template (GET /templates)");
  auto* c_opt = create->add_option("--clone-of", create_opts.clone_of, "Copy this workspace's source");
  auto* g_opt = create->add_option("--git", create_opts.git_url, "Clone this git remote and follow it");
  t_opt->excludes(c_opt)->excludes(g_opt);
  c_opt->excludes(g_opt);
  create->add_flag("--private", create_opts.private_ws, "Only its owner (and admins) may see and open it");
  create->add_flag("--json", create_opts.json, "Print the workspace as JSON");
  create->footer(kApiOnly + examples({"cloudyknight ws create blog --template node", "cloudyknight ws create blog2 --clone-of blog",
                           "cloudyknight ws create site --git https://github.com/me/site.git --private"}));
  std::map<std::string, CLI::App*> actions;
  for (const char* action : {"start", "stop", "restart"}) {
    auto* cmd = ws->add_subcommand(action, fmt::format("{} a workspace's app (API; asynchronous)",
                                                       action == std::string("start")  ? "Start"
                                                       : action == std::string("stop") ? "Stop (and hold stopped)"
                                                                                       : "Restart"));
    cmd->add_option("name", ws_name, "Workspace name")->required();
    cmd->footer(kApiOnly + examples({fmt::format("cloudyknight ws {} shop", action).c_str()}));
    actions[action] = cmd;
  }
  bool follow = false;
  int tail = -1;
  std::string service;
  auto* logs = ws->add_subcommand("logs", "A workspace's log; -f follows it, across restarts, until Ctrl-C (API)");
  logs->add_option("name", ws_name, "Workspace name")->required();
  logs->add_flag("-f,--follow", follow, "Keep printing what is appended");
  logs->add_option("--tail", tail, "Lines from the end (1-5000; default 200)");
  logs->add_option("--service", service, "A compose workspace's service");
  logs->footer(kApiOnly + examples({"cloudyknight ws logs shop", "cloudyknight ws logs shop -f --tail 20",
                         "cloudyknight ws logs stack --service db"}));
  std::string run_timeout = "30s";
  std::vector<std::string> run_argv;
  auto* run = ws->add_subcommand("run", "Run a command where the app runs; streams its output and exits with its code (API)");
  run->add_option("name", ws_name, "Workspace name")->required();
  run->add_option("--timeout", run_timeout, "Kill it after this long (1s to 10m; default 30s)");
  run->add_option("command", run_argv, "The command and its arguments, after --")->required();
  run->footer(kApiOnly + examples({"cloudyknight ws run shop -- npm test", "cloudyknight ws run shop --timeout 5m -- sh -c 'ls -la'"}));
  bool browser = false;
  auto* open = ws->add_subcommand("open", "Print a workspace's URL; --browser opens it (API)");
  open->add_option("name", ws_name, "Workspace name")->required();
  open->add_flag("--browser", browser, "Open it with xdg-open");
  open->footer(kApiOnly + examples({"cloudyknight ws open shop", "cloudyknight ws open shop --browser"}));

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
  backup->footer(examples({"cloudyknight backup", "cloudyknight backup --dest offsite --workspace shop",
                           "cloudyknight backup --dry-run"}));
  backup_list->footer(examples({"cloudyknight backup list", "cloudyknight backup list --workspace shop --json"}));
  backup_check->footer(examples({"cloudyknight backup check", "cloudyknight backup check --dest offsite"}));
  backup_prune->footer(examples({"cloudyknight backup prune --dry-run", "cloudyknight backup prune"}));
  restore->footer(examples({"cloudyknight restore --workspace shop",
                            "cloudyknight restore --workspace shop --point-in-time \"2026-12-01 10:30:00\"",
                            "cloudyknight restore --workspace shop --mode mirror --snapshot 20261201T103000Z-1a2b3c4d",
                            "cloudyknight restore --workspace shop --to /tmp/shop-old --dry-run"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 prints the message; every usage error is exit code 2 (help and --version: 0).
    return app.exit(e) == 0 ? 0 : 2;
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
  const ck::cli::EnvFn env = getenv_opt;
  if (login->parsed()) {
    if (token_opt->count() > 0) login_opts.token = login_token;
    return ck::cli::login_command(login_opts, env);
  }
  if (logout->parsed()) return ck::cli::logout_command(logout_name, env);
  if (context_list->parsed()) return ck::cli::context_list(context_json, env);
  if (context_use->parsed()) return ck::cli::context_use(context_name, env);
  if (context_remove->parsed()) return ck::cli::context_remove(context_name, env);
  if (completion->parsed()) {
    std::cout << ck::cli::completion_script(app, shell) << std::flush;
    return 0;
  }

  // The server the API commands go to, if any (CK_URL, else the current context).
  auto remote = [&]() -> ck::Result<std::optional<ck::cli::Endpoint>> { return ck::cli::resolve_remote(env); };
  auto with_remote = [&](const std::string& command, const std::function<int(const ck::cli::Endpoint&)>& fn) {
    auto r = remote();
    if (r.has_error()) {
      std::cerr << "cloudyknight: " << r.error().message << "\n";
      return 1;
    }
    if (!r.value()) {
      std::cerr << "cloudyknight: " << ck::cli::no_remote_message(command) << "\n";
      return 2;
    }
    return fn(*r.value());
  };
  if (gc->parsed()) {
    bool local = storage_flag_given(gc) || gc->get_option("--data")->count() > 0;
    if (!local) {
      auto r = remote();
      if (r.has_error()) {
        std::cerr << "cloudyknight: " << r.error().message << "\n";
        return 1;
      }
      if (r.value()) return ck::cli::remote_gc(*r.value(), gc_dry, gc_json);
    }
    std::vector<ck::Setting> flags;
    storage.append(flags);
    if (!data.empty()) flags.push_back({"data", data, "--data"});
    auto config = load(gc_config, flags);
    if (!config) return 2;
    return ck::gc_command(*config, gc_dry, gc_json);
  }
  // list, delete and sync: the API when a server is set and no storage flag says otherwise.
  for (CLI::App* shared : {list, del, sync_cmd}) {
    if (!shared->parsed() || storage_flag_given(shared)) continue;
    if (shared == sync_cmd && !ws_dir.empty()) break;  // a folder to push: the storage command
    auto r = remote();
    if (r.has_error()) {
      std::cerr << "cloudyknight: " << r.error().message << "\n";
      return 1;
    }
    if (!r.value()) break;  // no server: the storage command, as before
    const ck::cli::Endpoint& e = *r.value();
    if (shared == list) return ck::cli::remote_list(e, ws_json);
    if (shared == del) {
      if (transfer.dry_run) {
        std::cerr << "cloudyknight: --dry-run is for deleting from storage (give --storage); the server has none\n";
        return 2;
      }
      return ck::cli::remote_delete(e, ws_name, ws_yes);
    }
    return ck::cli::remote_sync(e, ws_name);
  }
  if (deploy->parsed()) {
    return with_remote("deploy", [&](const auto& e) { return ck::cli::deploy_command(e, deploy_opts); });
  }
  if (ls->parsed()) return with_remote("ws ls", [&](const auto& e) { return ck::cli::remote_list(e, ws_json); });
  if (status->parsed()) {
    return with_remote("ws status", [&](const auto& e) { return ck::cli::remote_status(e, ws_name, ws_json); });
  }
  if (create->parsed()) {
    return with_remote("ws create", [&](const auto& e) { return ck::cli::remote_create(e, create_opts); });
  }
  for (const auto& [action, cmd] : actions) {
    if (cmd->parsed()) {
      const std::string act = action;
      return with_remote("ws " + act, [&](const auto& e) { return ck::cli::remote_action(e, ws_name, act); });
    }
  }
  if (logs->parsed()) {
    return with_remote("ws logs",
                       [&](const auto& e) { return ck::cli::remote_logs(e, ws_name, follow, tail, service); });
  }
  if (run->parsed()) {
    return with_remote("ws run",
                       [&](const auto& e) { return ck::cli::remote_run(e, ws_name, run_timeout, run_argv); });
  }
  if (open->parsed()) {
    return with_remote("ws open", [&](const auto& e) { return ck::cli::remote_open(e, ws_name, browser); });
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
  if (ws_gc->parsed()) {
    auto config = load(ws_config, ws_flags);
    if (!config) return 2;
    return ck::cli::workspace_gc(*config, ws_name, ws_dir, ws_gc_all, transfer.dry_run);
  }
  if (upload->parsed() || sync_cmd->parsed() || download->parsed() || list->parsed() || del->parsed()) {
    if (sync_cmd->parsed() && ws_dir.empty()) {
      std::cerr << "cloudyknight: ws sync NAME DIR: give the folder to push to storage (without DIR, `ws sync "
                   "NAME` asks a server, which needs `cloudyknight login` or CK_URL and no storage flag)\n";
      return 2;
    }
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
