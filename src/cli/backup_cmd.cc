#include "cli/backup_cmd.h"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "backup/backup.h"
#include "core/hash.h"
#include "cli/common.h"
#include "core/units.h"
#include "core/names.h"
#include "storage/s3/target.h"
#include "storage/sync.h"

namespace ck::cli {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// One status line on stderr, redrawn in place, only on a terminal.
class ProgressLine {
 public:
  ProgressLine() : tty_(::isatty(STDERR_FILENO) == 1) {}
  ~ProgressLine() { clear(); }
  backup::ProgressFn fn() {
    if (!tty_) return {};
    return [this](const backup::Progress& p) {
      std::lock_guard lock(mu_);
      auto now = Clock::now();
      if (now - last_ < std::chrono::milliseconds(100)) return;
      last_ = now;
      std::cerr << fmt::format("\r\033[K{} {} {}: {}/{} files, {}", p.destination, p.workspace,
                               p.phase, p.files_done, p.files_total, format_bytes(p.bytes_done))
                << std::flush;
      drawn_ = true;
    };
  }
  void clear() {
    std::lock_guard lock(mu_);
    if (drawn_) std::cerr << "\r\033[K" << std::flush;
    drawn_ = false;
  }

 private:
  bool tty_;
  bool drawn_ = false;
  std::mutex mu_;
  Clock::time_point last_{};
};

// The destinations a command works on: all, or the one --dest names.
Result<std::vector<backup::Destination>> destinations(const Config& config, const BackupFlags& f) {
  BOOST_OUTCOME_TRY(bc, backup::backup_config(config, env));
  if (bc.destinations.empty()) {
    return fail(Errc::invalid_argument,
                "no backup destination is configured: add backup.destinations to the config, e.g. "
                "destinations: [{name: offsite, url: s3://BUCKET/PREFIX, endpoint: https://...}]");
  }
  if (f.dest.empty()) return bc.destinations;
  BOOST_OUTCOME_TRY(d, backup::find_destination(bc, f.dest));
  return std::vector<backup::Destination>{*d};
}

fs::path cache_dir() { return backup::default_cache_dir(); }

bool is_s3(const Config& c) { return c.storage.kind == "s3"; }

// The workspaces of the configured storage, each as a local folder. S3 storage: pulled into a
// cache folder per workspace first (kept between runs, so only changes are downloaded).
Result<std::vector<backup::WorkspaceSource>> workspace_sources(const Config& config,
                                                               const std::string& only) {
  std::vector<backup::WorkspaceSource> out;
  if (!only.empty()) {
    BOOST_OUTCOME_TRY(validate_workspace_name(only));
  }
  if (!is_s3(config)) {
    fs::path root = config.storage.path;
    std::error_code ec;
    if (!fs::is_directory(root, ec)) {
      return fail(Errc::not_found,
                  fmt::format("the workspaces folder {} does not exist (set storage.path or pass "
                              "--workspaces DIR)",
                              root.string()));
    }
    for (const auto& e : fs::directory_iterator(root, ec)) {
      std::string name = e.path().filename().string();
      if (!e.is_directory() || e.is_symlink() || !is_valid_workspace_name(name)) continue;
      if (!only.empty() && name != only) continue;
      out.push_back({name, e.path()});
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  } else {
    BOOST_OUTCOME_TRY(target, s3::make_target(config.storage, env));
    s3::Client client(target.options);
    std::string root = sync::root_prefix(target.prefix);
    BOOST_OUTCOME_TRY(prefixes, client.list_common_prefixes(target.bucket, root));
    fs::path base = cache_dir() / "s3-source" /
                    stable_hash(fmt::format("{}\n{}\n{}", target.options.endpoint, target.bucket,
                                            target.prefix));
    for (const auto& p : prefixes) {
      std::string name = p.substr(root.size());
      if (!name.empty() && name.back() == '/') name.pop_back();
      if (!is_valid_workspace_name(name) || (!only.empty() && name != only)) continue;
      fs::path dir = base / name;
      std::error_code ec;
      fs::create_directories(dir, ec);
      sync::Location where{&client, target.bucket, sync::workspace_prefix(target.prefix, name)};
      sync::Options so;
      so.delete_extra = true;
      so.index = base / (name + ".index.json");
      auto pulled = sync::pull(where, dir, so);
      if (!pulled) {
        return fail(pulled.error().code, fmt::format("reading workspace {} from the storage "
                                                     "bucket failed: {}",
                                                     name, pulled.error().message));
      }
      out.push_back({name, dir});
    }
  }
  if (!only.empty() && out.empty()) {
    return fail(Errc::not_found, fmt::format("no workspace named {} in the storage", only));
  }
  return out;
}

}  // namespace

int backup_run(const Config& config, const BackupFlags& f) {
  auto dests = destinations(config, f);
  if (!dests) return error(dests.error().message);
  auto sources = workspace_sources(config, f.workspace);
  if (!sources) return error(sources.error().message);
  if (sources.value().empty()) {
    std::cout << "no workspaces to back up\n";
    return 0;
  }
  ProgressLine line;
  backup::BackupOptions o;
  o.key = config.backup.key;
  o.dry_run = f.dry_run;
  o.progress = line.fn();
  auto results = backup::backup_all(dests.value(), sources.value(), o);
  line.clear();
  int rc = 0;
  for (const auto& r : results) {
    for (const auto& rep : r.reports) {
      std::cout << fmt::format("{}{} {}: {} files, {}, {} new ({}), {} objects written, {} ms{}\n",
                               f.dry_run ? "would back up " : "", r.destination, rep.workspace,
                               rep.files, format_bytes(rep.bytes), rep.added_files,
                               format_bytes(rep.added_bytes), rep.objects_written,
                               rep.elapsed.count(),
                               rep.snapshot_id.empty() ? "" : ", snapshot " + rep.snapshot_id);
      for (const auto& w : rep.warnings) std::cerr << "cloudyknight: warning: " << w << "\n";
    }
    if (!r.ok) {
      rc = 1;
      error(fmt::format("backup to destination {} failed: {}", r.destination, r.error));
    }
  }
  return rc;
}

int backup_list(const Config& config, const BackupFlags& f) {
  auto dests = destinations(config, f);
  if (!dests) return error(dests.error().message);
  if (!f.workspace.empty()) {
    if (auto v = validate_workspace_name(f.workspace); !v) return error(v.error().message);
  }
  backup::RepoOptions o;
  o.key = config.backup.key;
  std::vector<backup::SnapshotInfo> all;
  std::vector<std::pair<std::string, std::string>> errors;
  for (const auto& d : dests.value()) {
    auto list = backup::list_snapshots(d, f.workspace, o);
    if (!list) {
      errors.emplace_back(d.name, list.error().message);
      continue;
    }
    all.insert(all.end(), list.value().begin(), list.value().end());
  }
  if (f.json) {
    json out = {{"snapshots", json::array()}, {"errors", json::array()}};
    for (const auto& s : all) {
      out["snapshots"].push_back({{"destination", s.destination},
                                  {"workspace", s.workspace},
                                  {"id", s.id},
                                  {"time", format_utc(s.time)},
                                  {"host", s.host},
                                  {"files", s.files},
                                  {"bytes", s.bytes},
                                  {"added_bytes", s.added_bytes}});
    }
    for (const auto& [d, e] : errors) out["errors"].push_back({{"destination", d}, {"error", e}});
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << fmt::format("{:<14} {:<20} {:<26} {:<19} {:>7} {:>10} {:>10}\n", "DESTINATION",
                             "WORKSPACE", "SNAPSHOT", "TIME", "FILES", "BYTES", "ADDED");
    for (const auto& s : all) {
      std::cout << fmt::format("{:<14} {:<20} {:<26} {:<19} {:>7} {:>10} {:>10}\n", s.destination,
                               s.workspace, s.id, format_local(s.time), s.files, format_bytes(s.bytes),
                               format_bytes(s.added_bytes));
    }
  }
  for (const auto& [d, e] : errors) error(fmt::format("destination {}: {}", d, e));
  return errors.empty() ? 0 : 1;
}

int backup_check(const Config& config, const BackupFlags& f) {
  auto dests = destinations(config, f);
  if (!dests) return error(dests.error().message);
  ProgressLine line;
  backup::CheckOptions o;
  o.key = config.backup.key;
  o.progress = line.fn();
  int rc = 0;
  for (const auto& d : dests.value()) {
    auto r = backup::check(d, o);
    line.clear();
    if (!r) {
      rc = 1;
      error(fmt::format("check of destination {} failed: {}", d.name, r.error().message));
      continue;
    }
    for (const auto& p : r.value().problems) std::cout << d.name << ": " << p << "\n";
    std::size_t bad = 0;
    for (const auto& s : r.value().snapshots) {
      if (s.problems.empty()) continue;
      ++bad;
      for (const auto& p : s.problems) {
        std::cout << fmt::format("{} {} {}: {}\n", d.name, s.workspace, s.id, p);
      }
    }
    std::cout << fmt::format("{}: {} snapshots, {} damaged; {} blobs verified, {} read\n", d.name,
                             r.value().snapshots.size(), bad, r.value().blobs_checked,
                             format_bytes(r.value().bytes_read));
    if (!r.value().ok()) {
      rc = 1;
      error(
          fmt::format("destination {} has damaged snapshots (listed above): restore them from "
                      "another destination, or prune them",
                      d.name));
    }
  }
  return rc;
}

int backup_prune(const Config& config, const BackupFlags& f) {
  auto dests = destinations(config, f);
  if (!dests) return error(dests.error().message);
  auto bc = backup::backup_config(config, env);
  backup::PruneOptions o;
  o.key = config.backup.key;
  o.dry_run = f.dry_run;
  int rc = 0;
  for (const auto& d : dests.value()) {
    auto r = backup::prune(d, bc.value().keep, o);
    if (!r) {
      rc = 1;
      error(fmt::format("prune of destination {} failed: {}", d.name, r.error().message));
      continue;
    }
    for (const auto& s : r.value().removed) {
      std::cout << fmt::format("{}{} {} {} ({})\n", f.dry_run ? "would remove " : "removed ",
                               d.name, s.workspace, s.id, format_local(s.time));
    }
    std::cout << fmt::format("{}: kept {} snapshots, {} {} objects ({})\n", d.name,
                             r.value().kept.size(), f.dry_run ? "would delete" : "deleted",
                             r.value().objects_deleted, format_bytes(r.value().bytes_freed));
  }
  return rc;
}

int restore_run(const Config& config, const BackupFlags& f) {
  auto bc = backup::backup_config(config, env);
  if (!bc) return error(bc.error().message);
  if (bc.value().destinations.empty()) {
    return error("no backup destination is configured: add backup.destinations to the config");
  }
  const backup::Destination* dest = &bc.value().destinations.front();
  if (!f.dest.empty()) {
    auto d = backup::find_destination(bc.value(), f.dest);
    if (!d) return error(d.error().message);
    dest = d.value();
  }
  backup::RestoreOptions o;
  o.key = config.backup.key;
  o.dry_run = f.dry_run;
  o.snapshot = f.snapshot;
  if (f.mode == "mirror") {
    o.mode = backup::RestoreMode::mirror;
  } else if (f.mode != "merge") {
    return error(
        fmt::format("--mode {}: write --mode mirror (the workspace becomes exactly the "
                    "snapshot) or --mode merge (add and overwrite only)",
                    f.mode));
  }
  if (!f.point_in_time.empty()) {
    if (!f.snapshot.empty()) return error("give --point-in-time or --snapshot, not both");
    auto t = backup::parse_point_in_time(f.point_in_time);
    if (!t) return error(t.error().message);
    o.point_in_time = t.value();
  }
  std::vector<std::string> names;
  if (!f.workspace.empty()) {
    if (auto v = validate_workspace_name(f.workspace); !v) return error(v.error().message);
    names.push_back(f.workspace);
  } else {
    auto list = backup::list_snapshots(*dest, "", o);
    if (!list) return error(list.error().message);
    std::set<std::string> seen;
    for (const auto& s : list.value()) {
      if (seen.insert(s.workspace).second) names.push_back(s.workspace);
    }
    if (names.empty()) {
      return error(fmt::format("destination {} holds no backups yet", dest->name));
    }
  }
  ProgressLine line;
  o.progress = line.fn();
  int rc = 0;
  for (const auto& name : names) {
    Result<backup::RestoreReport> r = fail(Errc::internal, "");
    std::string where;
    if (!f.to.empty()) {
      o.target = names.size() == 1 && !f.workspace.empty() ? fs::path(f.to) : fs::path(f.to) / name;
      where = o.target.string();
      r = backup::restore(*dest, name, o);
    } else if (!is_s3(config)) {
      // Dir storage: straight into the workspace folder (the daemon's watcher sees the change).
      o.target = fs::path(config.storage.path) / name;
      where = o.target.string();
      r = backup::restore(*dest, name, o);
    } else {
      // S3 storage: through a temporary folder holding the bucket's current source.
      auto target = s3::make_target(config.storage, env);
      if (!target) return error(target.error().message);
      s3::Client client(target.value().options);
      sync::Location loc{&client, target.value().bucket,
                         sync::workspace_prefix(target.value().prefix, name)};
      where = "s3://" + target.value().bucket + "/" + loc.key_prefix;
      r = backup::restore_to_bucket(*dest, name, o, loc);
    }
    line.clear();
    if (!r) {
      rc = 1;
      error(fmt::format("restore of workspace {} from destination {} failed: {}", name, dest->name,
                        r.error().message));
      continue;
    }
    for (const auto& c : r.value().changes) {
      bool write = c.op == backup::RestoreChange::Op::write;
      std::cout << fmt::format("{}{} {}{}\n", f.dry_run ? "would " : "", write ? "write" : "delete",
                               c.path, write ? " (" + format_bytes(c.size) + ")" : "");
    }
    std::cout << fmt::format("{}{} from {} snapshot {} into {}: {} changed, {} unchanged\n",
                             f.dry_run ? "would restore " : "restored ", name, dest->name,
                             r.value().snapshot_id, where, r.value().changes.size(),
                             r.value().unchanged);
  }
  return rc;
}

}  // namespace ck::cli
