// restore: choose a snapshot, stage and verify every blob it needs, then change the target.
// Nothing in the target changes before every blob was downloaded and its id recomputed.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "backup/backup.h"
#include "backup/mirror_mode.h"
#include "backup/repo.h"
#include "core/names.h"
#include "core/units.h"
#include "storage/sync.h"

namespace ck::backup {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

struct PlannedFile {
  std::string path;
  std::uint64_t size = 0;
  std::uint32_t mode = 0644;
  std::int64_t mtime_ns = 0;
  std::string blob;  // incremental: the blob id ("" for mirror destinations)
  fs::path staged;   // where its verified content waits
};

// Removes the staging folder when the restore ends, whatever happens.
struct StageDir {
  fs::path path;
  ~StageDir() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

Result<fs::path> make_stage(const fs::path& cache) {
  std::error_code ec;
  fs::create_directories(cache, ec);
  std::string tmpl = (cache / "restore-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return fail(Errc::io, fmt::format("cannot create a staging folder under {}: {}", cache.string(),
                                      std::strerror(errno)));
  }
  return fs::path(tmpl);
}

std::optional<std::time_t> id_time(std::string_view id) {
  if (!valid_snapshot_id(id)) return std::nullopt;
  std::string t = fmt::format("{}-{}-{}T{}:{}:{}Z", id.substr(0, 4), id.substr(4, 2),
                              id.substr(6, 2), id.substr(9, 2), id.substr(11, 2), id.substr(13, 2));
  return parse_rfc3339(t);
}

// Every path relative and inside the target, none twice, none below another file.
Result<void> check_paths(const std::vector<SnapshotFile>& files, const std::string& where) {
  std::set<std::string_view> paths;
  for (const auto& f : files) {
    if (!sync::safe_relative_path(f.path) || !paths.insert(f.path).second) {
      return fail(Errc::invalid_argument,
                  fmt::format("{} holds the path '{}', which is not a safe relative path (or "
                              "appears twice): refusing to restore it (the snapshot was tampered "
                              "with or damaged; nothing was written)",
                              where, f.path));
    }
  }
  for (const auto& p : paths) {
    for (auto slash = p.find('/'); slash != std::string_view::npos;
         slash = p.find('/', slash + 1)) {
      if (paths.contains(p.substr(0, slash))) {
        return fail(Errc::invalid_argument,
                    fmt::format("{} holds both the file '{}' and '{}' below it: refusing to "
                                "restore it (nothing was written)",
                                where, p.substr(0, slash), p));
      }
    }
  }
  return outcome::success();
}

bool same_content(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  if (fs::file_size(a, ec) != fs::file_size(b, ec) || ec) return false;
  FILE* fa = std::fopen(a.c_str(), "rb");
  FILE* fb = std::fopen(b.c_str(), "rb");
  bool same = fa != nullptr && fb != nullptr;
  std::vector<char> ba(1 << 16), bb(1 << 16);
  while (same) {
    std::size_t na = std::fread(ba.data(), 1, ba.size(), fa);
    std::size_t nb = std::fread(bb.data(), 1, bb.size(), fb);
    if (na != nb || std::memcmp(ba.data(), bb.data(), na) != 0) same = false;
    if (na == 0) break;
  }
  if (fa) std::fclose(fa);
  if (fb) std::fclose(fb);
  return same;
}

// Fails if any existing folder between target and rel's file is a symlink (a restore never
// writes through one).
Result<void> check_no_symlink(const fs::path& target, const std::string& rel) {
  fs::path at = target;
  std::string_view rest = rel;
  for (auto slash = rest.find('/'); slash != std::string_view::npos; slash = rest.find('/')) {
    at /= std::string(rest.substr(0, slash));
    rest.remove_prefix(slash + 1);
    struct stat st {};
    if (::lstat(at.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
      return fail(Errc::forbidden,
                  fmt::format("{} is a symbolic link: refusing to restore {} through it (remove "
                              "the link, then restore again)",
                              at.string(), rel));
    }
  }
  return outcome::success();
}

// Verified blob contents kept in memory (small blobs from packs, up to a budget) so a restore of
// many small files does not create each one twice; the rest waits in the staging folder.
struct MemoryStage {
  static constexpr std::uint64_t kBudget = 256ull << 20;
  std::mutex mu;
  std::uint64_t used = 0;
  std::unordered_map<std::string, std::string> blobs;

  bool keep(const std::string& id, std::string&& data) {
    std::lock_guard lock(mu);
    if (used + data.size() > kBudget) return false;
    used += data.size();
    blobs.emplace(id, std::move(data));
    return true;
  }
  const std::string* find(const std::string& id) const {
    auto it = blobs.find(id);
    return it == blobs.end() ? nullptr : &it->second;
  }
};

// Downloads every blob the plan needs into `mem` or `stage` (named by blob id), verifying each.
Result<void> stage_blobs(Repo& repo, const std::vector<PlannedFile>& plan, const fs::path& stage,
                         MemoryStage& mem, const RestoreOptions& opts,
                         const std::string& workspace) {
  std::map<std::string, std::vector<std::pair<std::string, BlobLocation>>> packs;
  std::vector<std::pair<std::string, BlobLocation>> standalone;
  std::set<std::string> seen;
  for (const auto& f : plan) {
    if (!seen.insert(f.blob).second) continue;
    auto it = repo.blobs().find(f.blob);
    if (it == repo.blobs().end()) {
      return fail(Errc::not_found,
                  fmt::format("the snapshot needs blob {} (for {}), which destination {} does not "
                              "have: run `cloudyknight backup check`; nothing was restored",
                              f.blob, f.path, repo.dest().name));
    }
    if (it->second.pack.empty()) {
      standalone.emplace_back(f.blob, it->second);
    } else {
      packs[it->second.pack].emplace_back(f.blob, it->second);
    }
  }
  struct Job {
    std::string pack;
    std::vector<std::pair<std::string, BlobLocation>> blobs;
  };
  std::vector<Job> jobs;
  for (auto& [p, b] : packs) jobs.push_back(Job{p, std::move(b)});
  for (auto& s : standalone) jobs.push_back(Job{"", {s}});
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::optional<Error> first_error;
  Progress progress{repo.dest().name, workspace, "download", 0, jobs.size(), 0, 0};
  const Keys* keys = repo.keys();
  auto run_job = [&](const Job& job) -> Result<void> {
    const auto& bucket = repo.dest().bucket;
    auto tampered = [&](const std::string& id) {
      return fail(Errc::invalid_argument,
                  fmt::format("blob {} on destination {} does not match its id: the backup was "
                              "modified or damaged (run `cloudyknight backup check`); nothing was "
                              "restored",
                              id, repo.dest().name));
    };
    if (job.pack.empty()) {
      const auto& id = job.blobs[0].first;
      fs::path dl = stage / (id + ".dl");
      BOOST_OUTCOME_TRY(repo.client().get_to_file(bucket, repo.blob_key(id), dl));
      std::string got;
      if (keys != nullptr) {
        auto u = unseal_file(*keys, dl, stage / id, "blob " + id);
        if (!u) return tampered(id);
        got = u.value();
      } else {
        BOOST_OUTCOME_TRY(h, file_blob_id(nullptr, dl));
        got = h;
        std::error_code ec;
        fs::rename(dl, stage / id, ec);
      }
      std::error_code ec;
      fs::remove(dl, ec);
      if (got != id) return tampered(id);
      return outcome::success();
    }
    // One ranged GET of the span the needed blobs cover (bounded by the index: kMaxPackBytes).
    std::uint64_t begin = UINT64_MAX, end = 0;
    for (const auto& [id, loc] : job.blobs) {
      begin = std::min(begin, loc.offset);
      end = std::max(end, loc.offset + loc.length);
    }
    auto got = repo.client().get_object_range(bucket, repo.pack_key(job.pack), begin, end - begin);
    if (!got) {
      if (got.error().code == Errc::invalid_argument) return tampered(job.blobs.front().first);
      return got.error();
    }
    const std::string& data = got.value();
    for (const auto& [id, loc] : job.blobs) {
      auto plain =
          repo.unseal_if(std::string_view(data).substr(loc.offset - begin, loc.length), id);
      if (!plain || blob_id(keys, plain.value()) != id) return tampered(id);
      if (mem.keep(id, std::move(plain.value()))) continue;
      // The staging folder is private to this call: a plain write is enough.
      std::ofstream os(stage / id, std::ios::binary | std::ios::trunc);
      os.write(plain.value().data(), static_cast<std::streamsize>(plain.value().size()));
      if (!os.flush()) {
        return fail(Errc::io, fmt::format("cannot write {} in the staging folder: {} (is the "
                                          "cache's disk full?)",
                                          (stage / id).string(), std::strerror(errno)));
      }
    }
    return outcome::success();
  };
  auto worker = [&] {
    for (;;) {
      std::size_t i = next.fetch_add(1);
      if (i >= jobs.size() || failed.load()) return;
      if (is_cancelled(opts)) {
        std::lock_guard lock(mu);
        failed = true;
        if (!first_error) first_error = cancelled_error(repo.dest().name, workspace);
        return;
      }
      auto r = run_job(jobs[i]);
      std::lock_guard lock(mu);
      if (!r) {
        failed = true;
        if (!first_error) first_error = r.error();
        return;
      }
      progress.files_done++;
      report_progress(opts, progress);
    }
  };
  std::vector<std::thread> threads;
  int n = std::clamp(opts.concurrency, 1, 32);
  for (int i = 0; i < n; ++i) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  if (first_error) return *first_error;
  return outcome::success();
}

// Creates `file` (which must not exist) with `data`, or a copy of `source`'s content.
Result<void> write_new_file(const fs::path& file, const std::string* data, const fs::path& source) {
  auto io_error = [&](const fs::path& which) {
    return fail(Errc::io, fmt::format("cannot write {}: {} (is the disk full, or the folder not "
                                      "writable?)",
                                      which.string(), std::strerror(errno)));
  };
  int out = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (out < 0) return io_error(file);
  auto write_all = [&](const char* p, std::size_t n) {
    while (n > 0) {
      ssize_t w = ::write(out, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return false;
      p += w;
      n -= static_cast<std::size_t>(w);
    }
    return true;
  };
  bool ok = true;
  if (data != nullptr) {
    ok = write_all(data->data(), data->size());
  } else {
    int in = ::open(source.c_str(), O_RDONLY | O_CLOEXEC);
    ok = in >= 0;
    std::vector<char> buf(1 << 20);
    while (ok) {
      ssize_t r = ::read(in, buf.data(), buf.size());
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        ok = r == 0;
        break;
      }
      ok = write_all(buf.data(), static_cast<std::size_t>(r));
    }
    if (in >= 0) ::close(in);
  }
  if (::close(out) != 0) ok = false;
  if (!ok) {
    auto err = io_error(file);
    ::unlink(file.c_str());
    return err;
  }
  return outcome::success();
}

// Moves the verified content into the target and deletes what mirror mode removes.
Result<void> apply(const std::vector<PlannedFile>& writes, const std::vector<std::string>& removes,
                   const fs::path& target, const MemoryStage* mem, RestoreReport& report) {
  // Checked for every file before the first is written, so a refusal changes nothing.
  for (const auto& f : writes) {
    BOOST_OUTCOME_TRY(check_no_symlink(target, f.path));
  }
  // A staged file used once is moved into place (when on the same file system), else copied.
  std::map<fs::path, int> uses;
  for (const auto& f : writes) ++uses[f.staged];
  fs::path made;  // the last folder created
  for (const auto& f : writes) {
    fs::path dst = target / f.path;
    std::error_code ec;
    if (dst.parent_path() != made) {
      fs::create_directories(dst.parent_path(), ec);
      if (ec) {
        return fail(Errc::io, fmt::format("cannot create the folder {}: {}",
                                          dst.parent_path().string(), ec.message()));
      }
      made = dst.parent_path();
    }
    fs::path tmp = dst.parent_path() / (".ck-restore-" + dst.filename().string() + ".tmp");
    // Never through a link planted at the temporary name: removed first, then created with
    // O_EXCL|O_NOFOLLOW (or replaced by rename, which does not follow links either).
    ::unlink(tmp.c_str());
    bool moved = false;
    if (const std::string* data = mem != nullptr ? mem->find(f.blob) : nullptr) {
      BOOST_OUTCOME_TRY(write_new_file(tmp, data, {}));
      moved = true;
    } else if (--uses[f.staged] == 0) {
      fs::rename(f.staged, tmp, ec);
      moved = !ec;
      ec.clear();
    }
    if (!moved) {
      BOOST_OUTCOME_TRY(write_new_file(tmp, nullptr, f.staged));
    }
    if (ec) {
      return fail(Errc::io, fmt::format("cannot write {}: {}", tmp.string(), ec.message()));
    }
    // Permission bits only: a snapshot never makes a setuid, setgid or sticky file.
    ::chmod(tmp.c_str(), f.mode & 0777);
    timespec ts[2];
    ts[0].tv_sec = ts[1].tv_sec = static_cast<time_t>(f.mtime_ns / 1000000000);
    ts[0].tv_nsec = ts[1].tv_nsec = static_cast<long>(f.mtime_ns % 1000000000);
    if (f.mtime_ns > 0) ::utimensat(AT_FDCWD, tmp.c_str(), ts, 0);
    struct stat st {};
    if (::lstat(dst.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) fs::remove_all(dst, ec);
    fs::rename(tmp, dst, ec);
    if (ec) {
      fs::remove(tmp, ec);
      return fail(Errc::io, fmt::format("cannot write {}: {}", dst.string(), ec.message()));
    }
    report.bytes_written += f.size;
  }
  for (const auto& rel : removes) {
    std::error_code ec;
    fs::remove(target / rel, ec);
    // Folders left empty by the deletion go too (up to the target itself).
    for (fs::path dir = (target / rel).parent_path();
         dir != target && dir.string().size() > target.string().size(); dir = dir.parent_path()) {
      if (!fs::is_empty(dir, ec) || ec) break;
      fs::remove(dir, ec);
    }
  }
  return outcome::success();
}

// Plans a restore of `files` into the target: what to write, what stays, what to delete.
Result<void> plan_changes(std::vector<PlannedFile>& files, const RestoreOptions& opts,
                          const Keys* keys, std::vector<PlannedFile>& writes,
                          std::vector<std::string>& removes, RestoreReport& report) {
  std::set<std::string> wanted;
  for (auto& f : files) {
    wanted.insert(f.path);
    fs::path dst = opts.target / f.path;
    struct stat st {};
    bool same = false;
    if (::lstat(dst.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        static_cast<std::uint64_t>(st.st_size) == f.size) {
      if (!f.blob.empty()) {
        auto id = file_blob_id(keys, dst);
        same = id && id.value() == f.blob;
      } else {
        same = same_content(f.staged, dst);
      }
    }
    if (same) {
      report.unchanged++;
    } else {
      writes.push_back(f);
      report.changes.push_back(RestoreChange{RestoreChange::Op::write, f.path, f.size});
    }
  }
  std::error_code ec;
  if (opts.mode == RestoreMode::mirror && fs::is_directory(opts.target, ec)) {
    BOOST_OUTCOME_TRY(tree, list_source_files(opts.target, opts.ignore));
    for (const auto& f : tree.files) {
      if (!wanted.contains(f.path)) {
        removes.push_back(f.path);
        report.changes.push_back(RestoreChange{RestoreChange::Op::remove, f.path, f.size});
      }
    }
  }
  std::sort(report.changes.begin(), report.changes.end(),
            [](const RestoreChange& a, const RestoreChange& b) { return a.path < b.path; });
  return outcome::success();
}

Result<RestoreReport> restore_mirror_dest(const Destination& dest, const std::string& workspace,
                                          const RestoreOptions& opts) {
  auto started = Clock::now();
  if (!opts.snapshot.empty() || opts.point_in_time) {
    return fail(Errc::invalid_argument,
                fmt::format("backup destination {} is a mirror: mirror destinations keep only the "
                            "latest copy (drop --snapshot / --point-in-time, or restore from an "
                            "incremental destination)",
                            dest.name));
  }
  fs::path cache = opts.cache_dir.empty() ? default_cache_dir() : opts.cache_dir;
  BOOST_OUTCOME_TRY(stage_path, make_stage(cache));
  StageDir stage{stage_path};
  BOOST_OUTCOME_TRY(mirror_pull(dest, workspace, stage.path, opts));
  std::vector<PlannedFile> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(stage.path, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    PlannedFile f;
    f.path = fs::relative(it->path(), stage.path).generic_string();
    f.size = it->file_size();
    struct stat st {};
    ::stat(it->path().c_str(), &st);
    f.mode = st.st_mode & 0777;
    f.mtime_ns = std::int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    f.staged = it->path();
    files.push_back(std::move(f));
  }
  RestoreReport report;
  report.snapshot_id = "latest";
  std::vector<PlannedFile> writes;
  std::vector<std::string> removes;
  BOOST_OUTCOME_TRY(plan_changes(files, opts, nullptr, writes, removes, report));
  if (!opts.dry_run) {
    fs::create_directories(opts.target, ec);
    BOOST_OUTCOME_TRY(apply(writes, removes, opts.target, nullptr, report));
  }
  report.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  return report;
}

}  // namespace

Result<std::time_t> parse_point_in_time(std::string_view text) {
  std::tm tm{};
  std::string s(text);
  const char* end = nullptr;
  for (const char* fmt : {"%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"}) {
    tm = std::tm{};
    end = strptime(s.c_str(), fmt, &tm);
    if (end != nullptr && *end == '\0') break;
    end = nullptr;
  }
  if (end == nullptr) {
    return fail(Errc::invalid_argument,
                fmt::format("'{}' is not a point in time: write it as \"YYYY-MM-DD HH:MM:SS\" "
                            "(local time)",
                            text));
  }
  tm.tm_isdst = -1;
  std::time_t t = std::mktime(&tm);
  if (t == -1) {
    return fail(Errc::invalid_argument, fmt::format("'{}' is not a valid local time", text));
  }
  return t;
}

Result<RestoreReport> restore(const Destination& dest, const std::string& workspace,
                              const RestoreOptions& opts) {
  BOOST_OUTCOME_TRY(validate_workspace_name(workspace));
  if (opts.target.empty()) {
    return fail(Errc::invalid_argument, "restore needs a target folder");
  }
  if (dest.mode == DestinationMode::mirror) return restore_mirror_dest(dest, workspace, opts);
  auto started = Clock::now();
  BOOST_OUTCOME_TRY(repo, Repo::open(dest, opts, false));
  BOOST_OUTCOME_TRY(keys, repo->snapshot_keys(workspace));
  std::vector<std::pair<std::string, std::time_t>> snaps;  // key, time
  for (const auto& k : keys) {
    std::string id = fs::path(k).stem().string();
    if (auto t = id_time(id)) snaps.emplace_back(k, *t);
  }
  if (snaps.empty()) {
    return fail(Errc::not_found,
                fmt::format("backup destination {} holds no snapshot of workspace {} (see "
                            "`cloudyknight backup list`)",
                            dest.name, workspace));
  }
  std::string chosen;
  if (!opts.snapshot.empty()) {
    for (const auto& [k, t] : snaps) {
      if (fs::path(k).stem().string() == opts.snapshot) chosen = k;
    }
    if (chosen.empty()) {
      return fail(Errc::not_found,
                  fmt::format("no snapshot {} of workspace {} on destination {} (see "
                              "`cloudyknight backup list --workspace {}`)",
                              opts.snapshot, workspace, dest.name, workspace));
    }
  } else if (opts.point_in_time) {
    for (const auto& [k, t] : snaps) {
      if (t <= *opts.point_in_time) chosen = k;  // sorted by time: the last one wins
    }
    if (chosen.empty()) {
      return fail(Errc::not_found,
                  fmt::format("no snapshot of workspace {} on destination {} is as old as {}: the "
                              "oldest is from {}",
                              workspace, dest.name, format_local(*opts.point_in_time, true),
                              format_local(snaps.front().second, true)));
    }
  } else {
    chosen = snaps.back().first;
  }
  BOOST_OUTCOME_TRY(snap, repo->load_snapshot(chosen));
  if (snap.workspace != workspace) {
    return fail(Errc::invalid_argument,
                fmt::format("snapshot {} claims workspace {}, not {}: it was tampered with",
                            snap.id, snap.workspace, workspace));
  }
  BOOST_OUTCOME_TRY(
      check_paths(snap.files, fmt::format("snapshot {} of workspace {}", snap.id, workspace)));
  BOOST_OUTCOME_TRY(repo->load_index());
  fs::path cache = repo->cache();
  BOOST_OUTCOME_TRY(stage_path, make_stage(cache));
  StageDir stage{stage_path};
  std::vector<PlannedFile> files;
  files.reserve(snap.files.size());
  for (const auto& f : snap.files) {
    files.push_back(PlannedFile{f.path, f.size, f.mode, f.mtime_ns, f.blob, stage.path / f.blob});
  }
  RestoreReport report;
  report.snapshot_id = snap.id;
  std::vector<PlannedFile> writes;
  std::vector<std::string> removes;
  BOOST_OUTCOME_TRY(plan_changes(files, opts, repo->keys(), writes, removes, report));
  if (opts.dry_run) {
    report.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
    return report;
  }
  MemoryStage mem;
  BOOST_OUTCOME_TRY(stage_blobs(*repo, writes, stage.path, mem, opts, workspace));
  if (is_cancelled(opts)) return cancelled_error(dest.name, workspace);  // the target is untouched
  std::error_code ec;
  fs::create_directories(opts.target, ec);
  BOOST_OUTCOME_TRY(apply(writes, removes, opts.target, &mem, report));
  report.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  return report;
}

}  // namespace ck::backup
