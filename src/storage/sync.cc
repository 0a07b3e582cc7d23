#include "storage/sync.h"

#include "core/units.h"

#include <ctime>
#include <nlohmann/json.hpp>

#include "workspace/workspace.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "core/files.h"
#include "core/hash.h"
#include "core/user_dirs.h"
#include "storage/file_index.h"

namespace ck::sync {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

std::string trim_slashes(std::string_view s) {
  while (!s.empty() && s.front() == '/') s.remove_prefix(1);
  while (!s.empty() && s.back() == '/') s.remove_suffix(1);
  return std::string(s);
}

std::string hex(const unsigned char* d, unsigned n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (unsigned i = 0; i < n; ++i) {
    out += digits[d[i] >> 4];
    out += digits[d[i] & 15];
  }
  return out;
}

// MD5 over byte ranges of one file, read with pread: the whole file, or its parts of `part`
// bytes each (for multipart ETags). Returns the raw digests, one per range.
Result<std::vector<std::string>> md5_ranges(const fs::path& file, std::uint64_t part) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return fail(Errc::io, fmt::format("cannot read {}: {}", file.string(), std::strerror(errno)));
  }
  struct stat st {};
  ::fstat(fd, &st);
  std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
  if (part == 0) part = std::max<std::uint64_t>(size, 1);
  std::vector<std::string> digests;
  std::vector<char> buf(std::min<std::uint64_t>(std::max<std::uint64_t>(size, 1), 1u << 20));
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  std::uint64_t offset = 0;
  Result<std::vector<std::string>> result = digests;
  do {
    std::uint64_t end = std::min(size, offset + part);
    EVP_DigestInit_ex(ctx, EVP_md5(), nullptr);
    while (offset < end) {
      std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), end - offset));
      ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(offset));
      if (n <= 0) {
        ::close(fd);
        EVP_MD_CTX_free(ctx);
        return fail(Errc::io, fmt::format("cannot read {}: {}", file.string(),
                                          n == 0 ? "the file shrank while it was read" : std::strerror(errno)));
      }
      EVP_DigestUpdate(ctx, buf.data(), static_cast<std::size_t>(n));
      offset += static_cast<std::uint64_t>(n);
    }
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_DigestFinal_ex(ctx, d, &len);
    digests.emplace_back(reinterpret_cast<const char*>(d), len);
  } while (offset < size);
  ::close(fd);
  EVP_MD_CTX_free(ctx);
  return digests;
}


std::string raw_hex(const std::string& raw) {
  return hex(reinterpret_cast<const unsigned char*>(raw.data()), static_cast<unsigned>(raw.size()));
}

// ---- comparing a local file with an object -----------------------------------------------

// Part sizes the common tools upload with (aws: 8 MiB, rclone: 5 MiB, MinIO mc: 16 MiB, ...).
constexpr std::uint64_t kMiB = 1ull << 20;
constexpr std::array<std::uint64_t, 8> kCommonPartSizes = {8 * kMiB,  5 * kMiB,  16 * kMiB, 15 * kMiB,
                                                           10 * kMiB, 32 * kMiB, 64 * kMiB, 100 * kMiB};

/// True if the file at `path` (whose size equals the object's) has the object's content.
/// Fills `md5` with the file's hex MD5 when it was computed or known.
Result<bool> same_content(const fs::path& path, std::uint64_t size, const std::string& etag,
                          std::uint64_t our_part_size, std::string& md5) {
  auto dash = etag.find('-');
  if (dash == std::string::npos) {
    if (md5.empty()) {
      BOOST_OUTCOME_TRY(d, md5_ranges(path, 0));
      md5 = raw_hex(d.front());
    }
    return md5 == etag;
  }
  // A multipart ETag: MD5 of the parts' MD5s, "-N". Try the part sizes that give N parts.
  std::uint64_t parts = std::strtoull(etag.c_str() + dash + 1, nullptr, 10);
  if (parts == 0 || size == 0) return false;
  std::vector<std::uint64_t> candidates = {our_part_size};
  candidates.insert(candidates.end(), kCommonPartSizes.begin(), kCommonPartSizes.end());
  std::uint64_t even = (size + parts - 1) / parts;
  candidates.push_back(even);
  candidates.push_back((even + kMiB - 1) / kMiB * kMiB);
  std::vector<std::uint64_t> tried;
  for (std::uint64_t ps : candidates) {
    if (ps == 0 || (size + ps - 1) / ps != parts) continue;
    if (std::find(tried.begin(), tried.end(), ps) != tried.end()) continue;
    tried.push_back(ps);
    BOOST_OUTCOME_TRY(d, md5_ranges(path, ps));
    std::string cat;
    for (const auto& raw : d) cat += raw;
    if (md5_hex(cat) + "-" + std::to_string(parts) == etag) return true;
  }
  return false;
}

// ---- running transfers ---------------------------------------------------------------------

/// Runs fn(i) for i in [0, count) on up to `threads` threads.
template <class Fn>
void parallel_for(std::size_t count, int threads, Fn fn) {
  std::size_t n = std::min<std::size_t>(count, static_cast<std::size_t>(std::max(1, threads)));
  if (n <= 1) {
    for (std::size_t i = 0; i < count; ++i) fn(i);
    return;
  }
  std::atomic<std::size_t> next{0};
  std::vector<std::jthread> pool;
  pool.reserve(n);
  for (std::size_t t = 0; t < n; ++t) {
    pool.emplace_back([&] {
      for (std::size_t i = next++; i < count; i = next++) fn(i);
    });
  }
}

/// The order to transfer n path-sorted files in: a fixed shuffle, so the requests in flight at
/// any moment go to many folders rather than all to one. Servers that store keys as files
/// (s3rver, MinIO on a single disk) serialize creates in one directory, and S3 itself spreads
/// load by key prefix; uploading 32 neighbours of one folder at once is the worst case for both.
std::vector<std::size_t> spread_order(std::size_t n) {
  std::vector<std::size_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = i;
  std::mt19937_64 rng(0x636b);  // fixed: the same tree is always sent in the same order
  std::shuffle(order.begin(), order.end(), rng);
  return order;
}

/// Collects results and errors from worker threads and reports progress.
class Tally {
 public:
  Tally(const Options& opts, Report& report) : opts_(opts), report_(report) {}

  void set_total(std::size_t files, std::uint64_t bytes) {
    progress_.files_total = files;
    progress_.bytes_total = bytes;
  }

  void done(Action a) {
    std::lock_guard lock(mu_);
    progress_.files_done++;
    progress_.bytes_done += a.size;
    if (a.op == Op::upload || a.op == Op::download) report_.bytes += a.size;
    if (opts_.on_action) opts_.on_action(a);
    if (opts_.on_progress) opts_.on_progress(progress_);
    report_.actions.push_back(std::move(a));
  }

  void error(std::string message) {
    std::lock_guard lock(mu_);
    if (errors_.empty()) first_ = message;
    errors_.push_back(std::move(message));
  }

  void warn(std::string message) {
    std::lock_guard lock(mu_);
    report_.warnings.push_back(std::move(message));
  }

  std::size_t error_count() const {
    std::lock_guard lock(mu_);
    return errors_.size();
  }

  Error summary(std::string_view what, std::size_t of) const {
    std::lock_guard lock(mu_);
    return make_error(Errc::unavailable,
                      fmt::format("{} of {} {} failed; first: {}", errors_.size(), of, what, first_));
  }

 private:
  const Options& opts_;
  Report& report_;
  mutable std::mutex mu_;
  Progress progress_;
  std::vector<std::string> errors_;
  std::string first_;
};

void finish(Report& report, Clock::time_point started) {
  std::sort(report.actions.begin(), report.actions.end(),
            [](const Action& a, const Action& b) { return a.path < b.path; });
  report.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
}

Result<std::vector<s3::ObjectInfo>> listing_of(const Location& where, const Options& opts) {
  if (opts.listing != nullptr) return *opts.listing;
  return where.client->list_objects(where.bucket, where.key_prefix);
}

std::int64_t mtime_ns_of(const struct stat& st) {
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

/// A unique temporary name beside `target`, hidden and recognisable.
fs::path temp_beside(const fs::path& target) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return target.parent_path() / fmt::format(".ck-download-{:016x}", rng());
}

}  // namespace

std::string_view op_name(Op op) {
  switch (op) {
    case Op::upload: return "upload";
    case Op::download: return "download";
    case Op::delete_remote:
    case Op::delete_local: return "delete";
  }
  return "?";
}

std::string root_prefix(std::string_view prefix) {
  std::string p = trim_slashes(prefix);
  return p.empty() ? p : p + "/";
}

std::string workspace_prefix(std::string_view prefix, std::string_view name) {
  return root_prefix(prefix) + std::string(name) + "/";
}

std::string manifest_key(std::string_view prefix, std::string_view name) {
  return root_prefix(prefix) + ".cloudyknight/manifests/" + std::string(name) + ".json";
}

bool safe_relative_path(std::string_view rel) {
  if (rel.empty() || rel.front() == '/') return false;
  if (rel.find('\0') != std::string_view::npos || rel.find('\\') != std::string_view::npos) return false;
  std::size_t start = 0;
  while (true) {
    auto slash = rel.find('/', start);
    std::string_view seg = rel.substr(start, slash == std::string_view::npos ? rel.npos : slash - start);
    if (seg.empty() || seg == "." || seg == "..") return false;
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

std::string md5_hex(std::string_view data) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_Digest(data.data(), data.size(), d, &len, EVP_md5(), nullptr);
  return hex(d, len);
}

Result<std::string> file_md5(const fs::path& file) {
  BOOST_OUTCOME_TRY(d, md5_ranges(file, 0));
  return raw_hex(d.front());
}

Result<std::string> file_multipart_etag(const fs::path& file, std::uint64_t part_size) {
  BOOST_OUTCOME_TRY(d, md5_ranges(file, part_size));
  std::string cat;
  for (const auto& raw : d) cat += raw;
  return md5_hex(cat) + "-" + std::to_string(d.size());
}

fs::path default_index_path(std::string_view endpoint, std::string_view bucket, std::string_view key_prefix,
                            const fs::path& dir) {
  const fs::path cache = user_cache_dir();
  std::error_code ec;
  fs::path abs = fs::weakly_canonical(fs::absolute(dir, ec), ec);
  std::string folder = abs.string();
  while (folder.size() > 1 && folder.back() == '/') folder.pop_back();
  std::string id = fmt::format("{}\n{}\n{}\n{}", endpoint, bucket, key_prefix, folder);
  return cache / "cloudyknight" / "sync" / (stable_hash(id) + ".json");
}

// ---- multipart hygiene ---------------------------------------------------------------------

namespace {

/// Aborts the stale multipart uploads under where.key_prefix (see abort_stale_uploads()).
UploadsCleanup abort_stale(const Location& where, FileIndex& index, std::chrono::seconds older_than, bool all,
                           bool dry_run) {
  UploadsCleanup out;
  const std::time_t now = std::time(nullptr);
  auto abort_one = [&](const std::string& key, const std::string& id, const std::string& why) {
    if (dry_run) {
      out.aborted.push_back({key, id, why});
      return;
    }
    auto r = where.client->abort_multipart_upload(where.bucket, key, id);
    if (r.has_error() && (r.error().message.find("MethodNotAllowed") != std::string::npos ||
                          r.error().message.find("NotImplemented") != std::string::npos)) {
      // The server has no AbortMultipartUpload (s3rver): asking again never helps.
      index.remove_upload(id);
      out.warnings.push_back(fmt::format("the server cannot abort the unfinished multipart upload of {} ({}): "
                                         "{}; its parts stay until the bucket's lifecycle rule removes them",
                                         key, id, r.error().message));
      return;
    }
    if (r.has_error() && r.error().code != Errc::not_found) {
      out.warnings.push_back(fmt::format("cannot abort the unfinished multipart upload of {} ({}): {}; it is "
                                         "tried again next time (a bucket lifecycle rule removes such uploads "
                                         "too: see the README)",
                                         key, id, r.error().message));
      return;
    }
    index.remove_upload(id);
    if (r.has_value()) out.aborted.push_back({key, id, why});
  };
  auto listed = where.client->list_multipart_uploads(where.bucket, where.key_prefix);
  auto recorded = index.uploads();
  if (listed.has_value()) {
    out.listed = true;
    std::set<std::string> seen;
    for (const auto& u : listed.value()) {
      if (!u.key.starts_with(where.key_prefix)) continue;
      seen.insert(u.upload_id);
      auto started = parse_utc(u.initiated);
      std::string why;
      if (recorded.count(u.upload_id)) {
        why = "left by an earlier run of this folder";
      } else if (started && now - *started > older_than.count()) {
        why = "initiated " + u.initiated;
      } else if (all) {
        why = "every upload was asked for";
      } else {
        continue;  // young and not ours: another client may be uploading it now
      }
      abort_one(u.key, u.upload_id, why);
    }
    // Recorded uploads the server no longer lists have ended (completed, aborted, expired).
    if (!dry_run) {
      for (const auto& [id, u] : recorded) {
        if (!seen.count(id)) index.remove_upload(id);
      }
    }
    return out;
  }
  // A server without ListMultipartUploads: the uploads this folder's runs started.
  out.warnings.push_back(fmt::format("the server does not list multipart uploads ({}); aborting only those "
                                     "this folder's earlier runs left",
                                     listed.error().message));
  for (const auto& [id, u] : recorded) abort_one(u.key, id, "left by an earlier run of this folder");
  return out;
}

}  // namespace

Result<UploadsCleanup> abort_stale_uploads(const Location& where, const fs::path& index_file,
                                           std::chrono::seconds older_than, bool all, bool dry_run) {
  FileIndex index(index_file);
  auto out = abort_stale(where, index, older_than, all, dry_run);
  if (!out.listed && index_file.empty()) {
    return fail(Errc::unavailable, out.warnings.empty() ? "cannot list the multipart uploads" : out.warnings.front());
  }
  if (!dry_run) index.save();
  return out;
}

// ---- push ----------------------------------------------------------------------------------

Result<Report> push(const Location& where, const fs::path& dir, const Options& opts) {
  auto started = Clock::now();
  Report report;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return fail(Errc::not_found, fmt::format("{} is not a folder: give the folder that holds the workspace's source",
                                             dir.string()));
  }
  // The remote listing (the long pole: one request per 1,000 keys) runs while the folder is
  // walked and the index read. It comes before any change: if it fails, or any page of it,
  // nothing happens.
  auto listed = std::async(std::launch::async, [&] { return listing_of(where, opts); });
  auto walked = list_source_files(dir, opts.ignore);
  FileIndex index(opts.index);
  auto listing = listed.get();
  BOOST_OUTCOME_TRY(tree, std::move(walked));
  for (const auto& s : tree.skipped) {
    report.warnings.push_back(fmt::format("skipped {}: the folder cannot be read", s));
  }
  BOOST_OUTCOME_TRY(objects, std::move(listing));
  std::map<std::string, const s3::ObjectInfo*> remote;
  for (const auto& o : objects) {
    if (o.key.size() <= where.key_prefix.size() || !o.key.starts_with(where.key_prefix)) continue;
    remote.emplace(o.key.substr(where.key_prefix.size()), &o);
  }
  // Multipart uploads an earlier run left unfinished (killed mid-upload) are aborted first: their
  // parts are billed until then.
  if (!opts.dry_run && opts.abort_stale_uploads) {
    auto cleaned = abort_stale(where, index, std::chrono::hours(1), false, false);
    report.aborted_uploads = cleaned.aborted.size();
    // A server without the listing says so on every run: only worth a word when it mattered.
    for (auto& w : cleaned.warnings) {
      if (cleaned.listed || !index.uploads().empty()) report.warnings.push_back(std::move(w));
    }
  }
  Tally tally(opts, report);

  // Decide and upload in one pass over the local files, many at a time: deciding may hash.
  std::atomic<std::size_t> unchanged{0};
  std::uint64_t total_bytes = 0;
  for (const auto& f : tree.files) total_bytes += f.size;
  tally.set_total(tree.files.size(), total_bytes);
  s3::PutFileOptions put;
  put.multipart_threshold = opts.multipart_threshold;
  put.part_size = opts.part_size;
  put.on_multipart_created = [&index](const std::string& key, const std::string& id) { index.add_upload(key, id); };
  put.on_multipart_ended = [&index](const std::string&, const std::string& id) { index.remove_upload(id); };
  std::vector<std::size_t> order = spread_order(tree.files.size());
  parallel_for(tree.files.size(), opts.concurrency, [&](std::size_t n) {
    const SourceFile& f = tree.files[order[n]];
    fs::path path = dir / f.path;
    auto it = remote.find(f.path);
    std::string reason = "new";
    std::string md5;
    if (it != remote.end()) {
      const s3::ObjectInfo& o = *it->second;
      reason = "changed";
      if (o.size == f.size) {
        auto known = index.find(f.path);
        bool fresh = known && known->size == f.size && known->mtime_ns == f.mtime_ns;
        if (fresh && !known->etag.empty() && known->etag == o.etag) {
          ++unchanged;
          return;
        }
        if (fresh) md5 = known->md5;
        auto same = same_content(path, f.size, o.etag, opts.part_size, md5);
        if (same.has_error()) {
          tally.error(same.error().message);
          return;
        }
        if (same.value()) {
          index.put(f.path, {f.size, f.mtime_ns, md5, o.etag});
          ++unchanged;
          return;
        }
      }
    }
    if (opts.dry_run) {
      tally.done({Op::upload, f.path, f.size, reason});
      return;
    }
    auto etag = where.client->put_file(where.bucket, where.key_prefix + f.path, path, put);
    if (etag.has_error()) {
      tally.error(etag.error().message);
      return;
    }
    // A plain PUT's ETag is the MD5 of the bytes sent.
    std::string sent_md5 = etag.value().find('-') == std::string::npos ? etag.value() : md5;
    index.put(f.path, {f.size, f.mtime_ns, sent_md5, etag.value()});
    tally.done({Op::upload, f.path, f.size, reason});
  });
  report.unchanged = unchanged;

  std::size_t failed = tally.error_count();
  std::set<std::string, std::less<>> local;
  for (const auto& f : tree.files) local.insert(f.path);
  if (failed == 0 && opts.delete_extra) {
    std::vector<std::string> keys;
    std::vector<Action> deletes;
    for (const auto& [rel, o] : remote) {
      if (local.contains(rel)) continue;
      keys.push_back(o->key);
      deletes.push_back({Op::delete_remote, rel, o->size, "removed"});
    }
    if (!opts.dry_run && !keys.empty()) {
      if (auto r = where.client->delete_objects(where.bucket, keys); r.has_error()) {
        index.save();
        return outcome::failure(r.error());
      }
    }
    for (auto& a : deletes) {
      index.erase(a.path);
      tally.done(std::move(a));
    }
  }
  if (!opts.dry_run) {
    index.retain([&](const std::string& p) { return remote.contains(p) || local.contains(p); });
    index.save();
  }
  finish(report, started);
  if (failed > 0) {
    Error e = tally.summary("uploads", tree.files.size() - report.unchanged);
    if (opts.delete_extra) e.message += " (nothing was deleted)";
    return outcome::failure(std::move(e));
  }
  return report;
}

// ---- pull ----------------------------------------------------------------------------------

namespace {

/// Downloads one object to dir/rel atomically (temporary file, then rename).
Result<s3::ObjectInfo> download_one(const Location& where, const s3::ObjectInfo& o, const fs::path& dir,
                                    const std::string& rel, bool replace_conflicts) {
  fs::path target = dir / rel;
  std::error_code ec;
  // A local file where the object needs a folder (remote "a/b", local file "a"): with
  // replace_conflicts (a mirror) it gives way; otherwise it is an error for this key.
  for (fs::path p = target.parent_path(); p != dir && p.has_relative_path(); p = p.parent_path()) {
    auto st = fs::symlink_status(p, ec);
    if (fs::exists(st) && !fs::is_directory(st)) {
      if (!replace_conflicts) {
        return fail(Errc::already_exists,
                    fmt::format("cannot download {}: {} is a file, not a folder", rel, p.string()));
      }
      fs::remove(p, ec);
    }
  }
  fs::create_directories(target.parent_path(), ec);
  if (ec) {
    return fail(Errc::io, fmt::format("cannot create {}: {}", target.parent_path().string(), ec.message()));
  }
  if (fs::is_directory(fs::symlink_status(target, ec))) {
    if (!replace_conflicts) {
      return fail(Errc::already_exists, fmt::format("cannot download {}: a folder is in the way", rel));
    }
    fs::remove_all(target, ec);
  }
  fs::path tmp = temp_beside(target);
  auto info = where.client->get_to_file(where.bucket, o.key, tmp);
  if (info.has_error()) {
    fs::remove(tmp, ec);
    return info;
  }
  fs::rename(tmp, target, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return fail(Errc::io, fmt::format("cannot write {}: {}", target.string(), ec.message()));
  }
  return info;
}

}  // namespace

Result<Report> pull(const Location& where, const fs::path& dir, const Options& opts) {
  auto started = Clock::now();
  Report report;
  BOOST_OUTCOME_TRY(objects, listing_of(where, opts));
  std::error_code ec;
  if (!opts.dry_run) {
    fs::create_directories(dir, ec);
    if (ec) return fail(Errc::io, fmt::format("cannot create {}: {}", dir.string(), ec.message()));
  }
  std::map<std::string, SourceFile> local;
  if (fs::is_directory(dir, ec)) {
    BOOST_OUTCOME_TRY(tree, list_source_files(dir, opts.ignore));
    for (auto& f : tree.files) {
      // A temporary file left by an interrupted download: never part of the tree.
      if (f.path.find("/.ck-download-") != std::string::npos || f.path.starts_with(".ck-download-")) {
        if (!opts.dry_run) fs::remove(dir / f.path, ec);
        continue;
      }
      local.emplace(f.path, f);
    }
  }
  FileIndex index(opts.index);
  Tally tally(opts, report);

  struct Wanted {
    const s3::ObjectInfo* object;
    std::string rel;
  };
  std::vector<Wanted> wanted;
  std::set<std::string> remote_paths;
  std::uint64_t total_bytes = 0;
  for (const auto& o : objects) {
    if (!o.key.starts_with(where.key_prefix)) continue;
    std::string rel = o.key.substr(where.key_prefix.size());
    if (rel.empty() || rel.back() == '/') continue;  // the prefix itself or a "folder" marker
    if (!safe_relative_path(rel)) {
      tally.warn(fmt::format("refused the object '{}': its key would write outside {}", o.key, dir.string()));
      continue;
    }
    remote_paths.insert(rel);
    wanted.push_back({&o, std::move(rel)});
    total_bytes += o.size;
  }
  tally.set_total(wanted.size(), total_bytes);
  std::atomic<std::size_t> unchanged{0};
  parallel_for(wanted.size(), opts.concurrency, [&](std::size_t i) {
    const auto& [o, rel] = wanted[i];
    auto it = local.find(rel);
    std::string reason = "new";
    if (it != local.end()) {
      reason = "changed";
      const SourceFile& f = it->second;
      if (f.size == o->size) {
        auto known = index.find(rel);
        bool fresh = known && known->size == f.size && known->mtime_ns == f.mtime_ns;
        if (fresh && !known->etag.empty() && known->etag == o->etag) {
          ++unchanged;
          return;
        }
        std::string md5 = fresh ? known->md5 : "";
        auto same = same_content(dir / rel, f.size, o->etag, opts.part_size, md5);
        if (same.has_error()) {
          tally.error(same.error().message);
          return;
        }
        if (same.value()) {
          index.put(rel, {f.size, f.mtime_ns, md5, o->etag});
          ++unchanged;
          return;
        }
      }
    }
    if (opts.dry_run) {
      tally.done({Op::download, rel, o->size, reason});
      return;
    }
    auto got = download_one(where, *o, dir, rel, opts.delete_extra);
    if (got.has_error()) {
      tally.error(got.error().message);
      return;
    }
    struct stat st {};
    if (::stat((dir / rel).c_str(), &st) == 0) {
      std::string etag = got.value().etag.empty() ? o->etag : got.value().etag;
      std::string md5 = etag.find('-') == std::string::npos ? etag : "";
      index.put(rel, {static_cast<std::uint64_t>(st.st_size), mtime_ns_of(st), md5, etag});
    }
    tally.done({Op::download, rel, o->size, reason});
  });
  report.unchanged = unchanged;

  std::size_t failed = tally.error_count();
  if (failed == 0 && opts.delete_extra) {
    std::set<fs::path> parents;
    for (const auto& [rel, f] : local) {
      if (remote_paths.contains(rel)) continue;
      if (!opts.dry_run) {
        fs::remove(dir / rel, ec);
        if (ec) {
          tally.error(fmt::format("cannot delete {}: {}", (dir / rel).string(), ec.message()));
          continue;
        }
        for (fs::path p = fs::path(rel).parent_path(); !p.empty(); p = p.parent_path()) parents.insert(p);
      }
      index.erase(rel);
      tally.done({Op::delete_local, rel, f.size, "removed"});
    }
    // Folders left empty, deepest first (a set of paths sorts parents before children).
    for (auto it = parents.rbegin(); it != parents.rend(); ++it) {
      if (fs::is_empty(dir / *it, ec)) fs::remove(dir / *it, ec);
    }
  }
  if (!opts.dry_run) {
    index.retain([&](const std::string& p) { return remote_paths.contains(p) || local.contains(p); });
    index.save();
  }
  finish(report, started);
  if (tally.error_count() > 0) {
    Error e = tally.summary("downloads", wanted.size() - report.unchanged);
    if (opts.delete_extra && failed > 0) e.message += " (nothing was deleted)";
    return outcome::failure(std::move(e));
  }
  return report;
}

Result<void> write_manifest(s3::Client& client, const std::string& bucket, std::string_view prefix,
                            const std::string& name, const std::filesystem::path& dir,
                            std::size_t files, std::uint64_t bytes) {
  WorkspaceSpec spec = detect_workspace(name, dir);
  auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char updated[32];
  std::strftime(updated, sizeof updated, "%Y-%m-%dT%H:%M:%SZ", &tm);
  nlohmann::json doc = {{"name", name},
                        {"description", spec.description},
                        {"type", std::string(type_name(spec.type))},
                        {"updated", updated},
                        {"files", files},
                        {"bytes", bytes}};
  if (!spec.icon.empty()) doc["icon"] = spec.icon;
  auto r = client.put_object(bucket, manifest_key(prefix, name), doc.dump(2), "application/json");
  if (r.has_error()) return outcome::failure(r.error());
  return outcome::success();
}

}  // namespace ck::sync
