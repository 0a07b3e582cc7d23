#pragma once
// The Workspace model: what a folder of source is (type, how it installs and runs) as read
// from its files. Plain values, built by detect_workspace() on the monitor's thread.

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "core/units.h"

namespace ck {

enum class WorkspaceType { node, python, php, go, ruby, static_site, compose, dockerfile, unknown };

std::string_view type_name(WorkspaceType t);

/// workspace.json "prefix": the gateway strips /<name> before the app sees the path (strip,
/// the default), or forwards /<name>/... unchanged (keep: dev servers with a base path).
enum class PrefixMode { strip, keep };
std::string_view prefix_name(PrefixMode m);
std::optional<WorkspaceType> parse_type(std::string_view s);

/// Everything needed to serve or run one workspace. `error` non-empty means the workspace
/// cannot run as it is (malformed package.json, no entry point...); it says how to fix it.
struct WorkspaceSpec {
  std::string name;
  WorkspaceType type = WorkspaceType::unknown;
  std::string matched;  // the file that decided the type: "package.json", "workspace.json"...
  std::string description;
  std::string icon;
  bool is_public = true;

  std::string install;  // shell command run in the app folder before start; empty = none
  std::string command;  // shell command that starts the app; $PORT is in its environment
  std::optional<int> port;
  std::map<std::string, std::string> env;
  std::string image;
  std::string static_root;  // static only: folder served, relative to the workspace ("" or "public")
  /// workspace.json "idle": overrides of the configured policy (unset = the config's).
  std::optional<Duration> idle_after, background_after, stop_after, grace;
  /// workspace.json "reload": what a source change does to a running app: "restart" (the
  /// default), "hmr" (copy the changed files in; its dev server reloads) or "none".
  std::string reload = "restart";
  /// workspace.json "prefix", else what detection chose (keep for the dev servers it knows).
  PrefixMode prefix = PrefixMode::strip;
  /// Detection's one line about the prefix, for the log ("next dev: ... read CK_BASE_PATH").
  std::string prefix_note;
  std::optional<std::uint64_t> memory;
  std::optional<double> cpus;
  /// A branch preview (a git worktree GitWorkspaces made beside its workspace): the workspace
  /// and the remote branch. Empty for every other folder.
  std::string preview_of;
  std::string preview_branch;

  std::string error;

  /// Changes whenever something that decides how the workspace runs changes.
  std::string fingerprint() const;
};

/// What preview_of() finds.
struct PreviewOf {
  std::string workspace;  // the folder whose repository it is a worktree of
  std::string branch;     // the remote branch it follows
};

/// `dir` is a branch preview: a git worktree of a sibling folder's repository that
/// GitWorkspaces marked with the branch it follows. Blocking reads; nullopt otherwise.
std::optional<PreviewOf> preview_of(const std::filesystem::path& dir);

/// Reads a workspace folder and decides its type (DESIGN.md "Type detection", first match
/// wins, workspace.json overrides). Never throws; problems end up in `error`.
WorkspaceSpec detect_workspace(const std::string& name, const std::filesystem::path& dir);

}  // namespace ck
