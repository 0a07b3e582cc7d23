#pragma once
// Tar archives for the Docker driver: build contexts written from a workspace folder under
// .dockerignore rules, and small in-memory tars for put_archive. Blocking file I/O: call
// write_tar from the blocking pool, never on an io_context. DockerIgnore is pure logic.

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"

namespace ck {

/// What write_tar does with one entry.
enum class TarPick {
  include,       // write it; a directory is also descended into
  skip,          // leave it out; a directory is not descended into
  descend_only,  // a directory: write no entry for it, but visit its contents (an excluded
                 // directory below which exceptions may re-include paths); for others = skip
};

/// Decides about a path relative to the root ('/'-separated, no leading "./", no trailing '/').
/// An empty filter includes everything.
using TarFilter = std::function<TarPick(const std::string& rel_path, bool is_dir)>;

/// Writes an uncompressed POSIX (pax restricted) tar of everything under `root` to `out`.
/// Entries are relative ("app.py", "src/x.js"; directories end in '/'), sorted by name, a
/// directory before its contents. Regular files, directories and symlinks (stored, never
/// followed) only; sockets, fifos and devices are skipped, hard links become copies. Modes and
/// mtimes are kept, owners become 0/root. Files are streamed; a file that shrinks while being
/// read is an error. `out` itself is never archived. On error `out` is removed and the message
/// names the file and the reason.
/// With `keep_owners` (a root filesystem for `docker import`), files keep their uid/gid.
Result<void> write_tar(const std::filesystem::path& root, const std::filesystem::path& out,
                       const TarFilter& filter = {}, bool keep_owners = false);

struct TarFile {
  TarFile() = default;
  TarFile(std::string p, std::string c, int m = 0644)
      : path(std::move(p)), content(std::move(c)), mode(m) {}
  std::string path;  // relative, '/'-separated, no ".." nor empty parts
  std::string content;
  int mode = 0644;
  std::string symlink;  // non-empty: a symbolic link to this target (content unused)
};

/// An in-memory tar of `files`, each parent directory added once (0755) before its contents.
/// Owners 0/root and mtime 0, so equal input gives equal bytes.
Result<std::string> tar_of(const std::vector<TarFile>& files);

/// True when a symbolic link at `rel_path` (relative to a root, as for TarFile) whose target is
/// `target` resolves inside that root by its text alone: a relative target that never climbs
/// above the root from the link's folder. Absolute and empty targets leave the root.
bool symlink_stays_inside(std::string_view rel_path, std::string_view target);

/// What an hmr copy does with one changed path of a workspace folder.
struct HmrEntry {
  enum class Kind {
    copy,     // `file` holds the regular file's content, or a symlink that stays inside
    gone,     // nothing there: delete the copy
    refused,  // a symlink (the path's own or a folder's on its way) that leaves the folder,
              // or a path that is not relative: neither its content nor the link is copied;
              // `why` says which
    ignored,  // a folder, socket, fifo or device: nothing to copy
  };
  Kind kind = Kind::ignored;
  TarFile file;
  std::string why;
};

/// Reads `rel_path` below `root` for an hmr copy without following any symbolic link: each
/// folder on the way is opened with O_NOFOLLOW (a symlinked folder is refused), and the file
/// itself is opened with O_NOFOLLOW, so swapping it for a link meanwhile cannot leak the
/// link's target. A symlink that stays inside (symlink_stays_inside) is copied as a symlink.
/// Blocking file I/O.
HmrEntry hmr_entry(const std::filesystem::path& root, const std::string& rel_path);

/// The entry paths of a tar held in memory, in order (directories end in '/').
Result<std::vector<std::string>> tar_list(std::string_view tar);

/// .dockerignore rules with the semantics of Docker's ignorefile.ReadAll and
/// patternmatcher.MatchesOrParentMatches: a path is excluded if the last pattern matching it or
/// one of its parent directories is not an exception ('!'). Patterns are Go filepath.Match
/// globs ('*' and '?' stop at '/', "[a-c]", '\' escapes) where "**" spans any number of
/// directories. Invalid patterns (a lone "!", an unclosed '[') are ignored, where Docker
/// would refuse the whole file. Immutable after parse; safe to share between threads.
class DockerIgnore {
 public:
  static DockerIgnore parse(std::string_view text);
  /// dir/.dockerignore, or no rules if there is none (or it cannot be read).
  static DockerIgnore load(const std::filesystem::path& dir);

  /// `rel_path` as for TarFilter.
  bool excluded(const std::string& rel_path) const;
  bool empty() const { return patterns_.empty(); }
  bool has_exceptions() const;
  /// False when no exception can re-include anything strictly below `dir`, so an excluded
  /// `dir` need not be walked. Conservative: true when unsure.
  bool may_include_below(const std::string& dir) const;

  // One piece of a compiled pattern (public only so archive.cc's helpers can name it).
  struct Token {
    enum Kind { literal, any_char, star, dirs, rest, char_class } kind = literal;
    char32_t ch = 0;                                    // literal
    bool negated = false;                               // char_class
    std::vector<std::pair<char32_t, char32_t>> ranges;  // char_class, inclusive
  };

 private:
  struct Pattern {
    std::string text;  // cleaned, without the '!'
    bool exception = false;
    std::vector<Token> tokens;
  };
  std::vector<Pattern> patterns_;
};

/// The filter for a build context: "Dockerfile" and ".dockerignore" always go in (the daemon
/// needs them), everything else follows `ignore`.
TarFilter docker_context_filter(DockerIgnore ignore);

}  // namespace ck
