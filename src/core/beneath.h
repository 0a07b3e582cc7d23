#pragma once
// Safe access to files beneath a folder, shared by the gateway's static server and the API's
// files endpoints (one copy of the rules): the lexical checks of a relative path, opening it
// beneath a folder descriptor without following any symlink, and the Content-Type of a name.
// No state, no threads.

#include <string>
#include <string_view>

namespace ck {

/// What check_relative_path() refuses.
enum class PathRefusal {
  none,
  bad_bytes,  // a NUL byte or a backslash
  dot_dot,    // a ".." segment
  hidden,  // a segment starting with '.' (other than ".well-known"), when hidden ones are refused
};

/// Checks an already percent-decoded relative path segment by segment and builds `rel`:
/// '/'-separated, without "", "." or leading/trailing slashes ("" = the folder itself).
/// `allow_hidden` false refuses dot segments other than ".well-known" (the static server);
/// true lets them through (the files API edits .gitignore). Pure.
PathRefusal check_relative_path(std::string_view decoded, bool allow_hidden, std::string& rel);

/// True if a segment of the '/'-separated `rel` is ".git" in any case: a repository's
/// internals, which neither the files API nor a deploy writes. Pure.
bool has_git_segment(std::string_view rel);

/// Opens `rel` (from check_relative_path(); "" = the directory itself) beneath the directory
/// `dir_fd`: openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, read-only, close-on-exec and
/// non-blocking (a FIFO planted in the folder cannot stall a worker). -1 with errno set on
/// failure: ELOOP or EXDEV for a symlink or a mount point on the way, ENOSYS without openat2.
int open_beneath(int dir_fd, const std::string& rel);

/// "text/css; charset=utf-8" for a file name or relative path ("css/site.css");
/// application/octet-stream when unknown.
std::string_view content_type_for_name(std::string_view name);

}  // namespace ck
