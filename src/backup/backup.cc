// backup_workspace (incremental) and backup_all. Order of writes (README.md "Crash safety"):
// packs and standalone blobs, then one index object listing them, then the snapshot.
#include "backup/backup.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <deque>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_set>

#include "backup/mirror_mode.h"
#include "backup/repo.h"
#include "core/files.h"
#include "core/hash.h"

namespace ck::backup {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::uint64_t kSmallBlob = 1 << 20;  // below: packed
constexpr std::size_t kPackTarget = 16 << 20;  // a pack is uploaded once this big

struct CachedFile {
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::string blob;
};

// The per-workspace file cache: path -> (size, mtime, blob id), so unchanged files are not read.
fs::path files_cache_path(const Repo& repo, const std::string& workspace, const fs::path& dir) {
  std::error_code ec;
  std::string abs = fs::weakly_canonical(fs::absolute(dir, ec), ec).string();
  return repo.cache() / "files" / (workspace + "-" + stable_hash(abs) + ".json");
}

std::unordered_map<std::string, CachedFile> load_files_cache(const fs::path& file) {
  std::unordered_map<std::string, CachedFile> out;
  auto text = read_file(file);
  if (!text) return out;
  json j = json::parse(*text, nullptr, false);
  if (!j.is_object()) return out;
  for (const auto& [path, v] : j.items()) {
    if (!v.is_array() || v.size() != 3 || !v[0].is_number_unsigned() || !v[1].is_number_integer() ||
        !v[2].is_string()) {
      continue;
    }
    out[path] =
        CachedFile{v[0].get<std::uint64_t>(), v[1].get<std::int64_t>(), v[2].get<std::string>()};
  }
  return out;
}

void save_files_cache(const fs::path& file, const std::vector<SnapshotFile>& files) {
  json j = json::object();
  for (const auto& f : files) j[f.path] = json::array({f.size, f.mtime_ns, f.blob});
  (void)write_file_atomic(file, j.dump(-1, ' ', false, json::error_handler_t::replace));
}

std::string host_name(const BackupOptions& opts) {
  if (!opts.host.empty()) return opts.host;
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}

// Collects new small blobs into packs; each full pack is uploaded on its own thread (up to
// kPacksInFlight at once) while the scan goes on. finish() waits for every upload; a pack enters
// the index only once its PUT succeeded.
class PackWriter {
 public:
  static constexpr std::size_t kPacksInFlight = 3;

  PackWriter(Repo& repo, Index& index, BackupReport& report)
      : repo_(repo), index_(index), report_(report) {}
  ~PackWriter() { (void)wait_until(0); }

  Result<void> add(const std::string& id, std::string_view plain) {
    std::string stored = repo_.seal_if(plain);
    current_.blobs.push_back(IndexBlob{id, data_.size(), stored.size(), plain.size()});
    data_ += stored;
    if (data_.size() >= kPackTarget) return start_upload();
    return outcome::success();
  }

  /// Uploads the last, partial pack and waits for every upload.
  Result<void> finish() {
    BOOST_OUTCOME_TRY(start_upload());
    return wait_until(0);
  }

 private:
  struct Upload {
    IndexPack pack;
    std::future<Result<std::string>> done;
  };

  Result<void> start_upload() {
    if (current_.blobs.empty()) return outcome::success();
    BOOST_OUTCOME_TRY(wait_until(kPacksInFlight - 1));
    current_.pack = sha256_hex(data_);
    std::string key = repo_.pack_key(current_.pack);
    s3::Client* client = &repo_.client();
    const std::string* bucket = &repo_.dest().bucket;
    Upload u{std::move(current_), {}};
    u.done = std::async(std::launch::async, [client, bucket, key, data = std::move(data_)] {
      return client->put_object(*bucket, key, data);
    });
    uploads_.push_back(std::move(u));
    current_ = IndexPack{};
    data_.clear();
    return outcome::success();
  }

  // Waits until at most `n` uploads are running; the first failure is returned (after the
  // others it waited for finished).
  Result<void> wait_until(std::size_t n) {
    std::optional<Error> err;
    while (uploads_.size() > n) {
      Upload u = std::move(uploads_.front());
      uploads_.pop_front();
      auto put = u.done.get();
      if (!put) {
        if (!err) {
          err = Error{put.error().code, fmt::format("uploading a pack to destination {} failed: {}",
                                                    repo_.dest().name, put.error().message)};
        }
        n = 0;  // no new upload starts after a failure: drain them all
        continue;
      }
      ++report_.objects_written;
      index_.packs.push_back(std::move(u.pack));
    }
    if (err) return *err;
    return outcome::success();
  }

  Repo& repo_;
  Index& index_;
  BackupReport& report_;
  IndexPack current_;
  std::string data_;
  std::deque<Upload> uploads_;
};

Result<BackupReport> backup_incremental(const Destination& dest, const std::string& workspace,
                                        const fs::path& dir, const BackupOptions& opts) {
  auto started = Clock::now();
  BackupReport report;
  report.destination = dest.name;
  report.workspace = workspace;
  Progress progress{dest.name, workspace, "scan", 0, 0, 0, 0};
  report_progress(opts, progress);

  auto opened = Repo::open(dest, opts, !opts.dry_run);
  bool empty_repo = false;
  if (!opened && opts.dry_run && opened.error().code == Errc::not_found) {
    empty_repo = true;
  } else if (!opened) {
    return opened.error();
  }
  BOOST_OUTCOME_TRY(tree, list_source_files(dir, opts.ignore));
  for (const auto& s : tree.skipped) {
    report.warnings.push_back(
        fmt::format("{}: folder {} could not be read and was skipped", workspace, s));
  }
  report.files = tree.files.size();
  for (const auto& f : tree.files) report.bytes += f.size;
  if (empty_repo) {
    report.added_files = report.files;
    report.added_bytes = report.bytes;
    report.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
    return report;
  }
  Repo& repo = *opened.value();
  BOOST_OUTCOME_TRY(repo.load_index());

  fs::path cache_file = files_cache_path(repo, workspace, dir);
  auto cached = load_files_cache(cache_file);
  Snapshot snap;
  snap.workspace = workspace;
  auto now = std::chrono::system_clock::now();
  snap.time = std::chrono::system_clock::to_time_t(now);
  snap.id = make_snapshot_id(
      snap.time,
      static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() %
          1000));
  snap.host = host_name(opts);
  Index index;
  PackWriter packs(repo, index, report);
  std::unordered_set<std::string> added;  // new blob ids of this run
  progress.phase = "upload";
  progress.files_total = tree.files.size();
  progress.bytes_total = report.bytes;
  const Keys* keys = repo.keys();

  for (const auto& f : tree.files) {
    fs::path full = dir / f.path;
    struct stat st {};
    if (::stat(full.c_str(), &st) != 0) {
      report.warnings.push_back(
          fmt::format("{}: {} vanished during the backup", workspace, f.path));
      continue;
    }
    SnapshotFile sf{f.path, f.size, static_cast<std::uint32_t>(st.st_mode & 0777), f.mtime_ns, ""};
    auto c = cached.find(f.path);
    if (c != cached.end() && c->second.size == f.size && c->second.mtime_ns == f.mtime_ns &&
        repo.blobs().contains(c->second.blob)) {
      sf.blob = c->second.blob;
    } else if (f.size < kSmallBlob) {
      auto content = read_file(full);
      if (!content) {
        std::error_code ec;
        if (!fs::exists(full, ec)) {  // deleted since the walk (an editor's temporary file)
          report.warnings.push_back(
              fmt::format("{}: {} vanished during the backup", workspace, f.path));
          continue;
        }
        return fail(Errc::io, fmt::format("cannot read {} of workspace {}: {} (check its "
                                          "permissions)",
                                          f.path, workspace, std::strerror(errno)));
      }
      sf.size = content->size();
      sf.blob = blob_id(keys, *content);
      if (!repo.blobs().contains(sf.blob) && !added.contains(sf.blob)) {
        added.insert(sf.blob);
        report.added_files++;
        report.added_bytes += content->size();
        if (!opts.dry_run) {
          BOOST_OUTCOME_TRY(packs.add(sf.blob, *content));
        }
      }
    } else {
      BOOST_OUTCOME_TRY(id, file_blob_id(keys, full));
      sf.blob = id;
      if (!repo.blobs().contains(id) && !added.contains(id)) {
        report.added_files++;
        report.added_bytes += f.size;
        if (!opts.dry_run) {
          fs::path tmp =
              repo.cache() / fmt::format("upload-{}-{}", ::getpid(), to_hex(random_bytes(4)));
          auto staged = stage_file(keys, full, tmp);
          if (!staged) {
            std::error_code ec;
            fs::remove(tmp, ec);
            return staged.error();
          }
          sf.blob = staged.value();  // what was actually read (the file may have changed)
          std::error_code ec;
          std::uint64_t stored = fs::file_size(tmp, ec);
          auto put = repo.client().put_file(dest.bucket, repo.blob_key(sf.blob), tmp);
          fs::remove(tmp, ec);
          if (!put) {
            return fail(put.error().code,
                        fmt::format("uploading {} of workspace {} to destination {} failed: {}",
                                    f.path, workspace, dest.name, put.error().message));
          }
          ++report.objects_written;
          index.blobs.push_back(IndexBlob{sf.blob, 0, stored, f.size});
        }
        added.insert(sf.blob);
      }
    }
    progress.files_done++;
    progress.bytes_done += f.size;
    if (progress.files_done % 256 == 0) report_progress(opts, progress);
    snap.bytes += sf.size;
    snap.files.push_back(std::move(sf));
  }
  report.bytes = snap.bytes;
  if (opts.dry_run) {
    report.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
    return report;
  }
  BOOST_OUTCOME_TRY(packs.finish());
  if (!index.packs.empty() || !index.blobs.empty()) {
    progress.phase = "index";
    report_progress(opts, progress);
    auto w = repo.write_index(index);
    if (!w) {
      return fail(w.error().code, fmt::format("writing the index to destination {} failed: {}",
                                              dest.name, w.error().message));
    }
    ++report.objects_written;
  }
  progress.phase = "snapshot";
  report_progress(opts, progress);
  snap.added_bytes = report.added_bytes;
  snap.added_objects = report.objects_written + 1;
  auto put =
      repo.put_doc(repo.snapshots_prefix(workspace) + snap.id + ".json", snapshot_json(snap));
  if (!put) {
    return fail(put.error().code, fmt::format("writing the snapshot to destination {} failed: {}",
                                              dest.name, put.error().message));
  }
  ++report.objects_written;
  report.snapshot_id = snap.id;
  save_files_cache(cache_file, snap.files);
  report.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  return report;
}

}  // namespace

Result<BackupReport> backup_workspace(const Destination& dest, const std::string& workspace,
                                      const fs::path& dir, const BackupOptions& opts) {
  if (dest.mode == DestinationMode::mirror) return mirror_backup(dest, workspace, dir, opts);
  return backup_incremental(dest, workspace, dir, opts);
}

std::vector<DestinationResult> backup_all(const std::vector<Destination>& destinations,
                                          const std::vector<WorkspaceSource>& workspaces,
                                          const BackupOptions& opts) {
  std::vector<DestinationResult> results(destinations.size());
  std::vector<std::thread> threads;
  threads.reserve(destinations.size());
  for (std::size_t i = 0; i < destinations.size(); ++i) {
    threads.emplace_back([&, i] {
      auto& r = results[i];
      r.destination = destinations[i].name;
      for (const auto& ws : workspaces) {
        auto one = backup_workspace(destinations[i], ws.name, ws.dir, opts);
        if (!one) {
          if (r.ok) r.error = fmt::format("workspace {}: {}", ws.name, one.error().message);
          r.ok = false;
          // A destination that refuses the key, or cannot be reached for the first workspace,
          // fails the same way for every other one: do not wait for each to time out.
          auto code = one.error().code;
          if (code == Errc::unauthenticated || code == Errc::conflict ||
              (r.reports.empty() && is_retryable(code))) {
            if (&ws != &workspaces.back()) r.error += " (the other workspaces were not tried)";
            break;
          }
          continue;
        }
        r.reports.push_back(std::move(one.value()));
      }
    });
  }
  for (auto& t : threads) t.join();
  return results;
}

}  // namespace ck::backup
