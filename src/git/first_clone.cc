// A first clone made quick: the filter lookups a checkout can skip, and a local remote's object
// files shared instead of repacked (bench/git measured both).
#include <git2.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "git/internal.h"

namespace ck::git {
namespace fs = std::filesystem;

namespace {

int find_gitattributes(const char*, const git_tree_entry* entry, void* payload) {
  if (std::string_view(git_tree_entry_name(entry)) != ".gitattributes") return 0;
  *static_cast<bool*>(payload) = true;
  return -1;  // stop the walk
}

// The object folder of the repository a local remote URL (an absolute path or file://, what
// check_url() admits as local) names; nullopt for any other URL, for a folder that is no
// repository, and for a shallow one or one that borrows objects from another (alternates),
// whose object files alone are not a complete history.
std::optional<fs::path> local_objects_dir(const std::string& url) {
  std::string path = url;
  if (path.rfind("file://", 0) == 0) path = path.substr(7);
  // Percent-escapes and relative paths: leave those to libgit2's own transport.
  if (path.empty() || path.front() != '/' || path.find('%') != std::string::npos) return std::nullopt;
  git_repository* raw = nullptr;
  if (git_repository_open_ext(&raw, path.c_str(), GIT_REPOSITORY_OPEN_NO_SEARCH, nullptr) != 0) {
    return std::nullopt;
  }
  RepoPtr src(raw);
  fs::path objects = fs::path(git_repository_commondir(src.get())) / "objects";
  std::error_code ec;
  if (git_repository_is_shallow(src.get()) != 0 || fs::exists(objects / "info" / "alternates", ec)) {
    return std::nullopt;
  }
  return objects;
}

bool all_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; });
}

// Hard-links `from` as `to` (a copy when the two are on different filesystems or the kernel
// refuses the link), through a temporary name so `to` never exists half-written.
bool link_or_copy(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::create_hard_link(from, to, ec);
  if (!ec) return true;
  fs::path tmp = to;
  tmp += ".tmp";
  if (!fs::copy_file(from, tmp, fs::copy_options::overwrite_existing, ec)) return false;
  fs::rename(tmp, to, ec);
  if (ec) fs::remove(tmp, ec);
  return !ec;
}

}  // namespace

// True when no checkout filter can change a file written from `tree` into the working copy of
// a repository that was just initialised, so the checkout may skip looking filters up. The
// only filters libgit2 has are crlf and ident (CloudyKnight registers none, and runs no filter
// driver): ident is driven by attributes alone, crlf by attributes and core.autocrlf /
// core.eol. So: no .gitattributes in the tree or among the files the folder already holds
// (the new index is empty), no info/attributes, no core.attributesFile, no attributes file in
// the XDG or system folders libgit2 reads, and none of the three config keys set. The lookup
// is what it saves: for every file written, libgit2 resolves its folder with realpath() (a
// readlink per path component) and stats each level's .gitattributes; for 5,000 files that
// was 80,000 readlink and 10,000 stat calls, a quarter of a local clone's time (bench/git).
bool filters_are_inert(git_repository* repo, git_tree* tree) {
  bool found = false;
  if (git_tree_walk(tree, GIT_TREEWALK_PRE, find_gitattributes, &found) < 0 && !found) return false;
  if (found) return false;
  const char* workdir = git_repository_workdir(repo);
  if (!workdir) return false;
  std::error_code ec;
  fs::recursive_directory_iterator it(workdir, fs::directory_options::skip_permission_denied, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    if (it->path().filename() == ".git") {
      it.disable_recursion_pending();
    } else if (it->path().filename() == ".gitattributes") {
      return false;
    }
  }
  if (ec) return false;
  if (fs::exists(fs::path(git_repository_commondir(repo)) / "info" / "attributes", ec) || ec) return false;
  git_config* cfg_raw = nullptr;
  if (git_repository_config_snapshot(&cfg_raw, repo) != 0) return false;
  ConfigPtr cfg(cfg_raw);
  for (const char* key : {"core.autocrlf", "core.eol", "core.attributesfile"}) {
    git_config_entry* e = nullptr;
    if (git_config_get_entry(&e, cfg.get(), key) == 0) {
      git_config_entry_free(e);
      return false;
    }
  }
  for (auto [level, name] : {std::pair{GIT_CONFIG_LEVEL_XDG, "attributes"}, std::pair{GIT_CONFIG_LEVEL_SYSTEM, "gitattributes"}}) {
    git_buf buf = GIT_BUF_INIT;
    if (git_libgit2_opts(GIT_OPT_GET_SEARCH_PATH, level, &buf) != 0) return false;
    std::string dirs(buf.ptr ? buf.ptr : "", buf.size);
    git_buf_dispose(&buf);
    for (std::size_t pos = 0; pos <= dirs.size();) {
      std::size_t colon = dirs.find(GIT_PATH_LIST_SEPARATOR, pos);
      if (colon == std::string::npos) colon = dirs.size();
      std::string d = dirs.substr(pos, colon - pos);
      if (!d.empty() && (fs::exists(fs::path(d) / name, ec) || ec)) return false;
      pos = colon + 1;
    }
  }
  return true;
}

// A first clone from a local remote starts from the remote's object files, as `git clone
// /path` does: its loose objects and packs are hard-linked (or copied) into the new
// repository's empty `objects`, so the fetch that follows finds every object it wants already
// there and transfers nothing. Without this, libgit2's local transport builds a new pack in
// process (a delta search and a deflate of every object) and indexes it again (an inflate and
// a hash of every object): for 5,000 files and 1,000 commits, 8.8 s where git's file:// clone
// takes ~2.5 s (bench/git). Object and pack files are immutable once named, so sharing them is
// safe; a pack goes in before its index (libgit2 finds packs by their .idx), and temporary
// files of a push in progress (not named by an object id) are skipped. All or nothing: when
// any file cannot be linked or copied, what was seeded is removed and the fetch transfers
// everything, since a present tip with a missing ancestor would make the fetch skip objects
// the clone needs.
void seed_objects_from_local(const std::string& url, const fs::path& objects) {
  auto src = local_objects_dir(url);
  if (!src) return;
  std::vector<fs::path> seeded;
  auto seed = [&](const fs::path& from, const fs::path& to) {
    if (!link_or_copy(from, to)) return false;
    seeded.push_back(to);
    return true;
  };
  bool ok = true;
  std::error_code ec;
  for (fs::directory_iterator it(*src, ec), end; ok && !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.size() != 2 || !all_hex(name)) continue;
    std::error_code ec2;
    fs::create_directories(objects / name, ec2);
    for (fs::directory_iterator f(it->path(), ec2), fend; ok && !ec2 && f != fend; f.increment(ec2)) {
      std::string file = f->path().filename().string();
      if (file.size() == GIT_OID_HEXSZ - 2 && all_hex(file)) ok = seed(f->path(), objects / name / file);
    }
    if (ec2) ok = false;
  }
  if (ec) ok = false;
  ec.clear();
  for (fs::directory_iterator it(*src / "pack", ec), end; ok && !ec && it != end; it.increment(ec)) {
    fs::path idx = it->path();
    if (idx.extension() != ".idx") continue;
    fs::path pack = idx;
    pack.replace_extension(".pack");
    ok = seed(pack, objects / "pack" / pack.filename()) && seed(idx, objects / "pack" / idx.filename());
  }
  if (ok) return;
  for (const auto& p : seeded) fs::remove(p, ec);
}

}  // namespace ck::git
