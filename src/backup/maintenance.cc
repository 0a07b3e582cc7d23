// list_snapshots, check and prune of a destination.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <thread>

#include "backup/backup.h"
#include "backup/mirror_mode.h"
#include "backup/repo.h"
#include "core/files.h"
#include "core/names.h"
#include "storage/sync.h"

namespace ck::backup {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string snapshot_workspace(const Repo& repo, const std::string& key) {
  std::string rest = key.substr(repo.snapshots_prefix("").size());
  auto slash = rest.find('/');
  return slash == std::string::npos ? "" : rest.substr(0, slash);
}

SnapshotInfo info_of(const Destination& d, const Snapshot& s) {
  return SnapshotInfo{d.name, s.workspace,    s.id,    s.time,
                      s.host, s.files.size(), s.bytes, s.added_bytes};
}

std::string bucket_key(std::time_t t, const char* fmt) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, fmt, &tm);
  return buf;
}

std::map<std::string, SnapshotInfo> load_summaries(const fs::path& file, const std::string& dest) {
  std::map<std::string, SnapshotInfo> out;
  auto text = read_file(file);
  if (!text) return out;
  json j = json::parse(*text, nullptr, false);
  if (!j.is_object()) return out;
  for (const auto& [key, v] : j.items()) {
    if (!v.is_object()) continue;
    SnapshotInfo s;
    s.destination = dest;
    s.workspace = v.value("workspace", "");
    s.id = v.value("id", "");
    s.time = v.value("time", std::int64_t{0});
    s.host = v.value("host", "");
    s.files = v.value("files", std::uint64_t{0});
    s.bytes = v.value("bytes", std::uint64_t{0});
    s.added_bytes = v.value("added_bytes", std::uint64_t{0});
    if (valid_snapshot_id(s.id)) out[key] = std::move(s);
  }
  return out;
}

void save_summaries(const fs::path& file, const std::map<std::string, SnapshotInfo>& all) {
  json j = json::object();
  for (const auto& [key, s] : all) {
    j[key] = {{"workspace", s.workspace},
              {"id", s.id},
              {"time", static_cast<std::int64_t>(s.time)},
              {"host", s.host},
              {"files", s.files},
              {"bytes", s.bytes},
              {"added_bytes", s.added_bytes}};
  }
  (void)write_file_atomic(file, j.dump(-1, ' ', false, json::error_handler_t::replace));
}

}  // namespace

bool CheckReport::ok() const {
  if (!problems.empty()) return false;
  return std::all_of(snapshots.begin(), snapshots.end(),
                     [](const SnapshotCheck& s) { return s.problems.empty(); });
}

std::vector<bool> keep_mask(const std::vector<std::time_t>& times, const Keep& keep) {
  std::vector<bool> kept(times.size(), false);
  if (times.empty()) return kept;
  if (keep.last == 0 && keep.hourly == 0 && keep.daily == 0 && keep.weekly == 0 &&
      keep.monthly == 0) {
    return std::vector<bool>(times.size(), true);
  }
  std::vector<std::size_t> order(times.size());
  std::iota(order.begin(), order.end(), 0);
  // Newest first; equal times: the later in the input is the newer (callers pass snapshots in
  // id order, and ids sort by time to the millisecond).
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return times[a] != times[b] ? times[a] > times[b] : a > b;
  });
  kept[order[0]] = true;  // the newest, always
  for (int i = 0; i < keep.last && i < static_cast<int>(order.size()); ++i) kept[order[i]] = true;
  auto policy = [&](int n, const char* fmt) {
    std::string last;
    int count = 0;
    for (std::size_t i : order) {
      if (count >= n) break;
      std::string k = bucket_key(times[i], fmt);
      if (k != last) {
        kept[i] = true;
        last = k;
        ++count;
      }
    }
  };
  policy(keep.hourly, "%Y-%m-%d %H");
  policy(keep.daily, "%Y-%m-%d");
  policy(keep.weekly, "%G-%V");
  policy(keep.monthly, "%Y-%m");
  return kept;
}

Result<std::vector<SnapshotInfo>> list_snapshots(const Destination& dest,
                                                 const std::string& workspace,
                                                 const RepoOptions& opts) {
  if (!workspace.empty()) {
    BOOST_OUTCOME_TRY(validate_workspace_name(workspace));
  }
  if (dest.mode == DestinationMode::mirror) return mirror_list(dest, workspace);
  auto opened = Repo::open(dest, opts, false);
  if (!opened && opened.error().code == Errc::not_found) return std::vector<SnapshotInfo>{};
  if (!opened) return opened.error();
  Repo& repo = *opened.value();
  BOOST_OUTCOME_TRY(keys, repo.snapshot_keys(workspace));
  // Snapshots never change once written: their summaries are cached by object key, so a listing
  // GETs only the snapshots it has not seen before (8 at a time).
  fs::path cache_file = repo.cache() / "snapshots.json";
  std::map<std::string, SnapshotInfo> known = load_summaries(cache_file, dest.name);
  std::vector<std::string> missing;
  for (const auto& k : keys) {
    if (!known.contains(k)) missing.push_back(k);
  }
  std::mutex mu;
  std::optional<Error> first_error;
  std::atomic<std::size_t> next{0};
  auto worker = [&] {
    for (std::size_t i = next++; i < missing.size(); i = next++) {
      auto s = repo.load_snapshot(missing[i]);
      std::lock_guard lock(mu);
      if (!s) {
        if (!first_error) first_error = s.error();
        return;
      }
      known[missing[i]] = info_of(dest, s.value());
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < std::min<int>(8, static_cast<int>(missing.size())); ++i)
    threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  if (first_error) return *first_error;
  std::vector<SnapshotInfo> out;
  for (const auto& k : keys) out.push_back(known.at(k));
  if (!missing.empty() || workspace.empty()) {
    // Keep the summaries of other workspaces when listing one; drop deleted snapshots otherwise.
    std::set<std::string> listed(keys.begin(), keys.end());
    std::string under = repo.snapshots_prefix(workspace);
    std::erase_if(known, [&](const auto& kv) {
      return kv.first.starts_with(under) && !listed.contains(kv.first);
    });
    save_summaries(cache_file, known);
  }
  std::stable_sort(out.begin(), out.end(), [](const SnapshotInfo& a, const SnapshotInfo& b) {
    return a.time != b.time ? a.time < b.time : a.id < b.id;
  });
  return out;
}

Result<CheckReport> check(const Destination& dest, const CheckOptions& opts) {
  CheckReport report;
  if (dest.mode == DestinationMode::mirror) {
    // A plain copy has nothing to verify beyond being listable.
    BOOST_OUTCOME_TRY(mirror_list(dest, ""));
    return report;
  }
  BOOST_OUTCOME_TRY(repo, Repo::open(dest, opts, false));
  BOOST_OUTCOME_TRY(repo->load_index());
  const auto& bucket = dest.bucket;
  BOOST_OUTCOME_TRY(pack_objects, repo->client().list_objects(bucket, repo->key("packs/")));
  BOOST_OUTCOME_TRY(blob_objects, repo->client().list_objects(bucket, repo->key("blobs/")));
  std::set<std::string> packs_present, blobs_present;
  for (const auto& o : pack_objects) {
    std::string name = fs::path(o.key).filename().string();
    if (o.size > kMaxPackBytes) {
      // Never written by a backup: not downloaded (its blobs are reported as missing).
      report.problems.push_back(fmt::format(
          "pack {} is {} bytes, more than any backup writes: it was replaced", name, o.size));
      continue;
    }
    packs_present.insert(name);
  }
  for (const auto& o : blob_objects) blobs_present.insert(fs::path(o.key).filename().string());

  BOOST_OUTCOME_TRY(keys, repo->snapshot_keys(""));
  std::vector<std::pair<Snapshot, std::size_t>> snaps;        // snapshot, its report row
  std::map<std::string, std::set<std::string>> needed_packs;  // pack -> blob ids
  std::set<std::string> needed_standalone;
  std::map<std::string, std::string> bad_blobs;  // id -> why
  for (const auto& k : keys) {
    SnapshotCheck row;
    row.workspace = snapshot_workspace(*repo, k);
    row.id = fs::path(k).stem().string();
    auto s = repo->load_snapshot(k);
    if (!s) {
      row.problems.push_back(s.error().message);
      report.snapshots.push_back(std::move(row));
      continue;
    }
    for (const auto& f : s.value().files) {
      if (!sync::safe_relative_path(f.path)) {
        row.problems.push_back(fmt::format("unsafe path '{}' (restore refuses it)", f.path));
      }
      auto it = repo->blobs().find(f.blob);
      if (it == repo->blobs().end()) {
        bad_blobs[f.blob] = "not in any index";
      } else if (it->second.pack.empty()) {
        if (!blobs_present.contains(f.blob)) bad_blobs[f.blob] = "its object is missing";
        needed_standalone.insert(f.blob);
      } else {
        if (!packs_present.contains(it->second.pack)) {
          bad_blobs[f.blob] = "its pack " + it->second.pack + " is missing";
        }
        needed_packs[it->second.pack].insert(f.blob);
      }
    }
    report.snapshots.push_back(std::move(row));
    snaps.emplace_back(std::move(s.value()), report.snapshots.size() - 1);
  }
  if (opts.read_data) {
    Progress progress{dest.name, "", "check", 0, needed_packs.size() + needed_standalone.size(),
                      0,         0};
    const Keys* k = repo->keys();
    for (const auto& [pack, ids] : needed_packs) {
      if (!packs_present.contains(pack)) continue;
      auto data = repo->client().get_object(bucket, repo->pack_key(pack));
      if (!data) {
        for (const auto& id : ids)
          bad_blobs[id] = "its pack cannot be read: " + data.error().message;
        continue;
      }
      report.bytes_read += data.value().size();
      bool pack_ok = sha256_hex(data.value()) == pack;
      if (!pack_ok)
        report.problems.push_back(
            fmt::format("pack {} does not match its name: it was modified", pack));
      for (const auto& id : ids) {
        const auto& loc = repo->blobs().at(id);
        ++report.blobs_checked;
        const auto& d = data.value();
        if (loc.offset > d.size() || loc.length > d.size() - loc.offset) {
          bad_blobs[id] = "its range lies outside its pack";
          continue;
        }
        auto plain = repo->unseal_if(std::string_view(d).substr(loc.offset, loc.length), id);
        if (!plain || blob_id(k, plain.value()) != id)
          bad_blobs[id] = "its content does not match its id (tampered or damaged)";
      }
      progress.files_done++;
      report_progress(opts, progress);
    }
    for (const auto& id : needed_standalone) {
      if (!blobs_present.contains(id)) continue;
      ++report.blobs_checked;
      fs::path tmp = repo->cache() / fmt::format("check-{}-{}", ::getpid(), id);
      fs::path plain_tmp = tmp;
      plain_tmp += ".plain";
      auto got = repo->client().get_to_file(bucket, repo->blob_key(id), tmp);
      if (!got) {
        bad_blobs[id] = "its object cannot be read: " + got.error().message;
      } else {
        report.bytes_read += got.value().size;
        auto h = k != nullptr ? unseal_file(*k, tmp, plain_tmp, id) : file_blob_id(nullptr, tmp);
        if (!h || h.value() != id)
          bad_blobs[id] = "its content does not match its id (tampered or damaged)";
      }
      std::error_code ec;
      fs::remove(tmp, ec);
      fs::remove(plain_tmp, ec);
      progress.files_done++;
      report_progress(opts, progress);
    }
  }
  for (const auto& [snap, row] : snaps) {
    for (const auto& f : snap.files) {
      if (auto it = bad_blobs.find(f.blob); it != bad_blobs.end()) {
        report.snapshots[row].problems.push_back(
            fmt::format("{}: blob {}: {}", f.path, f.blob, it->second));
      }
    }
  }
  return report;
}

Result<PruneReport> prune(const Destination& dest, const Keep& keep, const PruneOptions& opts) {
  PruneReport report;
  if (dest.mode == DestinationMode::mirror) return report;
  auto opened = Repo::open(dest, opts, false);
  if (!opened && opened.error().code == Errc::not_found) return report;
  if (!opened) return opened.error();
  Repo& repo = *opened.value();
  const auto& bucket = dest.bucket;
  BOOST_OUTCOME_TRY(repo.load_index());
  BOOST_OUTCOME_TRY(keys, repo.snapshot_keys(""));
  // Per workspace, which snapshots stay.
  std::map<std::string, std::vector<std::string>> by_ws;
  for (const auto& k : keys) by_ws[snapshot_workspace(repo, k)].push_back(k);
  std::vector<std::string> drop_keys;
  std::set<std::string> referenced;
  for (const auto& [ws, ks] : by_ws) {
    std::vector<Snapshot> snaps;
    for (const auto& k : ks) {
      auto s = repo.load_snapshot(k);
      if (!s) {
        return fail(s.error().code,
                    fmt::format("prune stopped before deleting anything: {} (run `cloudyknight "
                                "backup check`)",
                                s.error().message));
      }
      snaps.push_back(std::move(s.value()));
    }
    std::vector<std::time_t> times;
    for (const auto& s : snaps) times.push_back(s.time);
    auto mask = keep_mask(times, keep);
    for (std::size_t i = 0; i < snaps.size(); ++i) {
      if (mask[i]) {
        for (const auto& f : snaps[i].files) referenced.insert(f.blob);
        report.kept.push_back(info_of(dest, snaps[i]));
      } else {
        drop_keys.push_back(ks[i]);
        report.removed.push_back(info_of(dest, snaps[i]));
      }
    }
  }
  // What stays: packs with any referenced blob (whole), referenced standalone blobs.
  Index kept_index;
  std::set<std::string> kept_packs, kept_blobs, indexed_packs, indexed_blobs;
  for (const auto& idx : repo.indexes()) {
    for (const auto& p : idx.packs) {
      indexed_packs.insert(p.pack);
      bool any = std::any_of(p.blobs.begin(), p.blobs.end(),
                             [&](const IndexBlob& b) { return referenced.contains(b.id); });
      if (any && kept_packs.insert(p.pack).second) kept_index.packs.push_back(p);
    }
    for (const auto& b : idx.blobs) {
      indexed_blobs.insert(b.id);
      if (referenced.contains(b.id) && kept_blobs.insert(b.id).second)
        kept_index.blobs.push_back(b);
    }
  }
  BOOST_OUTCOME_TRY(pack_objects, repo.client().list_objects(bucket, repo.key("packs/")));
  BOOST_OUTCOME_TRY(blob_objects, repo.client().list_objects(bucket, repo.key("blobs/")));
  std::int64_t now_ms = static_cast<std::int64_t>(std::time(nullptr)) * 1000;
  constexpr std::int64_t kYoung = 3600 * 1000;
  std::vector<std::string> data_keys;
  auto consider = [&](const std::vector<s3::ObjectInfo>& objects, const std::set<std::string>& kept,
                      const std::set<std::string>& indexed) {
    for (const auto& o : objects) {
      std::string name = fs::path(o.key).filename().string();
      if (kept.contains(name)) continue;
      // Not indexed and young: a running backup may be about to index it.
      if (!indexed.contains(name) && now_ms - o.mtime_ms < kYoung) continue;
      data_keys.push_back(o.key);
      report.bytes_freed += o.size;
    }
  };
  consider(pack_objects, kept_packs, indexed_packs);
  consider(blob_objects, kept_blobs, indexed_blobs);
  report.objects_deleted = drop_keys.size() + data_keys.size();
  bool index_changes = !data_keys.empty() || repo.index_keys().size() > 1;
  if (index_changes) report.objects_deleted += repo.index_keys().size();
  if (opts.dry_run) return report;
  // 1. snapshots first: nothing then points at what goes next.
  if (!drop_keys.empty()) {
    BOOST_OUTCOME_TRY(repo.client().delete_objects(bucket, drop_keys));
  }
  // 2. one new index for what stays, then the old index objects; 3. the data.
  if (index_changes) {
    auto old_index = repo.index_keys();
    BOOST_OUTCOME_TRY(repo.write_index(kept_index));
    BOOST_OUTCOME_TRY(repo.client().delete_objects(bucket, old_index));
  }
  if (!data_keys.empty()) {
    BOOST_OUTCOME_TRY(repo.client().delete_objects(bucket, data_keys));
  }
  return report;
}

}  // namespace ck::backup
