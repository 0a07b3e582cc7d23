// Branch previews: a worktree <workspace>--<branch> beside a git workspace for each other
// branch of its remote (GitWorkspaces::sync_previews, after every pull of the workspace).
#include <fmt/format.h>

#include <cctype>
#include <fstream>
#include <map>

#include "core/log.h"
#include "core/names.h"
#include "git/workspaces.h"
#include "workspace/workspace.h"

namespace ck {
namespace fs = std::filesystem;

namespace {

auto logger() {
  static auto l = log::get("git");
  return l;
}

// "feature/New_UI" -> "feature-new-ui": what a branch adds to its preview's name.
std::string safe_branch_part(const std::string& branch) {
  std::string out;
  for (char c : branch) {
    char l = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    bool ok = (l >= 'a' && l <= 'z') || (l >= '0' && l <= '9');
    if (ok) {
      out += l;
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

}  // namespace

void GitWorkspaces::sync_previews(const std::string& name) {
  fs::path dir = root_ / name;
  if (git::is_repository(dir) && preview_of(dir)) return;  // a preview has no previews
  auto st = git::status(dir);
  auto branches = git::remote_branches(dir);
  if (st.has_error() || branches.has_error()) return;
  auto log = logger();
  // What should exist: a preview per branch but the followed one.
  std::map<std::string, std::string> want;  // preview name -> branch
  std::vector<std::string> refused;
  for (const auto& b : branches.value()) {
    if (b == st.value().branch) continue;
    std::string preview = name + "--" + safe_branch_part(b);
    if (safe_branch_part(b).empty() || !is_valid_workspace_name(preview)) {
      refused.push_back(fmt::format("branch '{}': '{}' is not a workspace name (at most 63 characters, "
                                    "a-z 0-9 -); rename the branch to preview it", b, preview));
      continue;
    }
    if (auto [it, fresh] = want.emplace(preview, b); !fresh) {
      refused.push_back(fmt::format("branches '{}' and '{}' both map to the preview '{}'; rename one to "
                                    "preview both", it->second, b, preview));
      want.erase(it);
    }
  }
  // What exists: worktrees of this repository beside it.
  std::map<std::string, std::string> have;  // preview name -> branch
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_, ec)) {
    std::string folder = entry.path().filename().string();
    if (folder.rfind(name + "--", 0) != 0) continue;
    auto p = preview_of(entry.path());
    if (p && p->workspace == name) have[folder] = p->branch;
  }
  for (const auto& [preview, branch] : have) {
    auto w = want.find(preview);
    if (w != want.end() && w->second == branch) {
      auto up = git::update_worktree(root_ / preview);
      if (up.has_error()) {
        log->warn("[ws={}] preview of '{}': {}", preview, branch, up.error().message);
      } else if (up.value().updated) {
        log->info("[ws={}] preview of '{}' updated to {}", preview, branch, up.value().new_head.substr(0, 12));
        event(name, {{"action", "preview"}, {"preview", preview}, {"branch", branch}, {"head", up.value().new_head}});
      }
      want.erase(w);
      continue;
    }
    auto removed = git::remove_worktree(dir, preview);
    if (removed.has_error()) {
      log->warn("[ws={}] cannot remove the preview of '{}': {}", preview, branch, removed.error().message);
      continue;
    }
    log->info("[ws={}] the branch '{}' is gone from the remote: its preview is removed", preview, branch);
    event(name, {{"action", "preview"}, {"preview", preview}, {"branch", branch}, {"removed", true}});
    if (on_preview) on_preview(preview, name, false);
  }
  for (const auto& [preview, branch] : want) {
    if (fs::exists(fs::symlink_status(root_ / preview, ec))) {
      refused.push_back(fmt::format("branch '{}': a folder named '{}' already exists and is not its preview",
                                    branch, preview));
      continue;
    }
    auto added = git::add_worktree(dir, preview, root_ / preview, branch);
    if (added.has_error()) {
      refused.push_back(fmt::format("branch '{}': {}", branch, added.error().message));
      continue;
    }
    if (on_preview) on_preview(preview, name, true);
    log->info("[ws={}] preview of the branch '{}' made (it starts on its first request)", preview, branch);
    event(name, {{"action", "preview"}, {"preview", preview}, {"branch", branch}, {"added", true}});
  }
  std::lock_guard lock(mutex_);
  auto& state = states_[name];
  state.previews_refused = std::move(refused);
  for (const auto& r : state.previews_refused) log->warn("[ws={}] no preview for {}", name, r);
}

void GitWorkspaces::prune_orphan_previews() {
  // A preview whose workspace is gone (deleted, its repository with it): remove the folder;
  // its commits are on the remote.
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_, ec)) {
    std::string folder = entry.path().filename().string();
    auto pos = folder.find("--");
    if (pos == std::string::npos || !is_valid_workspace_name(folder)) continue;
    fs::path marker = entry.path() / ".git";
    if (!fs::is_regular_file(marker, ec) || preview_of(entry.path())) continue;
    std::ifstream in(marker);
    std::string line;
    std::getline(in, line);
    // Only what GitWorkspaces made: gitdir into <root>/<workspace>/.git/worktrees/<folder>.
    if (line.rfind("gitdir: ", 0) != 0) continue;
    std::string target = line.substr(8);
    while (target.size() > 1 && target.back() == '/') target.pop_back();
    fs::path gitdir = target;
    fs::path expect = fs::weakly_canonical(root_, ec) / folder.substr(0, pos) / ".git" / "worktrees" / folder;
    if (fs::weakly_canonical(gitdir, ec) != expect || fs::exists(gitdir, ec)) continue;
    fs::remove_all(entry.path(), ec);
    logger()->info("[ws={}] removed: a preview of '{}', which is gone", folder, folder.substr(0, pos));
    if (on_preview) on_preview(folder, folder.substr(0, pos), false);
  }
}

}  // namespace ck
