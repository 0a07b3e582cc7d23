#include "daemon/cleanup.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/hash.h"
#include "core/log.h"
#include "core/units.h"
#include "http/asio.h"
#include "metrics/metrics.h"
#include "runtime/docker/engine.h"
#include "runtime/docker/gc.h"

namespace ck {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

auto logger() { return log::get("cleanup"); }

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct CleanupMetrics {
  metrics::Family<metrics::Counter>& reclaimed;
  metrics::Family<metrics::Counter>& runs;
};

CleanupMetrics& cleanup_metrics() {
  static CleanupMetrics m = [] {
    auto& g = metrics::global();
    return CleanupMetrics{
        g.counter("cloudyknight_cleanup_reclaimed_bytes_total",
                  "Bytes the cleanup jobs gave back, by kind (volume, deps, image, trash, log, state).", {"kind"}),
        g.counter("cloudyknight_cleanup_runs_total", "Cleanup runs by result (ok, error).", {"result"})};
  }();
  return m;
}

constexpr JobPolicy kCleanupPolicy{3, std::chrono::seconds(30), std::chrono::minutes(10)};
constexpr const char* kLastKey = "cleanup.last";
constexpr const char* kVacuumKey = "cleanup.vacuum_ms";
constexpr std::size_t kMaxReportedItems = 1000;

bool scheduled(const Job& j) {
  json p = json::parse(j.payload, nullptr, false);
  return p.is_object() && p.value("scheduled", false);
}

std::string age_text(std::int64_t seconds) {
  return format_duration(std::chrono::seconds(std::max<std::int64_t>(seconds, 0)));
}

// Bytes a file or folder takes (its files' sizes; symlinks are not followed).
std::uint64_t tree_bytes(const fs::path& p) {
  std::error_code ec;
  auto st = fs::symlink_status(p, ec);
  if (ec) return 0;
  if (!fs::is_directory(st)) return fs::is_regular_file(st) ? fs::file_size(p, ec) : 0;
  std::uint64_t total = 0;
  for (fs::recursive_directory_iterator it(p, fs::directory_options::skip_permission_denied, ec), end;
       !ec && it != end; it.increment(ec)) {
    std::error_code e2;
    if (it->is_regular_file(e2) && !it->is_symlink(e2)) total += it->file_size(e2);
  }
  return total;
}

std::uint64_t file_size_or_0(const fs::path& p) {
  std::error_code ec;
  auto n = fs::file_size(p, ec);
  return ec ? 0 : n;
}

}  // namespace

CleanupSettings cleanup_settings(const Config& c) {
  CleanupSettings s;
  s.interval = c.runtime.cleanup_interval;
  s.deps_keep = c.runtime.deps_keep;
  s.deps_max_size = c.runtime.deps_max_size;
  s.trash_keep = c.trash_keep;
  s.keep_history = c.keep_history;
  s.log_max_size = c.log_max_size;
  s.log_keep = c.log_keep;
  return s;
}

std::uint64_t CleanupReport::bytes() const {
  std::uint64_t total = 0;
  for (const auto& i : items) {
    if (i.error.empty()) total += i.bytes;
  }
  return total;
}

json cleanup_report_json(const CleanupReport& r) {
  json items = json::array();
  json by_kind = json::object();
  for (const auto& i : r.items) {
    auto& k = by_kind[i.kind];
    if (k.is_null()) k = {{"count", 0}, {"bytes", 0}, {"failed", 0}};
    if (i.error.empty()) {
      k["count"] = k["count"].get<int>() + 1;
      k["bytes"] = k["bytes"].get<std::uint64_t>() + i.bytes;
    } else {
      k["failed"] = k["failed"].get<int>() + 1;
    }
    if (items.size() >= kMaxReportedItems) continue;
    json item = {{"kind", i.kind}, {"name", i.name}, {"bytes", i.bytes}, {"reason", i.reason}};
    if (!i.error.empty()) item["error"] = i.error;
    items.push_back(std::move(item));
  }
  json out = {{"dry_run", r.dry_run},
              {"started_ms", r.started_ms},
              {"finished_ms", r.finished_ms},
              {"started", format_utc(static_cast<std::time_t>(r.started_ms / 1000))},
              {"bytes", r.bytes()},
              {"by_kind", std::move(by_kind)},
              {"items", std::move(items)},
              {"errors", r.errors}};
  if (r.items.size() > kMaxReportedItems) out["items_omitted"] = r.items.size() - kMaxReportedItems;
  return out;
}

std::string cleanup_report_text(const CleanupReport& r) {
  std::string out;
  const char* verb = r.dry_run ? "would remove" : "removed";
  for (const auto& i : r.items) {
    if (!i.error.empty()) {
      out += fmt::format("could not remove {} {}: {}\n", i.kind, i.name, i.error);
    } else {
      out += fmt::format("{} {} {} ({}): {}\n", verb, i.kind, i.name, format_bytes(i.bytes), i.reason);
    }
  }
  for (const auto& e : r.errors) out += fmt::format("error: {}\n", e);
  out += fmt::format("{} {} item(s), {} in all\n", r.dry_run ? "would reclaim:" : "reclaimed:",
                     std::count_if(r.items.begin(), r.items.end(), [](const Reclaimed& i) { return i.error.empty(); }),
                     format_bytes(r.bytes()));
  return out;
}

std::vector<Reclaimed> clean_trash(const fs::path& trash, Duration keep, bool dry_run) {
  std::vector<Reclaimed> out;
  std::error_code ec;
  const std::time_t now = std::time(nullptr);
  const auto keep_s = std::chrono::duration_cast<std::chrono::seconds>(keep).count();
  for (fs::directory_iterator it(trash, ec), end; !ec && it != end; it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0) continue;
    // ctime: when it was moved here (a rename changes it; nothing else touches the trash).
    auto age = now - st.st_ctim.tv_sec;
    if (age < keep_s) continue;
    Reclaimed r{"trash", it->path().filename().string(), tree_bytes(it->path()),
                fmt::format("in the trash for {} (data.trash_keep {})", age_text(age), format_duration(keep)), ""};
    if (!dry_run) {
      std::error_code e2;
      fs::remove_all(it->path(), e2);
      if (e2) {
        r.error = fmt::format("{} (remove it by hand)", e2.message());
        r.bytes = 0;
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<Reclaimed> rotate_logs(const fs::path& logs, std::uint64_t max_size, int keep, bool dry_run) {
  std::vector<Reclaimed> out;
  std::error_code ec;
  auto rotated = [](const fs::path& log, int n) {
    fs::path p = log;
    p += "." + std::to_string(n);
    return p;
  };
  for (fs::directory_iterator it(logs, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& log = it->path();
    std::error_code e2;
    if (log.extension() != ".log" || !it->is_regular_file(e2) || it->is_symlink(e2)) continue;
    std::string name = log.filename().string();
    // Rotated files past log.keep (the setting was lowered): go.
    for (int n = std::max(keep, 0) + 1; n <= 100; ++n) {
      fs::path extra = rotated(log, n);
      if (!fs::exists(fs::symlink_status(extra, e2))) continue;
      Reclaimed r{"log", extra.filename().string(), file_size_or_0(extra),
                  fmt::format("more rotated files than log.keep {}", keep), ""};
      if (!dry_run && !fs::remove(extra, e2) && e2) r.error = e2.message();
      out.push_back(std::move(r));
    }
    std::uint64_t size = file_size_or_0(log);
    if (size <= max_size) continue;
    std::string why = fmt::format("{} is {}, over log.max_size {}", name, format_bytes(size), format_bytes(max_size));
    if (keep <= 0) {
      Reclaimed r{"log", name, size, why + "; emptied (log.keep 0)", ""};
      if (!dry_run && ::truncate(log.c_str(), 0) != 0) r.error = std::strerror(errno);
      out.push_back(std::move(r));
      continue;
    }
    fs::path oldest = rotated(log, keep);
    if (fs::exists(fs::symlink_status(oldest, e2))) {
      Reclaimed r{"log", oldest.filename().string(), file_size_or_0(oldest),
                  fmt::format("the oldest of log.keep {} rotated files", keep), ""};
      if (!dry_run && !fs::remove(oldest, e2) && e2) r.error = e2.message();
      out.push_back(std::move(r));
    }
    Reclaimed r{"log", name, 0, why + fmt::format("; rotated to {}.1", name), ""};
    if (!dry_run) {
      for (int n = keep - 1; n >= 1; --n) {
        fs::path from = rotated(log, n);
        if (fs::exists(fs::symlink_status(from, e2))) fs::rename(from, rotated(log, n + 1), e2);
      }
      // Copy, then truncate: the runtime holds the log open (O_APPEND) and keeps writing to it.
      fs::copy_file(log, rotated(log, 1), fs::copy_options::overwrite_existing, e2);
      if (e2) {
        r.error = fmt::format("cannot copy it to {}.1: {}", name, e2.message());
      } else if (::truncate(log.c_str(), 0) != 0) {
        r.error = fmt::format("cannot truncate it: {}", std::strerror(errno));
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

Result<std::vector<Reclaimed>> clean_state(StateDb& db, Duration keep, bool vacuum, bool dry_run) {
  std::vector<Reclaimed> out;
  auto cut = now_ms() - keep.count();
  BOOST_OUTCOME_TRY(pruned, db.prune_history(cut, dry_run));
  std::string older = fmt::format("older than state.keep_history {}", format_duration(keep));
  if (pruned.sessions > 0) {
    out.push_back({"state", "sessions", 0, fmt::format("{} closed session(s) {}", pruned.sessions, older), ""});
  }
  if (pruned.statuses > 0) {
    out.push_back({"state", "status_history", 0, fmt::format("{} status change(s) {}", pruned.statuses, older), ""});
  }
  if (!vacuum) return out;
  BOOST_OUTCOME_TRY(free, db.free_bytes());
  // After deletes (or with a lot free from earlier ones): the file gives its free pages back.
  if (free == 0 || (pruned.sessions + pruned.statuses == 0 && free < (1u << 20))) return out;
  if (dry_run) {
    out.push_back({"state", "vacuum", free, "VACUUM of state.db (its free pages)", ""});
    return out;
  }
  auto shrunk = db.vacuum();
  if (shrunk.has_error()) {
    out.push_back({"state", "vacuum", 0, "VACUUM of state.db", shrunk.error().message});
  } else {
    out.push_back({"state", "vacuum", shrunk.value(), "VACUUM of state.db (its free pages)", ""});
  }
  return out;
}

void clean_data(const CleanupSettings& s, const fs::path& data, StateDb* db, bool dry_run, CleanupReport& report) {
  auto add = [&](std::vector<Reclaimed> items) {
    for (auto& i : items) report.items.push_back(std::move(i));
  };
  add(clean_trash(data / "trash", s.trash_keep, dry_run));
  add(rotate_logs(data / "logs", s.log_max_size, s.log_keep, dry_run));
  if (!db) return;
  // A VACUUM at most once a day.
  bool vacuum = true;
  if (auto last = db->setting(kVacuumKey); last.has_value() && last.value()) {
    std::int64_t at = std::atoll(last.value()->c_str());
    vacuum = now_ms() - at >= std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::hours(24)).count();
  }
  auto st = clean_state(*db, s.keep_history, vacuum, dry_run);
  if (st.has_error()) {
    report.errors.push_back("state.db: " + st.error().message);
    return;
  }
  bool vacuumed = false;
  for (const auto& i : st.value()) vacuumed |= i.name == "vacuum" && i.error.empty();
  add(std::move(st.value()));
  if (vacuumed && !dry_run) (void)db->set_setting(kVacuumKey, std::to_string(now_ms()));
}

// ---- cloudyknight gc (no server) -------------------------------------------------------------

int gc_command(const Config& config, bool dry_run, bool as_json) {
  std::error_code ec;
  fs::path data = fs::absolute(config.data, ec);
  if (!fs::is_directory(data, ec)) {
    std::cerr << "cloudyknight: there is no data folder at " << data.string()
              << " (give --data DIR or --config FILE naming the daemon's data folder)\n";
    return 2;
  }
  CleanupSettings s = cleanup_settings(config);
  CleanupReport report;
  report.dry_run = dry_run;
  report.started_ms = now_ms();
  // The workspaces that exist (their images stay): the storage folder, or the S3 mirror.
  std::set<std::string> names;
  fs::path root = config.storage.kind == "s3" ? data / "mirror" : fs::absolute(config.storage.path, ec);
  bool known = fs::is_directory(root, ec);
  for (fs::directory_iterator it(root, ec), end; known && !ec && it != end; it.increment(ec)) {
    std::error_code e2;
    if (it->is_directory(e2)) names.insert(it->path().filename().string());
  }
  if (!known) {
    report.errors.push_back(fmt::format("images: left alone: the workspaces folder {} does not exist (give "
                                        "--workspaces or --config)", root.string()));
  }
  if (config.runtime.kind != "process") {
    std::string why;
    std::string socket = DockerEngine::default_socket(&why);
    if (socket.empty()) {
      if (config.runtime.kind == "docker") report.errors.push_back("docker: " + why);
    } else {
      DockerEngine engine(socket);
      auto connected = run_blocking(engine.connect());
      if (connected.has_error()) {
        if (config.runtime.kind == "docker") report.errors.push_back("docker: " + connected.error().message);
      } else {
        DockerGcOptions o;
        o.data_dir = data;
        o.instance = stable_hash(data.string());
        o.policy.deps_keep = s.deps_keep;
        o.policy.deps_max_size = s.deps_max_size;
        o.policy.dry_run = dry_run;
        o.policy.workspaces = names;
        o.policy.workspaces_known = known;
        auto items = run_blocking(docker_gc(engine, std::move(o)));
        if (items.has_error()) {
          report.errors.push_back("docker: " + items.error().message);
        } else {
          report.items = std::move(items.value());
        }
      }
    }
  }
  std::unique_ptr<StateDb> db;
  if (fs::exists(data / "state.db", ec)) {
    auto opened = StateDb::open(data / "state.db");
    if (opened.has_error()) {
      report.errors.push_back("state.db: " + opened.error().message);
    } else {
      db = std::move(opened.value());
    }
  }
  clean_data(s, data, db.get(), dry_run, report);
  report.finished_ms = now_ms();
  if (as_json) {
    std::cout << cleanup_report_json(report).dump(2) << std::endl;
  } else {
    std::cout << cleanup_report_text(report) << std::flush;
  }
  return report.errors.empty() ? 0 : 1;
}

// ---- the service ----------------------------------------------------------------------------

CleanupService::CleanupService(net::io_context& io, Runtime& runtime, StateDb& db, EventBus& events, fs::path data,
                               CleanupSettings settings, std::function<Result<std::set<std::string>>()> workspaces)
    : io_(io),
      runtime_(runtime),
      db_(db),
      events_(events),
      data_(std::move(data)),
      settings_(settings),
      workspaces_(std::move(workspaces)) {}

CleanupService::~CleanupService() { stop(); }

void CleanupService::add_job_handlers(MonitorOptions& opts) {
  opts.job_handlers["cleanup"] = {
      [this](const Job&, std::function<void(Result<void>)> done) {
        if (running_) {
          return done(fail(Errc::unavailable, "another cleanup is running; this one runs after it"));
        }
        running_ = true;
        run(false, [this, done = std::move(done)](CleanupReport r) {
          running_ = false;
          record(r);
          if (!r.errors.empty()) return done(fail(Errc::unavailable, r.errors.front()));
          done(outcome::success());
        });
      },
      [this](const Job& job) {
        // The next scheduled run once this one ended (done, or dead after its retries).
        if (!scheduled(job) || (job.state != JobState::done && job.state != JobState::dead)) return;
        json payload = {{"scheduled", true}};
        auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(settings_.interval);
        if (auto r = db_.enqueue("cleanup", "", payload.dump(), kCleanupPolicy, delay, false); r.has_error()) {
          logger()->error("cannot queue the next cleanup: {}", r.error().message);
        }
      }};
}

void CleanupService::schedule() {
  (void)db_.cancel("cleanup", "");
  json payload = {{"scheduled", true}};
  if (auto r = db_.enqueue("cleanup", "", payload.dump(), kCleanupPolicy, {}, false); r.has_error()) {
    logger()->error("cannot queue the cleanup: {}", r.error().message);
    return;
  }
  logger()->info("cleanup now and every {}: dependency volumes unused for {}{}, trash older than {}, history "
                 "older than {}, logs over {} (keeping {} rotated)",
                 format_duration(settings_.interval), format_duration(settings_.deps_keep),
                 settings_.deps_max_size ? " or beyond " + format_bytes(settings_.deps_max_size) : "",
                 format_duration(settings_.trash_keep), format_duration(settings_.keep_history),
                 format_bytes(settings_.log_max_size), settings_.log_keep);
}

Result<Job> CleanupService::request() {
  JobFilter f;
  f.limit = 50;
  BOOST_OUTCOME_TRY(jobs, db_.jobs(f));
  const auto now = db_.now_ms();
  for (const auto& j : jobs) {
    if (j.kind != "cleanup") continue;
    if (j.state == JobState::running || (j.state == JobState::queued && j.next_run_ms <= now)) return j;
  }
  json payload = {{"scheduled", false}};
  return db_.enqueue("cleanup", "", payload.dump(), kCleanupPolicy, {}, false);
}

void CleanupService::plan(std::function<void(Result<CleanupReport>)> done) {
  net::post(io_, [this, done = std::move(done)]() mutable {
    run(true, [done = std::move(done)](CleanupReport r) { done(std::move(r)); });
  });
}

json CleanupService::last() const {
  auto v = db_.setting(kLastKey);
  if (v.has_error() || !v.value()) return json::object();
  json j = json::parse(*v.value(), nullptr, false);
  return j.is_object() ? j : json::object();
}

void CleanupService::stop() {
  std::unique_lock lock(mu_);
  idle_.wait(lock, [this] { return threads_ == 0; });
}

void CleanupService::run(bool dry_run, std::function<void(CleanupReport)> done) {
  spawn(io_, run_runtime(dry_run, std::move(done)), "cleanup");
}

net::awaitable<void> CleanupService::run_runtime(bool dry_run, std::function<void(CleanupReport)> done) {
  CleanupReport report;
  report.dry_run = dry_run;
  report.started_ms = now_ms();
  GcPolicy p;
  p.deps_keep = settings_.deps_keep;
  p.deps_max_size = settings_.deps_max_size;
  p.dry_run = dry_run;
  auto ws = workspaces_();
  if (ws.has_value()) {
    p.workspaces = std::move(ws.value());
  } else {
    p.workspaces_known = false;
    report.errors.push_back("images: left alone this time: " + ws.error().message);
  }
  auto rt = co_await runtime_.collect_garbage(std::move(p));
  if (rt.has_error()) {
    report.errors.push_back("runtime: " + rt.error().message);
  } else {
    report.items = std::move(rt.value());
  }
  // DATA and state.db block: a thread of their own, then back here with the report.
  {
    std::lock_guard lock(mu_);
    ++threads_;
  }
  std::thread([this, dry_run, report = std::move(report), done = std::move(done)]() mutable {
    clean_data(settings_, data_, &db_, dry_run, report);
    report.finished_ms = now_ms();
    net::post(io_, [report = std::move(report), done = std::move(done)]() mutable { done(std::move(report)); });
    std::lock_guard lock(mu_);
    if (--threads_ == 0) idle_.notify_all();
  }).detach();
}

void CleanupService::record(const CleanupReport& r) {
  json j = cleanup_report_json(r);
  (void)db_.set_setting(kLastKey, j.dump());
  auto& m = cleanup_metrics();
  for (const auto& i : r.items) {
    if (i.error.empty() && i.bytes > 0) m.reclaimed.with({i.kind}).inc(i.bytes);
  }
  m.runs.with({r.errors.empty() ? "ok" : "error"}).inc();
  json event = {{"bytes", j["bytes"]}, {"by_kind", j["by_kind"]}, {"errors", j["errors"]},
                {"items", r.items.size()}};
  events_.publish("cleanup", "", std::move(event));
  std::size_t failed = 0;
  for (const auto& i : r.items) {
    if (!i.error.empty()) {
      ++failed;
      logger()->warn("could not remove {} {}: {}", i.kind, i.name, i.error);
    } else {
      logger()->info("removed {} {} ({}): {}", i.kind, i.name, format_bytes(i.bytes), i.reason);
    }
  }
  for (const auto& e : r.errors) logger()->warn("cleanup: {}", e);
  logger()->info("cleanup reclaimed {} ({} item(s), {} failed) in {}", format_bytes(r.bytes()),
                 r.items.size() - failed, failed, format_duration(std::chrono::milliseconds(r.finished_ms - r.started_ms)));
}

}  // namespace ck
