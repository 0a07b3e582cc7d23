#include "backup/mirror_mode.h"

#include "core/units.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "backup/format.h"
#include "core/hash.h"
#include "storage/sync.h"

namespace ck::backup {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string marker_prefix(const Destination& d) {
  return sync::root_prefix(d.prefix) + ".cloudyknight/backup/";
}

}  // namespace

Result<BackupReport> mirror_backup(const Destination& dest, const std::string& workspace,
                                   const fs::path& dir, const BackupOptions& opts) {
  auto started = std::chrono::steady_clock::now();
  BackupReport report;
  report.destination = dest.name;
  report.workspace = workspace;
  s3::Client client(dest.client);
  BOOST_OUTCOME_TRY(tree, list_source_files(dir, opts.ignore));
  report.files = tree.files.size();
  for (const auto& f : tree.files) report.bytes += f.size;
  sync::Location where{&client, dest.bucket, sync::workspace_prefix(dest.prefix, workspace)};
  sync::Options so;
  so.dry_run = opts.dry_run;
  so.delete_extra = true;
  so.ignore = opts.ignore;
  fs::path base = opts.cache_dir.empty() ? default_cache_dir() : opts.cache_dir;
  so.index =
      base / "mirror" /
      (stable_hash(fmt::format("{}\n{}\n{}", dest.client.endpoint, dest.bucket, where.key_prefix)) +
       "-" + workspace + ".json");
  std::error_code ec;
  fs::create_directories(so.index.parent_path(), ec);
  if (opts.progress) {
    so.on_progress = [&](const sync::Progress& p) {
      opts.progress(Progress{dest.name, workspace, "upload", p.files_done, p.files_total,
                             p.bytes_done, p.bytes_total});
    };
  }
  auto pushed = sync::push(where, dir, so);
  if (!pushed) {
    return fail(pushed.error().code,
                fmt::format("mirroring workspace {} to destination {} failed: {}", workspace,
                            dest.name, pushed.error().message));
  }
  for (const auto& a : pushed.value().actions) {
    if (a.op == sync::Op::upload) {
      report.added_files++;
      report.added_bytes += a.size;
      if (!opts.dry_run) report.objects_written++;
    }
  }
  if (!opts.dry_run) {
    json marker = {{"workspace", workspace},
                   {"time", format_utc(std::time(nullptr))},
                   {"files", report.files},
                   {"bytes", report.bytes},
                   {"added_bytes", report.added_bytes}};
    auto put = client.put_object(dest.bucket, marker_prefix(dest) + workspace + ".json",
                                 marker.dump(), "application/json");
    if (!put) {
      return fail(put.error().code, fmt::format("writing the backup marker of {} to destination {} "
                                                "failed: {}",
                                                workspace, dest.name, put.error().message));
    }
    report.objects_written++;
    report.snapshot_id = "latest";
  }
  report.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);
  return report;
}

Result<std::vector<SnapshotInfo>> mirror_list(const Destination& dest,
                                              const std::string& workspace) {
  s3::Client client(dest.client);
  std::string prefix = marker_prefix(dest);
  BOOST_OUTCOME_TRY(objects, client.list_objects(dest.bucket, prefix + workspace));
  std::vector<SnapshotInfo> out;
  for (const auto& o : objects) {
    std::string name = o.key.substr(prefix.size());
    if (!name.ends_with(".json") || name.find('/') != std::string::npos) continue;
    name.resize(name.size() - 5);
    if (!workspace.empty() && name != workspace) continue;
    if (o.size > (64 << 10)) continue;
    BOOST_OUTCOME_TRY(text, client.get_object(dest.bucket, o.key));
    json j = json::parse(text, nullptr, false);
    if (!j.is_object()) continue;
    SnapshotInfo s;
    s.destination = dest.name;
    s.workspace = name;
    s.id = "latest";
    if (auto t = j.find("time"); t != j.end() && t->is_string()) {
      s.time = parse_rfc3339(t->get<std::string>()).value_or(0);
    }
    if (auto f = j.find("files"); f != j.end() && f->is_number_unsigned()) s.files = *f;
    if (auto b = j.find("bytes"); b != j.end() && b->is_number_unsigned()) s.bytes = *b;
    if (auto a = j.find("added_bytes"); a != j.end() && a->is_number_unsigned()) s.added_bytes = *a;
    out.push_back(std::move(s));
  }
  return out;
}

Result<void> mirror_pull(const Destination& dest, const std::string& workspace, const fs::path& dir,
                         const RepoOptions& opts) {
  s3::Client client(dest.client);
  auto head = client.head_object(dest.bucket, marker_prefix(dest) + workspace + ".json");
  if (!head) return head.error();
  if (!head.value()) {
    return fail(Errc::not_found,
                fmt::format("backup destination {} ({}) holds no copy of workspace "
                            "{} (run `cloudyknight backup` first)",
                            dest.name, dest.url(), workspace));
  }
  sync::Location where{&client, dest.bucket, sync::workspace_prefix(dest.prefix, workspace)};
  sync::Options so;
  so.ignore.builtins = false;  // the copy holds exactly what was backed up
  if (opts.progress) {
    so.on_progress = [&](const sync::Progress& p) {
      opts.progress(Progress{dest.name, workspace, "download", p.files_done, p.files_total,
                             p.bytes_done, p.bytes_total});
    };
  }
  auto pulled = sync::pull(where, dir, so);
  if (!pulled) {
    return fail(pulled.error().code, fmt::format("downloading workspace {} from destination {} "
                                                 "failed: {}",
                                                 workspace, dest.name, pulled.error().message));
  }
  return outcome::success();
}

}  // namespace ck::backup
