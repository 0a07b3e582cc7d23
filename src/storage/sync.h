#pragma once
// The sync engine: makes one workspace's objects in a bucket match a local folder (push) or a
// local folder match the objects (pull), transferring only what differs.
//
// Layout: workspace NAME under storage prefix P lives at `P/NAME/<relative path>` (no leading
// slash; P may be empty). Its manifest (name, description, type, updated) is the object
// `P/.cloudyknight/manifests/NAME.json`, outside the workspace's own keys so that any S3 tool
// syncing `P/NAME/` sees exactly the source files.
//
// What "differs" means: sizes first; equal sizes are compared by MD5 against the object's ETag
// (a plain PUT's ETag is the MD5 of its bytes; a multipart ETag "<md5 of part md5s>-N" is
// recomputed from the local file for the part sizes common tools use). A local index file
// remembers (size, mtime, md5, etag) per path, so an unchanged file is never read again.
//
// Safety: a failed or partial listing fails the whole call before anything is transferred or
// deleted; deletions (delete_extra) run only after every transfer succeeded; downloads are
// written to a temporary file beside the target and renamed into place, so a reader never sees
// half a file; object keys that would escape the folder (`..`, absolute, empty segments) are
// refused and reported, never written.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "storage/ignore.h"
#include "storage/s3/client.h"

namespace ck::sync {

/// `P/NAME/` (always ends in '/'; P's own leading/trailing slashes are ignored).
std::string workspace_prefix(std::string_view prefix, std::string_view name);
/// `P/.cloudyknight/manifests/NAME.json`.
std::string manifest_key(std::string_view prefix, std::string_view name);
/// `P/` or "" (the prefix under which workspaces are listed).
std::string root_prefix(std::string_view prefix);

/// One workspace in a bucket: objects are `key_prefix + relative path`.
struct Location {
  s3::Client* client = nullptr;
  std::string bucket;
  std::string key_prefix;  // from workspace_prefix()
};

enum class Op { upload, download, delete_remote, delete_local };
std::string_view op_name(Op op);  // "upload", "download", "delete", "delete"

struct Action {
  Op op;
  std::string path;  // relative, '/'-separated
  std::uint64_t size = 0;
  std::string reason;  // "new", "changed", "removed"
};

struct Progress {
  std::size_t files_done = 0, files_total = 0;
  std::uint64_t bytes_done = 0, bytes_total = 0;
};

struct Options {
  int concurrency = 64;  // transfers in flight
  bool dry_run = false;  // plan only: Report::actions lists what would be done
  /// push: delete objects that have no local source file; pull: delete local files (among those
  /// `ignore` lets through) that have no object.
  bool delete_extra = false;
  IgnoreOptions ignore;  // which local files count (push uploads only these)
  std::uint64_t multipart_threshold = 8ull << 20;
  std::uint64_t part_size = 8ull << 20;
  /// The index file ("" = none). Created on first use; a corrupt one is ignored and rewritten.
  std::filesystem::path index;
  /// pull: the objects under key_prefix, already listed by the caller (the daemon lists the
  /// whole bucket prefix once per pass); null: pull lists them itself.
  const std::vector<s3::ObjectInfo>* listing = nullptr;
  /// Called after each finished action and on progress (from worker threads, one at a time).
  std::function<void(const Action&)> on_action;
  std::function<void(const Progress&)> on_progress;
  /// push: first abort the multipart uploads an earlier run left unfinished under the prefix
  /// (abort_stale_uploads() with the index and 1 h).
  bool abort_stale_uploads = true;
};

struct Report {
  std::vector<Action> actions;  // done (with dry_run: planned), in path order
  std::size_t unchanged = 0;
  std::uint64_t bytes = 0;  // transferred
  std::vector<std::string> warnings;  // unreadable folders, refused keys
  std::size_t aborted_uploads = 0;    // push: unfinished multipart uploads of earlier runs aborted
  std::chrono::milliseconds elapsed{0};
};

/// What abort_stale_uploads() aborted (dry run: would abort).
struct UploadsCleanup {
  struct Upload {
    std::string key, upload_id, why;
  };
  std::vector<Upload> aborted;
  std::vector<std::string> warnings;
  bool listed = false;  // the server answered ListMultipartUploads
};

/// Multipart hygiene: aborts the unfinished multipart uploads under where.key_prefix that are
/// stale: recorded in `index` (started by a push of this folder that never ended: killed
/// mid-upload) or initiated more than `older_than` ago, or with `all` every one listed. A
/// server that refuses ListMultipartUploads (s3rver, some gateways): the recorded ones only. An
/// upload that is young and not recorded is left alone (another client may be sending it).
Result<UploadsCleanup> abort_stale_uploads(const Location& where, const std::filesystem::path& index,
                                           std::chrono::seconds older_than, bool all, bool dry_run);

/// Local folder → bucket. Fails if the folder or the listing cannot be read, or if any upload
/// failed after retries (the others still complete; nothing is deleted then).
Result<Report> push(const Location& where, const std::filesystem::path& dir, const Options& opts);

/// Bucket → local folder (created if missing). Fails like push.
Result<Report> pull(const Location& where, const std::filesystem::path& dir, const Options& opts);

/// Writes workspace NAME's manifest at manifest_key(): name, description, type and icon as
/// detected in `dir`, the time, and `files` and `bytes` as uploaded.
Result<void> write_manifest(s3::Client& client, const std::string& bucket, std::string_view prefix,
                            const std::string& name, const std::filesystem::path& dir,
                            std::size_t files, std::uint64_t bytes);

/// The local index file for (endpoint, bucket, key prefix, folder) under the user's cache
/// ($XDG_CACHE_HOME or ~/.cache)/cloudyknight/sync/.
std::filesystem::path default_index_path(std::string_view endpoint, std::string_view bucket,
                                         std::string_view key_prefix,
                                         const std::filesystem::path& dir);

/// Hex MD5 of bytes.
std::string md5_hex(std::string_view data);
/// Hex MD5 of a file, and the multipart ETag ("<hex>-N") it gets when uploaded in parts of
/// `part_size`.
Result<std::string> file_md5(const std::filesystem::path& file);
Result<std::string> file_multipart_etag(const std::filesystem::path& file, std::uint64_t part_size);

/// True if `rel` is a safe relative path to write under a folder: non-empty, no leading '/',
/// no "", "." or ".." segment, no NUL or backslash.
bool safe_relative_path(std::string_view rel);

}  // namespace ck::sync
