#pragma once
// Which files of a workspace folder are "source" and get uploaded to storage: git's .gitignore
// rules (gitignore(5), matched like git's wildmatch), `.ckignore` files with the same syntax,
// and a few built-in excludes. IgnoreRules is pure logic (no I/O); list_source_files() is the
// one tree walker built on it.
//
// Precedence, highest first, for one path (the first source that matches decides):
//   1. hard excludes: a folder named `.git`, and any file or folder whose name starts with
//      `.env` unless IgnoreOptions::allow_env; nothing can re-include these;
//   2. lockfiles (kLockfiles, any depth, files only) are included when include_lock is true,
//      even if a pattern such as `*.lock` or `yarn.lock` excludes them; with include_lock false
//      they are ordinary files and the patterns below apply to them as usual;
//   3. IgnoreOptions::extra_patterns (anchored at the root), like git's `--exclude` on the
//      command line, which also beats every .gitignore;
//   4. ignore files, the deepest folder first; within one folder `.ckignore` is read after
//      `.gitignore` (so it overrides it) and the last matching line wins;
//   5. the built-in excludes (kBuiltinPatterns), so a user's `!dist/` re-includes `dist/`.
// On top of that, as in git, a path whose parent folder is excluded is excluded whatever its
// own rules say: `!keep.txt` cannot re-include `build/keep.txt` once `build/` is excluded.

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace ck {

/// Soft built-in excludes, applied before (below) every user rule.
inline constexpr std::array<std::string_view, 11> kBuiltinPatterns = {
    "node_modules/", ".git/",   "*.log",    ".env*",  "dist/",    "build/",
    "__pycache__/",  "vendor/", ".vscode/", ".idea/", ".DS_Store"};

/// Lockfile names that include_lock keeps even when a pattern excludes them.
inline constexpr std::array<std::string_view, 8> kLockfiles = {
    "package-lock.json", "yarn.lock",   "pnpm-lock.yaml", "composer.lock",
    "Gemfile.lock",      "poetry.lock", "go.sum",         "Cargo.lock"};

struct IgnoreOptions {
  /// Lockfiles are uploaded even when a user pattern excludes them (see precedence above).
  bool include_lock = true;
  /// `.env*` becomes an ordinary built-in exclude that `!.env` can re-include.
  bool allow_env = false;
  /// The soft built-in excludes (kBuiltinPatterns). The hard excludes stay on without them.
  bool builtins = true;
  /// More patterns in .gitignore syntax, anchored at the root, above every ignore file.
  std::vector<std::string> extra_patterns;
};

/// The compiled ignore rules of one tree: patterns are parsed once in add_file() and matched
/// without allocating (except patterns of more than 63 wildcard tokens). Built by one thread
/// (add_file), then safe to query from many (const).
/// Paths are relative to the tree's root, '/'-separated, without a leading slash; names are
/// bytes (no case folding, like git with core.ignoreCase=false).
class IgnoreRules {
 public:
  explicit IgnoreRules(IgnoreOptions opts = {});
  ~IgnoreRules();
  IgnoreRules(IgnoreRules&&) noexcept;
  IgnoreRules& operator=(IgnoreRules&&) noexcept;

  /// Adds the patterns of one ignore file located at `dir` (relative to the root, "" for the
  /// root). Files added for the same folder stack in call order: a later file overrides an
  /// earlier one (the walker adds .gitignore, then .ckignore). Never fails: lines git would
  /// not match anything with (a malformed `[` class, a trailing `\`) simply never match.
  /// `source_name` is what why() shows ("src/.gitignore").
  void add_file(const std::string& dir, std::string_view text, std::string source_name);

  /// True if the relative path ('/'-separated, no leading slash) is excluded; is_dir for
  /// folders. Checks every parent folder too (an excluded parent excludes everything below it).
  bool ignored(std::string_view rel_path, bool is_dir) const;

  /// ignored() for a path whose parent folders are already known not to be excluded (a walker
  /// that never descends into an excluded folder): only the path's own rules are consulted.
  bool ignored_entry(std::string_view rel_path, bool is_dir) const;

  /// Which rule decided (for `--dry-run` explanations): "file:line: pattern" (the line as
  /// written, minus trailing spaces, `!` included, so an included path can name the negation
  /// that re-included it), "built-in: node_modules/", "built-in: .env* (always excluded)",
  /// "built-in: lockfile (include_lock)", or "" if no rule matched. For a path under an excluded
  /// folder, the rule that excluded the outermost such folder.
  std::string why(std::string_view rel_path, bool is_dir) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct SourceFile {
  std::string path;  // relative to the root, '/'-separated
  std::uint64_t size;
  std::int64_t mtime_ns;  // since the Unix epoch
  std::uint32_t mode = 0644;  // permission bits (of the target, for a symlinked file)
};

struct SourceTree {
  std::vector<SourceFile> files;     // sorted by path (bytewise)
  std::vector<std::string> skipped;  // folders that could not be read, relative to the root
};

/// Walks `root` (not following symlinks to folders; symlinked files are listed as files only if
/// they point inside root), reading .gitignore/.ckignore as it descends, never descending into
/// an ignored folder, and returns the included regular files sorted by path. Errors
/// (unreadable root) → Result error with a clear message; unreadable subfolders are skipped and
/// listed in `skipped`.
///
/// Details: an ignore file is read only if it is a regular file (git does not follow a
/// symlinked .gitignore either); a folder whose ignore file exists but cannot be read is
/// skipped as a whole (listed in `skipped`) rather than uploaded without its rules, and at the
/// root that is an error. A symlinked file is listed (with its target's size and mtime) only if
/// its resolved target is a regular file inside root that these rules do not exclude, so a link
/// cannot smuggle out `.env` or an ignored folder's content. Sockets, FIFOs and devices are
/// never listed. Blocking: call it from a worker thread.
Result<SourceTree> list_source_files(const std::filesystem::path& root, const IgnoreOptions& opts);

}  // namespace ck
