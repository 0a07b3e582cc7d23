#include "cli/workspace_cmd.h"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "cli/watch.h"
#include "core/units.h"
#include "core/names.h"
#include "storage/s3/target.h"
#include "storage/sync.h"
#include "workspace/workspace.h"

namespace ck::cli {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

/// The S3 storage the CLI works on: the config's (storage.kind: s3) or --storage s3://...
struct Remote {
  s3::Target target;
  std::unique_ptr<s3::Client> client;

  sync::Location location(const std::string& name) const {
    return {client.get(), target.bucket, sync::workspace_prefix(target.prefix, name)};
  }
  std::string url(const std::string& name) const {
    return "s3://" + target.bucket + "/" + sync::workspace_prefix(target.prefix, name);
  }
};

Result<Remote> open_remote(const Config& config) {
  if (config.storage.kind != "s3") {
    return fail(Errc::invalid_argument,
                fmt::format("the workspace commands move source to and from S3, but storage.kind is '{}': "
                            "pass --storage s3://BUCKET/PREFIX (and --s3-endpoint URL for MinIO or other "
                            "S3-compatible servers), or set storage.kind: s3 in the config",
                            config.storage.kind));
  }
  BOOST_OUTCOME_TRY(target, s3::make_target(config.storage, env));
  Remote r{std::move(target), nullptr};
  r.client = std::make_unique<s3::Client>(r.target.options);
  return r;
}

/// Shows what a transfer does: a progress bar on a terminal, one line per action otherwise.
class Reporter {
 public:
  Reporter(bool dry_run, bool quiet_when_tty = false)
      : tty_(::isatty(STDOUT_FILENO) == 1), dry_run_(dry_run), quiet_(quiet_when_tty), started_(Clock::now()) {}

  void action(const sync::Action& a) {
    if (tty_ && !dry_run_) return;  // the bar shows it
    std::string line = fmt::format("{}{} {}", dry_run_ ? "would " : "", sync::op_name(a.op), a.path);
    if (a.op == sync::Op::upload || a.op == sync::Op::download) {
      line += fmt::format(" ({}, {})", format_bytes(a.size), a.reason);
    }
    std::cout << line << '\n';
  }

  void progress(const sync::Progress& p) {
    if (!tty_ || dry_run_ || quiet_) return;
    auto now = Clock::now();
    if (p.files_done != p.files_total && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    double secs = std::chrono::duration<double>(now - started_).count();
    double rate = secs > 0 ? static_cast<double>(p.bytes_done) / secs : 0;
    constexpr int kWidth = 24;
    int filled = p.files_total == 0 ? kWidth : static_cast<int>(kWidth * p.files_done / p.files_total);
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.resize(kWidth, '.');
    std::cout << fmt::format("\r[{}] {}/{} files  {}/{}  {}/s   ", bar, p.files_done, p.files_total,
                             format_bytes(p.bytes_done), format_bytes(p.bytes_total),
                             format_bytes(static_cast<std::uint64_t>(rate)))
              << std::flush;
    drawn_ = true;
  }

  void end_bar() {
    if (drawn_) std::cout << "\r\033[K" << std::flush;
    drawn_ = false;
  }

  sync::Options hook(sync::Options opts) {
    opts.on_action = [this](const sync::Action& a) { action(a); };
    opts.on_progress = [this](const sync::Progress& p) { progress(p); };
    return opts;
  }

 private:
  bool tty_, dry_run_, quiet_;
  bool drawn_ = false;
  Clock::time_point started_;
  Clock::time_point last_draw_{};
};

std::string summary(const std::string& name, const sync::Report& r, bool upload, bool dry_run,
                    const std::string& where) {
  std::size_t moved = 0, deleted = 0;
  for (const auto& a : r.actions) {
    if (a.op == sync::Op::upload || a.op == sync::Op::download) ++moved;
    else ++deleted;
  }
  return fmt::format("{}: {}{} {}, {} deleted, {} unchanged, {} in {:.2f} s ({})", name,
                     dry_run ? "would have " : "", moved, upload ? "uploaded" : "downloaded", deleted,
                     r.unchanged, format_bytes(r.bytes), std::chrono::duration<double>(r.elapsed).count(),
                     where);
}

sync::Options transfer_options(const Remote& remote, const std::string& name, const fs::path& dir,
                               const TransferFlags& flags) {
  sync::Options o;
  o.concurrency = std::max(1, flags.jobs);
  o.dry_run = flags.dry_run;
  o.delete_extra = flags.delete_extra;
  if (flags.include_env) {
    // Asked for explicitly: .env files go up even where an ignore file excludes them.
    o.ignore.allow_env = true;
    o.ignore.extra_patterns.push_back("!.env*");
  }
  o.ignore.include_lock = !flags.no_lock;
  o.index = sync::default_index_path(remote.target.options.endpoint, remote.target.bucket,
                                     sync::workspace_prefix(remote.target.prefix, name), dir);
  return o;
}

/// One upload pass; prints its actions and summary. `quiet_noop` (watch mode): nothing is
/// printed when nothing changed.
bool upload_once(const Remote& remote, const std::string& name, const fs::path& dir, const TransferFlags& flags,
                 bool quiet_noop) {
  Reporter rep(flags.dry_run, quiet_noop);
  sync::Options opts = rep.hook(transfer_options(remote, name, dir, flags));
  auto r = sync::push(remote.location(name), dir, opts);
  rep.end_bar();
  if (r.has_error()) {
    error(fmt::format("uploading {} to {} failed: {}", name, remote.url(name), r.error().message));
    return false;
  }
  const sync::Report& report = r.value();
  for (const auto& w : report.warnings) std::cerr << "cloudyknight: warning: " << w << "\n";
  if (report.aborted_uploads > 0) {
    std::cerr << fmt::format("cloudyknight: aborted {} unfinished multipart upload(s) an earlier run left\n",
                             report.aborted_uploads);
  }
  if (!quiet_noop || !report.actions.empty()) {
    std::cout << summary(name, report, true, flags.dry_run, remote.url(name)) << std::endl;
  }
  if (flags.dry_run) return true;
  if (report.actions.empty()) {
    // Nothing changed: keep the manifest (and its "updated") unless there is none yet.
    auto existing = remote.client->head_object(remote.target.bucket, sync::manifest_key(remote.target.prefix, name));
    if (existing.has_error() || existing.value().has_value()) return true;
  }
  // The manifest describes the whole workspace as uploaded now.
  auto tree = list_source_files(dir, opts.ignore);
  std::size_t files = 0;
  std::uint64_t bytes = 0;
  if (tree.has_value()) {
    files = tree.value().files.size();
    for (const auto& f : tree.value().files) bytes += f.size;
  }
  if (auto m = sync::write_manifest(*remote.client, remote.target.bucket, remote.target.prefix, name,
                                    dir, files, bytes);
      m.has_error()) {
    std::cerr << "cloudyknight: warning: the source was uploaded but its manifest was not: "
              << m.error().message << "\n";
  }
  return true;
}

Result<void> check_name(const std::string& name) { return validate_workspace_name(name); }

/// The remote and one workspace's objects, for the commands that start from what is stored.
struct Stored {
  Remote remote;
  sync::Location where;
  std::vector<s3::ObjectInfo> objects;
};

Result<Stored> list_stored(const Config& config, const std::string& name) {
  BOOST_OUTCOME_TRY(remote, open_remote(config));
  sync::Location where = remote.location(name);
  BOOST_OUTCOME_TRY(objects, remote.client->list_objects(where.bucket, where.key_prefix));
  return Stored{std::move(remote), where, std::move(objects)};
}

std::string no_such_workspace(const std::string& name, const Remote& remote) {
  return fmt::format("there is no workspace '{}' in {} (see `cloudyknight workspace list`)", name,
                     remote.target.url());
}

}  // namespace

int workspace_upload(const Config& config, const std::string& name, const fs::path& dir,
                     const TransferFlags& flags) {
  if (auto v = check_name(name); v.has_error()) return error(v.error().message, 2);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return error(fmt::format("{} is not a folder: give the folder that holds {}'s source", dir.string(), name), 2);
  }
  auto remote = open_remote(config);
  if (remote.has_error()) return error(remote.error().message);
  if (flags.watch) {
    return watch_folder(dir, [&](bool quiet) { return upload_once(remote.value(), name, dir, flags, quiet); });
  }
  return upload_once(remote.value(), name, dir, flags, false) ? 0 : 1;
}

int workspace_download(const Config& config, const std::string& name, const fs::path& dir,
                       const TransferFlags& flags) {
  if (auto v = check_name(name); v.has_error()) return error(v.error().message, 2);
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) {
    return error(fmt::format("{} exists and is not a folder: give a folder to download {} into", dir.string(), name),
                 2);
  }
  auto stored = list_stored(config, name);
  if (stored.has_error()) return error(stored.error().message);
  const Remote& rm = stored.value().remote;
  const sync::Location& where = stored.value().where;
  if (stored.value().objects.empty()) return error(no_such_workspace(name, rm));
  Reporter rep(flags.dry_run);
  sync::Options opts = rep.hook(transfer_options(rm, name, dir, flags));
  opts.listing = &stored.value().objects;
  auto r = sync::pull(where, dir, opts);
  rep.end_bar();
  if (r.has_error()) {
    return error(fmt::format("downloading {} from {} failed: {}", name, rm.url(name), r.error().message));
  }
  for (const auto& w : r.value().warnings) std::cerr << "cloudyknight: warning: " << w << "\n";
  std::cout << summary(name, r.value(), false, flags.dry_run, rm.url(name)) << std::endl;
  return 0;
}

int workspace_gc(const Config& config, const std::string& name, const fs::path& dir, bool all, bool dry_run) {
  if (auto v = check_name(name); v.has_error()) return error(v.error().message, 2);
  std::error_code ec;
  if (!dir.empty() && !fs::is_directory(dir, ec)) {
    return error(fmt::format("{} is not a folder: give the folder {} was uploaded from (or none)", dir.string(), name),
                 2);
  }
  auto remote = open_remote(config);
  if (remote.has_error()) return error(remote.error().message);
  const Remote& rm = remote.value();
  fs::path index;
  if (!dir.empty()) {
    index = sync::default_index_path(rm.target.options.endpoint, rm.target.bucket,
                                     sync::workspace_prefix(rm.target.prefix, name), dir);
  }
  auto r = sync::abort_stale_uploads(rm.location(name), index, std::chrono::hours(1), all, dry_run);
  if (r.has_error()) {
    return error(fmt::format("cannot clean up the multipart uploads of {}: {} (give the folder it was uploaded "
                             "from, whose index records the uploads it started)",
                             rm.url(name), r.error().message));
  }
  for (const auto& w : r.value().warnings) std::cerr << "cloudyknight: warning: " << w << "\n";
  for (const auto& u : r.value().aborted) {
    std::cout << fmt::format("{} {} ({}; {})", dry_run ? "would abort" : "aborted", u.key, u.upload_id, u.why)
              << "\n";
  }
  std::cout << fmt::format("{}: {} {} unfinished multipart upload(s)", rm.url(name),
                           dry_run ? "would abort" : "aborted", r.value().aborted.size())
            << std::endl;
  return 0;
}

int workspace_list(const Config& config, bool json) {
  auto remote = open_remote(config);
  if (remote.has_error()) return error(remote.error().message);
  const Remote& rm = remote.value();
  std::string root = sync::root_prefix(rm.target.prefix);
  // One listing of everything gives files and bytes per workspace; manifests add the rest.
  auto objects = rm.client->list_objects(rm.target.bucket, root);
  if (objects.has_error()) return error(objects.error().message);
  struct Row {
    std::size_t files = 0;
    std::uint64_t bytes = 0;
    bool manifest = false;
  };
  std::map<std::string, Row> rows;
  std::string manifests = root + ".cloudyknight/manifests/";
  for (const auto& o : objects.value()) {
    std::string rest = o.key.substr(root.size());
    if (o.key.starts_with(manifests) && o.key.ends_with(".json")) {
      std::string name = o.key.substr(manifests.size(), o.key.size() - manifests.size() - 5);
      if (is_valid_workspace_name(name)) rows[name].manifest = true;
      continue;
    }
    auto slash = rest.find('/');
    if (slash == std::string::npos) continue;
    std::string name = rest.substr(0, slash);
    if (!is_valid_workspace_name(name)) continue;
    rows[name].files++;
    rows[name].bytes += o.size;
  }
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [name, row] : rows) {
    if (row.files == 0) continue;  // a manifest without source: deleted by another tool
    nlohmann::json item = {{"name", name}, {"files", row.files}, {"bytes", row.bytes},
                           {"type", nullptr}, {"description", ""}, {"updated", nullptr}};
    if (row.manifest) {
      auto text = rm.client->get_object(rm.target.bucket, sync::manifest_key(rm.target.prefix, name));
      if (text.has_value()) {
        auto doc = nlohmann::json::parse(text.value(), nullptr, false);
        if (doc.is_object()) {
          for (const char* key : {"type", "description", "updated", "icon"}) {
            if (doc.contains(key) && doc[key].is_string()) item[key] = doc[key];
          }
        }
      }
    }
    out.push_back(std::move(item));
  }
  if (json) {
    std::cout << out.dump(2) << std::endl;
    return 0;
  }
  if (out.empty()) {
    std::cout << fmt::format("no workspaces in {} yet: upload one with `cloudyknight workspace upload NAME DIR`",
                             rm.target.url())
              << std::endl;
    return 0;
  }
  std::cout << fmt::format("{:<24} {:<10} {:>7} {:>10}  {:<20}  {}\n", "NAME", "TYPE", "FILES", "SIZE", "UPDATED",
                           "DESCRIPTION");
  for (const auto& item : out) {
    std::cout << fmt::format("{:<24} {:<10} {:>7} {:>10}  {:<20}  {}\n", item["name"].get<std::string>(),
                             item["type"].is_string() ? item["type"].get<std::string>() : "-",
                             item["files"].get<std::size_t>(), format_bytes(item["bytes"].get<std::uint64_t>()),
                             item["updated"].is_string() ? item["updated"].get<std::string>() : "-",
                             item["description"].get<std::string>());
  }
  std::cout << std::flush;
  return 0;
}

int workspace_delete(const Config& config, const std::string& name, bool dry_run) {
  if (auto v = check_name(name); v.has_error()) return error(v.error().message, 2);
  auto stored = list_stored(config, name);
  if (stored.has_error()) return error(stored.error().message);
  const Remote& rm = stored.value().remote;
  const sync::Location& where = stored.value().where;
  const auto& objects = stored.value().objects;
  std::string manifest = sync::manifest_key(rm.target.prefix, name);
  auto has_manifest = rm.client->head_object(where.bucket, manifest);
  if (has_manifest.has_error()) return error(has_manifest.error().message);
  std::vector<std::string> keys;
  std::uint64_t bytes = 0;
  for (const auto& o : objects) {
    keys.push_back(o.key);
    bytes += o.size;
  }
  if (keys.empty() && !has_manifest.value()) {
    return error(no_such_workspace(name, rm));
  }
  std::size_t files = keys.size();
  if (has_manifest.value()) keys.push_back(manifest);
  if (!dry_run) {
    if (auto r = rm.client->delete_objects(where.bucket, keys); r.has_error()) {
      return error(fmt::format("deleting {} failed: {}", name, r.error().message));
    }
  }
  for (const auto& o : objects) {
    std::cout << (dry_run ? "would delete " : "delete ") << o.key.substr(where.key_prefix.size()) << '\n';
  }
  std::cout << fmt::format("{}: {}deleted {} files ({}) from {}", name, dry_run ? "would have " : "", files,
                           format_bytes(bytes), rm.url(name))
            << std::endl;
  return 0;
}

}  // namespace ck::cli
