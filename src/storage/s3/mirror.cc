#include "storage/s3/mirror.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <utility>

#include "core/beneath.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/names.h"
#include "core/units.h"
#include "storage/sync.h"

namespace ck {
namespace fs = std::filesystem;

namespace {

std::shared_ptr<spdlog::logger> logger() { return log::get("storage"); }

// Changes whenever a key, size or ETag of the workspace's objects does (the listing is sorted).
std::uint64_t fingerprint(const std::vector<s3::ObjectInfo>& objects) {
  std::uint64_t h = fnv1a64("");
  for (const auto& o : objects) {
    h = fnv1a64(o.key, h);
    h = fnv1a64(fmt::format("\n{}\n", o.size), h);
    h = fnv1a64(o.etag, h);
    h = fnv1a64("\n", h);
  }
  return h;
}

// The names of the entries of a folder ({} if it does not exist or cannot be read).
std::vector<std::string> entries_of(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return out;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) break;
    out.push_back(it->path().filename().string());
  }
  return out;
}

}  // namespace

S3Mirror::S3Mirror(s3::Client& client, S3MirrorOptions opts)
    : client_(client), opts_(std::move(opts)) {}

S3Mirror::~S3Mirror() { stop(); }

fs::path S3Mirror::root() const { return opts_.data / "mirror"; }

std::string S3Mirror::url() const {
  std::string p = sync::root_prefix(opts_.prefix);
  if (!p.empty()) p.pop_back();
  return "s3://" + opts_.bucket + (p.empty() ? "" : "/" + p);
}

std::string S3Mirror::last_error() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

S3Mirror::State S3Mirror::state(const std::string& name) const {
  std::lock_guard lock(mu_);
  State st;
  st.last_pass_ms = last_pass_ms_;
  if (!last_error_.empty()) {
    st.error = "cannot list the bucket: " + last_error_;
  } else if (auto it = published_errors_.find(name); it != published_errors_.end()) {
    st.error = it->second;
  }
  return st;
}

Result<MirrorPass> S3Mirror::run_pass() {
  std::lock_guard pass_lock(pass_mu_);
  auto log = logger();
  MirrorPass pass;
  const fs::path mirror = root();
  const fs::path index_dir = opts_.data / "mirror-index";
  const fs::path staging = opts_.data / "mirror-staging";
  const fs::path trash = opts_.data / "mirror-trash";
  const std::string root_key = sync::root_prefix(opts_.prefix);

  auto listed = client_.list_objects(opts_.bucket, root_key);
  if (listed.has_error()) {
    // Never read a failed listing as "everything was deleted": nothing local changes.
    std::lock_guard lock(mu_);
    if (last_error_ != listed.error().message) {
      // An outage is handled (warn); a missing bucket or refused credentials need an operator.
      auto level = is_retryable(listed.error().code) ? spdlog::level::warn : spdlog::level::err;
      log->log(level, "cannot list {}: {}; serving the mirror in {} as it is and retrying every {}",
               url(), listed.error().message, mirror.string(), format_duration(opts_.interval));
      last_error_ = listed.error().message;
    }
    return outcome::failure(listed.error());
  }
  {
    std::lock_guard lock(mu_);
    if (!last_error_.empty()) {
      log->info("listing {} works again", url());
      last_error_.clear();
    }
  }

  // Group by workspace: PREFIX/NAME/<relative path>.
  std::map<std::string, std::vector<s3::ObjectInfo>> groups;
  std::set<std::string> invalid;
  for (auto& o : listed.value()) {
    if (!o.key.starts_with(root_key)) continue;
    std::string_view rel(o.key);
    rel.remove_prefix(root_key.size());
    auto slash = rel.find('/');
    if (slash == std::string_view::npos) continue;  // an object beside the workspaces
    std::string name(rel.substr(0, slash));
    // Empty names ("PREFIX//x") and dot names (PREFIX/.cloudyknight/: manifests) are not
    // workspaces; neither is ".." (such keys are never followed).
    if (name.empty() || name.starts_with('.')) continue;
    if (auto v = validate_workspace_name(name); v.has_error()) {
      invalid.insert(name);
      if (!warned_names_.contains(name)) {
        log->warn(
            "not serving {}/{}/: {}; to serve it, move its objects to a valid name: "
            "aws s3 mv --recursive {}/{}/ {}/NEW-NAME/",
            url(), name, v.error().message, url(), name, url());
      }
      continue;
    }
    groups[name].push_back(std::move(o));
  }
  warned_names_ = std::move(invalid);  // a name that comes back later is warned about again
  pass.workspaces = groups.size();

  std::error_code ec;
  fs::remove_all(trash, ec);
  fs::create_directories(mirror, ec);
  if (ec) {
    return fail(Errc::io, fmt::format("cannot create the mirror folder {}: {}", mirror.string(),
                                      ec.message()));
  }

  // Pull every workspace whose objects changed since its last good pull.
  for (const auto& [name, objects] : groups) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) break;
    }
    std::uint64_t fp = fingerprint(objects);
    fs::path dir = mirror / name;
    bool present = fs::is_directory(fs::symlink_status(dir, ec));
    if (auto it = pulled_.find(name); present && it != pulled_.end() && it->second == fp) continue;
    // A workspace new to the mirror is assembled aside and appears whole.
    fs::path target = present ? dir : staging / name;
    if (!present) {
      auto st = fs::symlink_status(dir, ec);
      if (fs::exists(st)) fs::remove(dir, ec);  // a stray file in the mirror root
    }
    sync::Options so;
    so.concurrency = opts_.concurrency;
    so.delete_extra = true;
    so.ignore.builtins = false;  // a mirror holds exactly what the bucket holds
    so.ignore.allow_env = true;
    so.ignore.include_lock = true;
    so.index = index_dir / (name + ".json");
    so.listing = &objects;
    sync::Location where{&client_, opts_.bucket, sync::workspace_prefix(opts_.prefix, name)};
    auto report = sync::pull(where, target, so);
    if (report.has_error()) {
      ++pass.failed;
      std::string& last = pull_errors_[name];
      if (last != report.error().message) {
        log->warn("[ws={}] cannot download it from {}: {}; {} and retrying on the next pass", name,
                  url(), report.error().message,
                  present ? "serving the mirror as it is" : "it is not served yet");
        last = report.error().message;
      }
      continue;
    }
    for (const auto& w : report.value().warnings) log->warn("[ws={}] {}", name, w);
    if (!present) {
      fs::rename(target, dir, ec);
      if (ec) {
        ++pass.failed;
        log->warn("[ws={}] cannot move {} to {}: {}; retrying on the next pass", name,
                  target.string(), dir.string(), ec.message());
        continue;
      }
    }
    pulled_[name] = fp;
    pull_errors_.erase(name);
    ++pass.pulled;
    const auto& r = report.value();
    pass.files += r.actions.size();
    std::size_t downloads =
        std::count_if(r.actions.begin(), r.actions.end(),
                      [](const sync::Action& a) { return a.op == sync::Op::download; });
    if (!present) {
      log->info("[ws={}] mirrored from {}: {} files, {} bytes ({} ms)", name, url(), downloads,
                r.bytes, r.elapsed.count());
    } else if (!r.actions.empty()) {
      log->info("[ws={}] updated from {}: {} downloaded, {} deleted, {} unchanged ({} ms)", name,
                url(), downloads, r.actions.size() - downloads, r.unchanged, r.elapsed.count());
    }
  }

  // Workspaces whose keys are all gone leave the mirror. Each is moved out first, so the
  // watcher sees one rename instead of a tree emptying file by file.
  for (const auto& entry : entries_of(mirror)) {
    if (groups.contains(entry)) continue;
    remove_workspace(entry);
    ++pass.removed;
  }
  for (const auto& entry : entries_of(index_dir)) {
    fs::path p(entry);
    if (p.extension() == ".json" && groups.contains(p.stem().string())) continue;
    fs::remove(index_dir / entry, ec);
  }
  for (const auto& entry : entries_of(staging)) {
    if (groups.contains(entry) && !fs::exists(mirror / entry, ec)) continue;  // retried next pass
    fs::remove_all(staging / entry, ec);
  }
  std::erase_if(pulled_, [&](const auto& kv) { return !groups.contains(kv.first); });
  std::erase_if(pull_errors_, [&](const auto& kv) { return !groups.contains(kv.first); });
  {
    std::lock_guard lock(mu_);
    published_errors_ = pull_errors_;
    last_pass_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  }
  return pass;
}

void S3Mirror::remove_workspace(const std::string& name) {
  auto log = logger();
  const fs::path dir = root() / name;
  const fs::path trash = opts_.data / "mirror-trash";
  std::error_code ec;
  fs::create_directories(trash, ec);
  fs::path aside = trash / name;
  fs::remove_all(aside, ec);
  fs::rename(dir, aside, ec);
  if (ec) {
    aside = dir;  // remove it in place then
  }
  fs::remove_all(aside, ec);
  if (ec) {
    log->warn("[ws={}] cannot remove its mirror {}: {}", name, aside.string(), ec.message());
  } else {
    log->info("[ws={}] removed from the mirror: it has no objects left in {}", name, url());
  }
  fs::remove(opts_.data / "mirror-index" / (name + ".json"), ec);
  pulled_.erase(name);
}

void S3Mirror::start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { loop(); });
}

void S3Mirror::poke() {
  {
    std::lock_guard lock(mu_);
    poked_ = true;
  }
  cv_.notify_all();
}

void S3Mirror::pass_now(std::function<void(Result<MirrorPass>)> done) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_ && thread_.joinable()) {
      waiting_.push_back(std::move(done));
      poked_ = true;
      done = nullptr;
    }
  }
  if (done) {
    done(fail(Errc::unavailable, "the mirror of " + url() + " is not running (the daemon is stopping)"));
    return;
  }
  cv_.notify_all();
}

bool S3Mirror::queue_job(std::function<void(bool run)> job) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || !thread_.joinable()) return false;
    jobs_.push_back(std::move(job));
  }
  cv_.notify_all();
  return true;
}

void S3Mirror::publish(std::string name, std::filesystem::path folder,
                       std::function<void(Result<void>)> done) {
  auto job = [this, name, folder, done](bool run) {
    if (!run) return done(fail(Errc::unavailable, "the mirror of " + url() + " stopped first"));
    sync::Location where{&client_, opts_.bucket, sync::workspace_prefix(opts_.prefix, name)};
    auto existing = client_.list_objects(opts_.bucket, where.key_prefix);
    if (existing.has_error()) return done(existing.error());
    if (!existing.value().empty()) {
      return done(fail(Errc::already_exists, fmt::format("a workspace named '{}' already exists in {}",
                                                         name, url())));
    }
    sync::Options so;
    so.ignore.allow_env = false;
    auto pushed = sync::push(where, folder, so);
    if (pushed.has_error()) {
      return done(fail(pushed.error().code, fmt::format("cannot upload '{}' to {}: {}", name, url(),
                                                        pushed.error().message)));
    }
    std::size_t files = 0;
    for (const auto& a : pushed.value().actions) files += a.op == sync::Op::upload;
    if (auto m = sync::write_manifest(client_, opts_.bucket, opts_.prefix, name, folder, files,
                                      pushed.value().bytes);
        m.has_error()) {
      logger()->warn("[ws={}] uploaded to {} without its manifest: {}", name, url(), m.error().message);
    }
    logger()->info("[ws={}] created in {}: {} files", name, url(), files);
    (void)run_pass();  // the mirror (and so the monitor) has it before the answer
    done(outcome::success());
  };
  if (!queue_job(job)) job(false);
}

void S3Mirror::remove(std::string name, std::function<void(Result<std::size_t>)> done) {
  auto job = [this, name, done](bool run) {
    if (!run) return done(fail(Errc::unavailable, "the mirror of " + url() + " stopped first"));
    const std::string key_prefix = sync::workspace_prefix(opts_.prefix, name);
    auto listed = client_.list_objects(opts_.bucket, key_prefix);
    if (listed.has_error()) return done(listed.error());
    std::vector<std::string> keys;
    for (const auto& o : listed.value()) keys.push_back(o.key);
    if (keys.empty()) {
      return done(fail(Errc::not_found, fmt::format("there is no workspace named '{}' in {}", name, url())));
    }
    std::size_t count = keys.size();
    keys.push_back(sync::manifest_key(opts_.prefix, name));  // deleting a missing key is fine
    if (auto r = client_.delete_objects(opts_.bucket, keys); r.has_error()) {
      return done(fail(r.error().code, fmt::format("cannot delete '{}' from {}: {}", name, url(),
                                                   r.error().message)));
    }
    logger()->info("[ws={}] deleted from {}: {} objects", name, url(), count);
    (void)run_pass();
    done(count);
  };
  if (!queue_job(job)) job(false);
}

namespace {

// A descriptor of workspace `name`'s mirror folder (the mirror root itself is ours: symlinks
// are not expected there, and O_NOFOLLOW refuses one for the workspace).
Result<int> open_workspace_dir(const fs::path& root, const std::string& name) {
  int fd = ::open((root / name).c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    return fail(errno == ENOENT ? Errc::not_found : Errc::io,
                fmt::format("workspace '{}' is not in the mirror {}: {}", name,
                            (root / name).string(), std::strerror(errno)));
  }
  return fd;
}

}  // namespace

void S3Mirror::write_file(std::string name, std::string rel, std::string body,
                          files::Conditions when,
                          std::function<void(Result<files::Written>, std::string)> done) {
  auto job = [this, name, rel, body = std::move(body), when, done](bool run) {
    if (!run) return done(fail(Errc::unavailable, "the mirror of " + url() + " stopped first"), "");
    std::unique_lock pass(pass_mu_);  // never beside a pass (run_pass from another thread)
    auto dir = open_workspace_dir(root(), name);
    if (dir.has_error()) return done(dir.error(), "");
    const std::string key = sync::workspace_prefix(opts_.prefix, name) + rel;
    auto upload = [&]() -> Result<void> {
      auto put =
          client_.put_object(opts_.bucket, key, body, std::string(content_type_for_name(rel)));
      if (put.has_error()) {
        return fail(put.error().code,
                    fmt::format("cannot upload '{}' to {}/{}: {}; nothing was changed", rel, url(),
                                key, put.error().message));
      }
      return outcome::success();
    };
    std::string current;
    auto written = files::write(dir.value(), rel, body, when, upload, &current);
    ::close(dir.value());
    pass.unlock();
    if (written.has_value()) logger()->info("[ws={}] {} written through to {}", name, rel, url());
    done(std::move(written), std::move(current));
  };
  if (!queue_job(job)) job(false);
}

void S3Mirror::delete_file(std::string name, std::string rel, files::Conditions when,
                           std::function<void(Result<void>, std::string)> done) {
  auto job = [this, name, rel, when, done](bool run) {
    if (!run) return done(fail(Errc::unavailable, "the mirror of " + url() + " stopped first"), "");
    std::unique_lock pass(pass_mu_);  // never beside a pass (run_pass from another thread)
    auto dir = open_workspace_dir(root(), name);
    if (dir.has_error()) return done(dir.error(), "");
    const std::string key = sync::workspace_prefix(opts_.prefix, name) + rel;
    auto erase = [&](bool folder) -> Result<void> {
      if (folder) return outcome::success();  // S3 has no folders; an empty one has no object
      if (auto r = client_.delete_object(opts_.bucket, key); r.has_error()) {
        return fail(r.error().code, fmt::format("cannot delete {}/{}: {}; nothing was changed",
                                                url(), key, r.error().message));
      }
      return outcome::success();
    };
    std::string current;
    auto removed = files::remove(dir.value(), rel, when, erase, &current);
    ::close(dir.value());
    pass.unlock();
    if (removed.has_value()) logger()->info("[ws={}] {} deleted from {}", name, rel, url());
    done(std::move(removed), std::move(current));
  };
  if (!queue_job(job)) job(false);
}

void S3Mirror::notify(const std::vector<std::string>& keys) {
  auto log = logger();
  if (keys.empty()) {
    log->debug("bucket notification without records (a test event); listing {}", url());
  }
  for (std::size_t i = 0; i < keys.size() && i < 10; ++i) {
    log->debug("bucket notification: {}", keys[i]);
  }
  poke();
}

void S3Mirror::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void S3Mirror::loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, opts_.interval, [this] { return stopping_ || poked_ || !jobs_.empty(); });
    if (stopping_) break;
    if (!jobs_.empty()) {
      auto jobs = std::move(jobs_);
      jobs_.clear();
      lock.unlock();
      for (auto& job : jobs) job(true);
      lock.lock();
      continue;
    }
    poked_ = false;
    auto waiting = std::move(waiting_);
    waiting_.clear();
    lock.unlock();
    // Errors are logged by the pass (once per distinct listing error).
    auto pass = run_pass();
    for (auto& done : waiting) done(pass);
    lock.lock();
  }
  auto waiting = std::move(waiting_);
  waiting_.clear();
  auto jobs = std::move(jobs_);  // never run: each says so through its `done`
  jobs_.clear();
  lock.unlock();
  for (auto& job : jobs) job(false);
  for (auto& done : waiting) {
    done(fail(Errc::unavailable, "the mirror of " + url() + " stopped before the next pass"));
  }
}

}  // namespace ck
