#pragma once
// S3 storage for `serve`: a local mirror of every workspace under a bucket prefix, which the
// daemon then serves exactly like dir storage (DirStorage + DirWatcher on the mirror root, so
// inotify on the mirror drives the monitor, and containers mount it read-only).
//
// Design: each pass makes ONE listing of the whole prefix (ListObjectsV2 fails as a whole, never
// partially) and groups the keys by their first segment, the workspace name. Only workspaces
// whose (key, size, ETag) list changed since their last successful pull are pulled again
// (sync::pull with that part of the listing, deleting local files that have no object). A
// workspace seen for the first time is pulled into a staging folder and renamed into the mirror
// once complete, so the monitor never starts half a workspace. A workspace whose keys are all
// gone is removed from the mirror. A failed listing changes nothing locally; a failed pull
// leaves that workspace's mirror as it was (pull writes each file atomically) and is retried on
// the next pass.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "storage/files.h"
#include "storage/s3/client.h"

namespace ck {

struct S3MirrorOptions {
  std::string bucket;
  std::string prefix;  // workspaces live at PREFIX/NAME/...; may be empty
  /// The daemon's data folder: mirrors go to DATA/mirror/NAME, sync indexes to
  /// DATA/mirror-index/NAME.json, first downloads to DATA/mirror-staging/NAME.
  std::filesystem::path data;
  std::chrono::milliseconds interval{5000};  // between passes of the background thread
  int concurrency = 16;                      // downloads in flight per workspace
};

/// What one pass did.
struct MirrorPass {
  std::size_t workspaces = 0;  // valid workspaces in the listing
  std::size_t pulled = 0;      // workspaces whose objects changed and were pulled
  std::size_t removed = 0;     // workspaces removed from the mirror (their keys are gone)
  std::size_t failed = 0;      // workspaces whose pull failed (retried next pass)
  std::size_t files = 0;       // files downloaded or deleted
};

/// Keeps DATA/mirror in step with the bucket. Owned by the daemon. Passes run on its own
/// thread (the S3 client is blocking libcurl) every `interval` and at once after poke();
/// run_pass() runs one on the calling thread (the daemon's first, blocking pass, and tests).
/// Passes never overlap. poke() and notify() are thread-safe and never block.
class S3Mirror {
 public:
  /// `client` must outlive the mirror.
  S3Mirror(s3::Client& client, S3MirrorOptions opts);
  ~S3Mirror();  // stop()s
  S3Mirror(const S3Mirror&) = delete;
  S3Mirror& operator=(const S3Mirror&) = delete;

  /// DATA/mirror: one folder per workspace.
  std::filesystem::path root() const;
  /// "s3://bucket/prefix".
  std::string url() const;

  /// One pass now, on the calling thread. Fails only when the listing failed (then nothing
  /// local changed); pull failures are counted in MirrorPass::failed and logged.
  Result<MirrorPass> run_pass();

  /// Starts the background thread. Call once.
  void start();
  /// Asks for a pass as soon as possible (coalesced with one already asked for).
  void poke();
  /// Asks for a pass and calls `done` (on the mirror's thread, or at once when stopped) with
  /// the result of the first pass that starts after this call. Needs start().
  void pass_now(std::function<void(Result<MirrorPass>)> done);
  /// Uploads `folder` as the new workspace `name` (its source and manifest), then runs a pass
  /// so the mirror has it. Runs on the mirror's thread between passes; `done` is called there
  /// (or at once when the mirror is stopping). already_exists when the bucket has objects of
  /// that name.
  void publish(std::string name, std::filesystem::path folder,
               std::function<void(Result<void>)> done);
  /// Deletes workspace `name`'s objects and manifest from the bucket, then runs a pass (which
  /// takes it out of the mirror). `done` gets the number of objects deleted.
  void remove(std::string name, std::function<void(Result<std::size_t>)> done);
  /// The files API's write-through (issue 16): writes `body` to `rel` (a checked relative path)
  /// in workspace `name`'s mirror with files::write(), whose commit step PUTs the object
  /// PREFIX/NAME/rel first, so the bucket has the change before the mirror and the next pass
  /// finds them equal (nothing is lost or undone). Runs on the mirror's thread between passes;
  /// `done` is called there (or at once when stopping) with the result and, for
  /// precondition_failed, the file's current ETag.
  void write_file(std::string name, std::string rel, std::string body, files::Conditions when,
                  std::function<void(Result<files::Written>, std::string current_etag)> done);
  /// The same for a delete: DeleteObject of PREFIX/NAME/rel (nothing for an empty folder), then
  /// files::remove() in the mirror.
  void delete_file(std::string name, std::string rel, files::Conditions when,
                   std::function<void(Result<void>, std::string current_etag)> done);
  /// A bucket notification arrived (keys as "bucket/key", possibly none for a test event):
  /// logs them at debug level and pokes.
  void notify(const std::vector<std::string>& keys);
  /// Stops the thread after the pass in progress (which stops between workspaces). Idempotent.
  void stop();

  /// The last listing's error, "" once a listing succeeded.
  std::string last_error() const;

  /// Where a workspace's mirror stands, for the API's status.
  struct State {
    std::string error;                // the listing's error, else this workspace's pull error
    std::int64_t last_pass_ms = 0;    // when the last pass that listed the bucket ended (0: none)
  };
  State state(const std::string& name) const;

 private:
  void loop();
  /// Queues a job for the mirror's thread; false (job dropped) when stopping.
  bool queue_job(std::function<void(bool run)> job);
  void remove_workspace(const std::string& name);

  s3::Client& client_;
  S3MirrorOptions opts_;
  std::mutex pass_mu_;                           // one pass at a time; guards the fields below it
  std::map<std::string, std::uint64_t> pulled_;  // name -> fingerprint of its last good pull
  std::map<std::string, std::string> pull_errors_;  // name -> last logged pull error
  std::set<std::string> warned_names_;              // invalid names already warned about

  mutable std::mutex mu_;  // guards the fields below it
  std::condition_variable cv_;
  bool poked_ = false;
  std::vector<std::function<void(Result<MirrorPass>)>> waiting_;  // for the next pass
  // publish/remove, run before the next pass; called with false (to answer "stopping") when the
  // mirror stops first.
  std::vector<std::function<void(bool run)>> jobs_;
  bool stopping_ = false;
  std::string last_error_;
  std::map<std::string, std::string> published_errors_;  // pull_errors_ as of the last pass
  std::int64_t last_pass_ms_ = 0;
  std::thread thread_;
};

}  // namespace ck
