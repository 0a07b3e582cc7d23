#pragma once
// A workspace folder's files as the files API reads and writes them (issue 16): everything is
// opened beneath a descriptor of the workspace folder with core/beneath.h's rules, so no
// symlink is ever followed and nothing outside the folder is reached, whatever the folder
// holds. Writes are atomic (a temporary file in the same folder, fsync, rename) and checked
// against If-Match / If-None-Match with content ETags (SHA-256), under one process-wide lock so
// two API writers cannot interleave a check and a rename. Blocking file I/O on the caller's
// thread; the ETag and condition helpers are pure.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace ck::files {

/// The strong ETag of a file's content: "\"<hex SHA-256>\"" (quotes included). Pure.
std::string content_etag(std::string_view bytes);

/// True if an If-Match header value allows a resource whose current ETag is `etag` (nullopt:
/// it does not exist): "*" matches any existing one, otherwise one of the listed entity tags
/// must equal it by strong comparison (a weak W/ tag never matches). Pure.
bool if_match_allows(std::string_view header, const std::optional<std::string>& etag);

/// One entry of a folder listing.
struct Entry {
  std::string name;
  std::string type;  // "file", "dir", "symlink" or "other" (a FIFO, socket or device)
  std::uint64_t size = 0;
  std::int64_t mtime_ms = 0;
  std::string etag;  // files up to kListEtagMax bytes (while kListEtagBudget lasts); else ""
};

/// Listings stop after this many entries (Found::truncated).
inline constexpr std::size_t kMaxListEntries = 10000;
/// Files in a listing get an ETag up to this size, and until this many bytes were hashed.
inline constexpr std::uint64_t kListEtagMax = 1u << 20;
inline constexpr std::uint64_t kListEtagBudget = 16u << 20;

/// What read() found: a file's bytes, or a folder's entries sorted by name.
struct Found {
  bool dir = false;
  std::string body;  // a file
  std::string etag;  // a file
  std::int64_t mtime_ms = 0;
  std::vector<Entry> entries;  // a folder
  bool truncated = false;      // a folder with more than kMaxListEntries entries
};

/// Reads `rel` (core/beneath.h check_relative_path() form, "" = the folder itself) beneath
/// `root_fd`. Errors: not_found; forbidden for a symlink or mount point on the way or at the
/// end, and for what is neither a regular file nor a folder; too_large for a file over
/// `max_bytes` (the message names it; `limit_key` is the setting to raise); io.
Result<Found> read(int root_fd, const std::string& rel, std::uint64_t max_bytes,
                   std::string_view limit_key);

/// The preconditions of a write or delete.
struct Conditions {
  std::optional<std::string> if_match;  // the If-Match header's value, when sent
  bool if_none_match_any = false;       // If-None-Match: * (create only)
};

/// Called once the change is ready (a write's new file complete and synced beside the target)
/// and the preconditions hold, just before it takes effect; an error cancels it and is
/// returned. S3 storage uploads or deletes the object here, so the bucket has the change
/// before the mirror does. May be empty.
using Commit = std::function<Result<void>()>;

struct Written {
  bool created = false;  // there was no file before (201)
  std::string etag;      // content_etag(body)
};

/// Writes `body` to `rel` beneath `root_fd` atomically, creating missing parent folders (0755),
/// keeping an existing file's permission bits (else 0644). Errors: invalid_argument for "";
/// precondition_failed (with `*current_etag` set to the file's ETag, "" when there is none);
/// forbidden for a symlink (on the way or at the end) or something not a regular file;
/// conflict for a folder at `rel` or a file where a parent folder belongs; io.
struct WriteOptions {
  std::optional<std::uint32_t> mode;  // permission bits replacing the kept or default ones
  /// fsync the file and its folder before answering; a caller writing many files (a deploy)
  /// turns it off and syncs the file system once at the end (syncfs).
  bool sync = true;
};
Result<Written> write(int root_fd, const std::string& rel, std::string_view body,
                      const Conditions& when, const Commit& commit, std::string* current_etag,
                      const WriteOptions& options = {});

/// Deletes the file (or empty folder) `rel` beneath `root_fd`. Errors: invalid_argument for "";
/// not_found; precondition_failed (as write); forbidden for a symlink; conflict for a folder
/// that is not empty; io. `commit` is told whether it is a folder.
Result<void> remove(int root_fd, const std::string& rel, const Conditions& when,
                    const std::function<Result<void>(bool dir)>& commit, std::string* current_etag);

}  // namespace ck::files
