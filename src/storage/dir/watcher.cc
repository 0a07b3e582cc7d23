#include "storage/dir/watcher.h"

// Design: one inotify fd, one watch per folder (inotify is not recursive), a map wd -> folder
// path relative to the root ("" = root, "site/src"). A folder that appears (mkdir, mv in,
// cp -r, git clone) is watched right away and then listed, so whatever was created inside it
// before its watch existed is reported too. A folder that leaves (rm, mv out or within the
// tree) loses its watches (a move within the tree is re-watched under its new path by the
// MOVED_TO that follows). After IN_Q_OVERFLOW events were lost, so the tree is walked again,
// the maps rebuilt, and the batch says rescan. The walks are synchronous on the io_context:
// they touch folders only, never file contents, and skip dependency folders.

#include <fmt/format.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/redirect_error.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "core/hash.h"
#include "core/log.h"

namespace ck {
namespace fs = std::filesystem;

namespace {

constexpr std::size_t kMaxFilesPerWorkspace = 256;
constexpr std::size_t kReadBuffer = std::size_t{64} * 1024;
// IN_MODIFY catches editors that write without closing; IN_ATTRIB catches touch and chmod.
// IN_EXCL_UNLINK: no events for files already unlinked but still open.
constexpr std::uint32_t kMask = IN_CREATE | IN_DELETE | IN_CLOSE_WRITE | IN_MODIFY | IN_MOVED_FROM |
                                IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF |
                                IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK;

std::string join(const std::string& dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  std::string out;
  out.reserve(dir.size() + 1 + name.size());
  out += dir;
  out += '/';
  out += name;
  return out;
}

bool in(const std::vector<std::string>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::string read_proc_value(const char* path) {
  std::ifstream in(path);
  std::string v;
  if (!(in >> v)) return "?";
  return v;
}

}  // namespace

class DirWatcher::Impl : public std::enable_shared_from_this<DirWatcher::Impl> {
 public:
  Impl(net::io_context& io, fs::path root, WatcherOptions opts,
       std::function<void(WatchBatch)> on_change)
      : io_(io),
        root_(std::move(root)),
        opts_(std::move(opts)),
        on_change_(std::move(on_change)),
        desc_(io),
        timer_(io) {}

  Result<void> start();
  void stop();
  bool degraded() const { return degraded_; }
  std::size_t watch_count() const { return dir_wd_.size(); }

 private:
  enum class Added { ok, gone, limit };

  static net::awaitable<void> read_loop(std::shared_ptr<Impl> self);
  void handle(const char* data, std::size_t n);
  void handle_event(int wd, std::uint32_t mask, std::string_view name);
  Added watch_one(const std::string& rel);
  void add_tree(const std::string& rel, bool report);
  void remove_tree(const std::string& rel);
  void forget(int wd);
  void rebuild();
  void note(std::string_view rel);
  void open_window();
  void flush();
  void warn_limit(bool kernel);
  fs::path abs(const std::string& rel) const { return rel.empty() ? root_ : root_ / rel; }

  net::io_context& io_;
  fs::path root_;
  WatcherOptions opts_;
  std::function<void(WatchBatch)> on_change_;
  std::shared_ptr<spdlog::logger> log_ = log::get("storage");
  net::posix::stream_descriptor desc_;  // owns the inotify fd once start() assigned it
  net::steady_timer timer_;
  int fd_ = -1;
  bool started_ = false;
  bool stopped_ = false;
  bool degraded_ = false;
  bool warned_ = false;
  bool window_open_ = false;
  std::unordered_map<int, std::string> wd_dir_;
  std::map<std::string, int> dir_wd_;  // sorted, so a folder's subtree is one range
  // Symlinks at the root that point to folders: DirStorage lists them as workspaces, so their
  // appearing and going count although they are not watched inside.
  std::set<std::string> root_links_;
  WatchBatch batch_;
};

Result<void> DirWatcher::Impl::start() {
  if (started_ || stopped_) {
    return fail(Errc::internal, "the storage watcher was already started or stopped");
  }
  started_ = true;
  std::error_code ec;
  if (!fs::is_directory(root_, ec)) {
    return fail(Errc::not_found,
                fmt::format("cannot watch {}: it does not exist or is not a folder; create it or "
                            "pass --workspaces DIR",
                            root_.string()));
  }
  int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    if (e == EMFILE) {
      return fail(
          Errc::io,
          fmt::format("cannot watch {}: the inotify instance limit "
                      "(fs.inotify.max_user_instances = {}) is reached; raise it with "
                      "`sysctl fs.inotify.max_user_instances=1024`; polling meanwhile",
                      root_.string(), read_proc_value("/proc/sys/fs/inotify/max_user_instances")));
    }
    return fail(Errc::io, fmt::format("cannot watch {}: inotify is unavailable ({}); polling "
                                      "for changes instead",
                                      root_.string(), std::strerror(e)));
  }
  boost::system::error_code aec;
  desc_.assign(fd, aec);
  if (aec) {
    ::close(fd);
    return fail(Errc::io, fmt::format("cannot watch {}: {}; polling for changes instead",
                                      root_.string(), aec.message()));
  }
  fd_ = fd;
  add_tree("", false);
  if (!dir_wd_.contains("") && !degraded_) {
    stop();
    return fail(Errc::not_found, fmt::format("cannot watch {}: it vanished while being watched; "
                                             "create it or pass --workspaces DIR",
                                             root_.string()));
  }
  log_->debug("[root={}] watching {} folders{}", root_.string(), dir_wd_.size(),
              degraded_ ? " (not all: degraded, polling too)" : "");
  spawn(io_, read_loop(shared_from_this()), "storage: watch " + root_.string());
  return outcome::success();
}

void DirWatcher::Impl::stop() {
  if (stopped_) return;
  stopped_ = true;
  try {
    timer_.cancel();  // throws only if the reactor is broken; stop() runs in the destructor
  } catch (const std::exception& e) {
    log_->error("[root={}] cannot cancel the debounce timer: {}", root_.string(), e.what());
  }
  if (fd_ >= 0) {
    boost::system::error_code ec;
    desc_.close(ec);  // closes the fd and cancels the pending read
    fd_ = -1;
  }
  wd_dir_.clear();
  dir_wd_.clear();
  root_links_.clear();
  batch_ = WatchBatch{};
  window_open_ = false;
}

net::awaitable<void> DirWatcher::Impl::read_loop(std::shared_ptr<Impl> self) {
  std::vector<char> buf(kReadBuffer);
  while (!self->stopped_) {
    boost::system::error_code ec;
    std::size_t n = co_await self->desc_.async_read_some(
        net::buffer(buf), net::redirect_error(net::use_awaitable, ec));
    if (self->stopped_) co_return;
    if (ec) {
      self->degraded_ = true;
      self->log_->error(
          "[root={}] reading inotify events failed: {}; changes are no longer watched and the "
          "daemon polls instead; restart it to watch again",
          self->root_.string(), ec.message());
      co_return;
    }
    self->handle(buf.data(), n);
  }
}

void DirWatcher::Impl::handle(const char* data, std::size_t n) {
  bool overflow = false;
  std::size_t off = 0;
  while (off + sizeof(inotify_event) <= n) {
    inotify_event ev;
    std::memcpy(&ev, data + off, sizeof ev);
    const char* name_at = data + off + sizeof(inotify_event);
    off += sizeof(inotify_event) + ev.len;
    if (off > n) break;  // never happens: the kernel returns whole events
    std::string_view name(name_at, ::strnlen(name_at, ev.len));
    if (ev.mask & IN_Q_OVERFLOW) {
      overflow = true;
      continue;
    }
    handle_event(ev.wd, ev.mask, name);
  }
  if (overflow) {
    log_->warn(
        "[root={}] the inotify event queue overflowed and changes were lost: watching everything "
        "again and asking for a full rescan. If this repeats, raise `sysctl "
        "fs.inotify.max_queued_events` (now {})",
        root_.string(), read_proc_value("/proc/sys/fs/inotify/max_queued_events"));
    rebuild();
  }
  if (!batch_.empty()) open_window();
}

void DirWatcher::Impl::handle_event(int wd, std::uint32_t mask, std::string_view name) {
  if (mask & IN_IGNORED) {  // the watch is gone (folder deleted, or we removed it)
    forget(wd);
    return;
  }
  auto it = wd_dir_.find(wd);
  if (it == wd_dir_.end()) return;     // a late event of a watch we already removed
  const std::string dir = it->second;  // a copy: the maps change below
  if (name.empty()) {
    if (dir.empty() && (mask & (IN_DELETE_SELF | IN_MOVE_SELF))) {
      log_->warn(
          "[root={}] the storage root was removed or moved away; recreate it and restart "
          "the daemon to watch it again",
          root_.string());
      batch_.rescan = true;
    }
    return;  // events on a folder itself are reported through its parent
  }
  const bool is_dir = (mask & IN_ISDIR) != 0;
  if (is_dir && in(opts_.skip, name)) return;
  const std::string rel = join(dir, name);
  const bool appeared = (mask & (IN_CREATE | IN_MOVED_TO)) != 0;
  const bool left = (mask & (IN_DELETE | IN_MOVED_FROM)) != 0;
  if (dir.empty() && !is_dir && !opts_.root_files) {
    // A plain file at the root is no workspace; a symlink to a folder is (DirStorage follows it).
    if (appeared) {
      std::error_code ec;
      if (!fs::is_directory(abs(rel), ec)) return;
      root_links_.insert(rel);
    } else if (left) {
      if (root_links_.erase(rel) == 0) return;
    } else if (!root_links_.contains(rel)) {
      return;
    }
    note(rel);
    return;
  }
  note(rel);
  if (is_dir && left) remove_tree(rel);
  if (is_dir && appeared) add_tree(rel, true);
}

DirWatcher::Impl::Added DirWatcher::Impl::watch_one(const std::string& rel) {
  if (opts_.max_watches != 0 && dir_wd_.size() >= opts_.max_watches && !dir_wd_.contains(rel)) {
    warn_limit(false);
    return Added::limit;
  }
  int wd = ::inotify_add_watch(fd_, abs(rel).c_str(), kMask);
  if (wd < 0) {
    int e = errno;
    if (e == ENOSPC) {
      warn_limit(true);
      return Added::limit;
    }
    if (e != ENOENT && e != ENOTDIR) {  // gone meanwhile is normal; anything else is odd
      log_->debug("[root={}] cannot watch {}: {}", root_.string(), rel, std::strerror(e));
    }
    return Added::gone;
  }
  // The same folder reached under a new path (moved while we missed it) keeps its wd.
  if (auto old = wd_dir_.find(wd); old != wd_dir_.end() && old->second != rel) {
    dir_wd_.erase(old->second);
  }
  // Another folder once watched under this path has gone without us noticing.
  if (auto old = dir_wd_.find(rel); old != dir_wd_.end() && old->second != wd) {
    ::inotify_rm_watch(fd_, old->second);
    wd_dir_.erase(old->second);
  }
  wd_dir_[wd] = rel;
  dir_wd_[rel] = wd;
  return Added::ok;
}

void DirWatcher::Impl::add_tree(const std::string& rel, bool report) {
  std::vector<std::string> pending{rel};
  bool limit = false;
  while (!pending.empty()) {
    std::string dir = std::move(pending.back());
    pending.pop_back();
    if (!limit) {
      Added a = watch_one(dir);
      if (a == Added::gone) continue;
      limit = a == Added::limit;
    }
    if (limit && !report) return;  // nothing more can be watched and nothing is to be reported
    std::error_code ec;
    fs::directory_iterator it(abs(dir), ec);
    for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
      std::string name = it->path().filename().string();
      std::error_code sec;
      fs::file_status st = it->symlink_status(sec);
      if (sec) continue;  // vanished between readdir and lstat
      const bool is_dir = fs::is_directory(st);
      if (is_dir && in(opts_.skip, name)) continue;
      std::string child = join(dir, name);
      if (dir.empty() && !is_dir) {
        std::error_code lec;
        if (fs::is_symlink(st) && fs::is_directory(it->path(), lec)) {
          root_links_.insert(child);
          if (report) note(child);
        }
        continue;
      }
      if (report) note(child);
      if (is_dir) pending.push_back(std::move(child));
    }
  }
}

void DirWatcher::Impl::remove_tree(const std::string& rel) {
  auto drop = [this](std::map<std::string, int>::iterator it) {
    ::inotify_rm_watch(fd_, it->second);  // EINVAL when the kernel removed it already: fine
    wd_dir_.erase(it->second);
    return dir_wd_.erase(it);
  };
  if (auto it = dir_wd_.find(rel); it != dir_wd_.end()) drop(it);
  const std::string prefix = rel + "/";
  for (auto it = dir_wd_.lower_bound(prefix);
       it != dir_wd_.end() && it->first.starts_with(prefix);) {
    it = drop(it);
  }
}

void DirWatcher::Impl::forget(int wd) {
  auto it = wd_dir_.find(wd);
  if (it == wd_dir_.end()) return;
  if (auto p = dir_wd_.find(it->second); p != dir_wd_.end() && p->second == wd) dir_wd_.erase(p);
  wd_dir_.erase(it);
}

void DirWatcher::Impl::rebuild() {
  // Adding a watch on a folder already watched answers its existing wd, so walking again and
  // dropping the wds not met keeps the kernel's watches and our maps the same.
  auto old = std::move(wd_dir_);
  wd_dir_.clear();
  dir_wd_.clear();
  root_links_.clear();
  degraded_ = false;
  add_tree("", false);
  for (const auto& [wd, dir] : old) {
    if (!wd_dir_.contains(wd)) ::inotify_rm_watch(fd_, wd);
  }
  batch_.rescan = true;
}

void DirWatcher::Impl::note(std::string_view rel) {
  auto slash = rel.find('/');
  std::string ws(rel.substr(0, slash));
  if (slash == std::string_view::npos) {
    batch_.workspaces.insert(std::move(ws));
    return;
  }
  batch_.workspaces.insert(ws);
  if (batch_.all_files.contains(ws)) return;
  auto& files = batch_.files[ws];
  files.emplace(rel.substr(slash + 1));
  if (files.size() > kMaxFilesPerWorkspace) {
    batch_.files.erase(ws);
    batch_.all_files.insert(std::move(ws));
  }
}

void DirWatcher::Impl::open_window() {
  if (window_open_) return;
  window_open_ = true;
  timer_.expires_after(opts_.debounce);
  timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec || self->stopped_) return;
    self->flush();
  });
}

void DirWatcher::Impl::flush() {
  window_open_ = false;
  WatchBatch b = std::exchange(batch_, WatchBatch{});
  if (b.empty()) return;
  try {
    on_change_(std::move(b));
  } catch (const std::exception& e) {
    log_->error("[root={}] the storage change handler failed: {}", root_.string(), e.what());
  } catch (...) {
    log_->error("[root={}] the storage change handler failed with an unknown exception",
                root_.string());
  }
}

void DirWatcher::Impl::warn_limit(bool kernel) {
  degraded_ = true;
  if (warned_) return;
  warned_ = true;
  if (kernel) {
    log_->warn(
        "[root={}] watching only {} folders: the inotify watch limit "
        "(fs.inotify.max_user_watches = {}) is reached. Raise it with `sysctl "
        "fs.inotify.max_user_watches=524288` (and a file in /etc/sysctl.d/ to keep it); the "
        "daemon polls for changes meanwhile",
        root_.string(), dir_wd_.size(), read_proc_value("/proc/sys/fs/inotify/max_user_watches"));
  } else {
    log_->warn(
        "[root={}] watching only {} folders: the watcher's own limit (max_watches = {}) is "
        "reached. Raise or remove that limit; the daemon polls for changes meanwhile",
        root_.string(), dir_wd_.size(), opts_.max_watches);
  }
}

DirWatcher::DirWatcher(net::io_context& io, fs::path root, WatcherOptions opts,
                       std::function<void(WatchBatch)> on_change)
    : impl_(std::make_shared<Impl>(io, std::move(root), std::move(opts), std::move(on_change))) {}

DirWatcher::~DirWatcher() { stop(); }

Result<void> DirWatcher::start() { return impl_->start(); }
bool DirWatcher::degraded() const { return impl_->degraded(); }
std::size_t DirWatcher::watch_count() const { return impl_->watch_count(); }
void DirWatcher::stop() { impl_->stop(); }

std::uint64_t tree_signature(const fs::path& dir, const std::vector<std::string>& skip,
                             std::size_t max_entries) {
  std::uint64_t h = fnv1a64("ck-tree-signature-1");
  auto mix = [&h](std::string_view s) {
    h = fnv1a64(s, h);
    h = fnv1a64(std::string_view("\0", 1), h);  // so "ab"+"c" differs from "a"+"bc"
  };
  auto mix_num = [&h](std::uint64_t v) {
    char b[sizeof v];
    std::memcpy(b, &v, sizeof v);
    h = fnv1a64(std::string_view(b, sizeof b), h);
  };
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    mix("missing");
    return h;
  }
  std::size_t count = 0;
  std::vector<std::string> pending{""};
  std::vector<std::string> names;
  std::vector<std::string> subdirs;
  while (!pending.empty()) {
    std::string rel = std::move(pending.back());
    pending.pop_back();
    names.clear();
    subdirs.clear();
    std::error_code ec;
    fs::directory_iterator it(rel.empty() ? dir : dir / rel, ec);
    for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
      names.push_back(it->path().filename().string());
    }
    std::sort(names.begin(), names.end());  // readdir order is not stable across changes
    for (const auto& name : names) {
      std::string child = join(rel, name);
      if (::lstat((dir / child).c_str(), &st) != 0) continue;  // vanished meanwhile
      const bool is_dir = S_ISDIR(st.st_mode);
      if (is_dir && in(skip, name)) continue;
      if (count == max_entries) {
        mix("truncated");
        return h;
      }
      ++count;
      mix(child);
      if (is_dir) {
        // A folder's own mtime moves when a skipped folder appears in it: leave it out.
        mix("d");
        subdirs.push_back(std::move(child));
        continue;
      }
      mix(S_ISREG(st.st_mode) ? "f" : S_ISLNK(st.st_mode) ? "l" : "o");
      mix_num(static_cast<std::uint64_t>(st.st_size));
      mix_num(static_cast<std::uint64_t>(st.st_mtim.tv_sec) * 1000000000ull +
              static_cast<std::uint64_t>(st.st_mtim.tv_nsec));
      mix_num(static_cast<std::uint64_t>(st.st_ino));  // a save by rename within one tick
    }
    pending.insert(pending.end(), subdirs.rbegin(), subdirs.rend());  // depth-first, in name order
  }
  return h;
}

}  // namespace ck
