#pragma once
// Watches a dir storage root with inotify and reports, in debounced batches, which workspaces
// (top-level folders) and which files inside them changed. tree_signature() is the polling
// fallback for filesystems without inotify and for a watcher that ran out of watches.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "http/asio.h"

namespace ck {

/// What changed under the storage root during one debounce window.
struct WatchBatch {
  /// Top-level folders (workspaces) that were created, removed, renamed, or had anything
  /// change inside.
  std::set<std::string> workspaces;
  /// Per workspace, the changed paths relative to the workspace folder ("src/app.js"), at most
  /// 256 per workspace; when more changed, the workspace's entry is removed from `files` and
  /// `all_files` gets the name. Folders count as paths too (a created or removed "src/lib").
  std::map<std::string, std::set<std::string>> files;
  std::set<std::string> all_files;
  /// The kernel queue overflowed (IN_Q_OVERFLOW) or watches had to be rebuilt: the caller must
  /// rescan everything.
  bool rescan = false;

  bool empty() const { return workspaces.empty() && all_files.empty() && !rescan; }
};

struct WatcherOptions {
  std::chrono::milliseconds debounce{300};
  /// Folder names never watched nor reported, at any depth (dependency and VCS folders).
  std::vector<std::string> skip = {"node_modules", ".git",   "__pycache__", ".venv",
                                   "venv",         ".cache", ".next"};
  /// 0 = unlimited (the kernel's fs.inotify.max_user_watches applies). Reaching it is handled
  /// exactly like the kernel's ENOSPC: the watcher goes degraded().
  std::size_t max_watches = 0;
  /// Report plain files at the root too (as their own name in `workspaces`): for watching one
  /// workspace folder (`workspace upload --watch`) rather than a storage root.
  bool root_files = false;
};

/// Watches `root` and every folder below it (minus skipped ones) through one inotify fd.
/// Owned by the daemon's storage wiring; runs on the io_context passed in (single-threaded, not
/// thread-safe). The callback runs on that io_context once per debounce window (a fixed window
/// opened by the first event, so latency stays bounded under continuous writes). Never throws:
/// folders that vanish while being walked are normal.
class DirWatcher {
 public:
  DirWatcher(net::io_context& io, std::filesystem::path root, WatcherOptions opts,
             std::function<void(WatchBatch)> on_change);
  ~DirWatcher();
  DirWatcher(const DirWatcher&) = delete;
  DirWatcher& operator=(const DirWatcher&) = delete;

  /// Starts watching root and, recursively, every folder below it (minus skipped ones). Fails
  /// when root is not a folder or inotify is unavailable (the caller then polls with
  /// tree_signature); succeeds but reports degraded() when the watch limit stopped it from
  /// watching everything (a warning says which limit and how to raise it). Call once.
  Result<void> start();
  /// True when some folders are not watched (watch limit reached, or reading inotify failed):
  /// the caller should poll with tree_signature meanwhile. Cleared when a rebuild after an
  /// overflow manages to watch everything again.
  bool degraded() const;
  /// How many folders are watched now.
  std::size_t watch_count() const;
  /// Closes the inotify fd and cancels the debounce timer. Idempotent; the callback is never
  /// called after stop(), even for events already read.
  void stop();

 private:
  class Impl;
  // Shared with the reading coroutine and the timer handler, which may resume after the
  // watcher is gone (they then see it stopped and return).
  std::shared_ptr<Impl> impl_;
};

/// A cheap fingerprint of a folder tree for polling (filesystems without inotify, or a degraded
/// watcher): hashes relative path, type, size and mtime (ns) of every entry (folders: path
/// only), not following symlinks and skipping the skip-list folders at any depth; stops after
/// max_entries entries (then includes that fact). Two calls give the same value iff nothing
/// observable changed. Blocking: call it from a worker or the monitor's scan.
std::uint64_t tree_signature(const std::filesystem::path& dir, const std::vector<std::string>& skip,
                             std::size_t max_entries = 20000);

}  // namespace ck
