// A workspace's source as `cloudyknight deploy` sends it (issue 18, part 3; storage/deploy.h has
// the protocol):
//   GET /monitor/api/v1/workspaces/{name}/source  the source's files: [[path, size, md5, exec]]
//   PUT /monitor/api/v1/workspaces/{name}/source  a tar: the manifest, then the files that differ
//
// The listing runs on the API's worker thread (it may hash files the index does not know). A
// deploy runs on a thread of its own, like a git push (GitPushes: at most 16 at once, one per
// workspace, pushes included): it reads the tar and checks all of it (paths, sizes, the
// manifest against what the folder holds now) before the folder changes, then deletes the
// files the new source lacks and writes the ones that differ, through storage/files.h beneath
// a descriptor of the workspace folder (folder storage, git workspaces) or through the bucket
// first (S3 storage: S3Mirror::write_file/delete_file). A git workspace commits the change
// (git.autocommit). Then, unless ?follow=0, the answer follows the workspace as a git push
// does (git_deploy.cc's follow()): its install and start log, until it runs or fails, and its
// URL. With ?follow=0 the answer is the summary in JSON once the files are in place. A source
// larger than gateway.max_body (the listing says how large a tar may be: "max_bytes") comes in
// parts: ?part=1 tars carry files only (nothing is deleted or followed), the last one the
// manifest.

#include <fcntl.h>
#include <sys/stat.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <nlohmann/json.hpp>

#include "api/api.h"
#include "api/git_deploy.h"
#include "api/poller.h"
#include "api/respond.h"
#include "core/log.h"
#include "core/units.h"
#include "http/stream.h"
#include "http/url.h"
#include "storage/deploy.h"
#include "storage/file_index.h"

namespace ck {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

auto logger() {
  static auto l = log::get("api");
  return l;
}

// How long one file's write or delete through the bucket (S3 storage) may take.
constexpr Duration kBucketWait = std::chrono::minutes(2);

// The report of a deploy, streamed to its client as text/plain.
class StreamReport : public api::DeployReport {
 public:
  explicit StreamReport(std::shared_ptr<http::ResponseStream> st) : st_(std::move(st)) {}
  void raw(std::string_view s) override {
    if (ok_) ok_ = st_->write(s);
  }
  bool listening() const override { return ok_ && !st_->cancelled(); }

 private:
  std::shared_ptr<http::ResponseStream> st_;
  bool ok_ = true;
};

// Everything a deploy thread needs, copied out of the request and the API.
struct DeployWork {
  std::string name;
  std::string author;
  fs::path dir;    // the workspace folder (S3 storage: its mirror)
  fs::path index;  // the server's digest index for it ("" = none)
  deploy::Limits limits;
  std::shared_ptr<const std::string> body;
  bool follow = true;
  bool partial = false;  // ?part=1: one of several tars of a large deploy (files only)
  std::optional<WorkspaceView> before;
  api::DeployJob job;
  std::shared_ptr<http::ResponseStream> st;
  // S3 storage: the bucket first (empty for folder storage).
  std::function<void(const std::string&, const std::string&, std::string, files::Conditions,
                     std::function<void(Result<files::Written>, std::string)>)>
      write_file;
  std::function<void(const std::string&, const std::string&, files::Conditions,
                     std::function<void(Result<void>, std::string)>)>
      delete_file;
  std::function<void(const std::string&, const std::string&, const std::string&, const std::string&)> changed;
  // Gives the workspace's deploy lock back. run_deploy() calls it once the files are settled,
  // before the answer goes out: a client that deploys again right after an answer must never
  // find its own deploy still running (409).
  std::function<void()> release;
};

// Calls the release once: when asked, else at the end of the scope.
class ReleaseOnce {
 public:
  explicit ReleaseOnce(std::function<void()> f) : f_(std::move(f)) {}
  ReleaseOnce(const ReleaseOnce&) = delete;
  ReleaseOnce& operator=(const ReleaseOnce&) = delete;
  ~ReleaseOnce() { (*this)(); }
  void operator()() {
    if (auto f = std::exchange(f_, nullptr)) f();
  }

 private:
  std::function<void()> f_;
};

// A descriptor of the workspace folder.
Result<int> open_folder(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return fail(errno == ENOENT ? Errc::not_found : Errc::io,
                fmt::format("the workspace folder {} cannot be opened: {}", dir.string(), std::strerror(errno)));
  }
  return fd;
}

// What a deploy did.
struct Applied {
  std::size_t written = 0, deleted = 0;
  std::uint64_t bytes = 0;
};

// Deletes, then writes: a file that becomes a folder (or the other way round) needs the old
// one gone first. Stops at the first failure; `done` counts what happened before it.
Result<void> apply(const DeployWork& w, const deploy::Package& pkg, const deploy::Plan& plan, Applied& done) {
  const bool bucket = static_cast<bool>(w.write_file);
  int fd = -1;
  if (!bucket) {
    BOOST_OUTCOME_TRY(opened, open_folder(w.dir));
    fd = opened;
  }
  struct Closer {
    int fd;
    ~Closer() {
      if (fd >= 0) ::close(fd);
    }
  } closer{fd};
  std::set<std::string> parents;
  for (const auto& path : plan.remove) {
    Result<void> r = outcome::success();
    if (bucket) {
      auto got = api::wait_for<Result<void>>(
          [&](std::function<void(Result<void>)> cb) {
            w.delete_file(w.name, path, {}, [cb](Result<void> got_r, std::string) { cb(std::move(got_r)); });
          },
          kBucketWait, *w.job.stopping);
      r = got ? std::move(*got) : Result<void>(fail(Errc::timeout, "the bucket did not answer in time"));
    } else {
      r = files::remove(fd, path, {}, {}, nullptr);
    }
    if (r.has_error() && r.error().code != Errc::not_found) {
      return fail(r.error().code, fmt::format("cannot delete '{}': {}", path, r.error().message));
    }
    ++done.deleted;
    for (auto slash = path.rfind('/'); slash != std::string::npos; slash = path.rfind('/', slash - 1)) {
      parents.insert(path.substr(0, slash));
      if (slash == 0) break;
    }
  }
  // Folders the deletions emptied go too (deepest first; one still holding anything stays).
  if (!bucket) {
    for (auto it = parents.rbegin(); it != parents.rend(); ++it) (void)files::remove(fd, *it, {}, {}, nullptr);
  }
  for (std::size_t i : plan.write) {
    const deploy::IncomingFile& f = pkg.files[i];
    Result<files::Written> r = files::Written{};
    if (bucket) {
      auto got = api::wait_for<Result<files::Written>>(
          [&](std::function<void(Result<files::Written>)> cb) {
            w.write_file(w.name, f.path, f.data, {}, [cb](Result<files::Written> got_r, std::string) { cb(std::move(got_r)); });
          },
          kBucketWait, *w.job.stopping);
      r = got ? std::move(*got) : Result<files::Written>(fail(Errc::timeout, "the bucket did not answer in time"));
    } else {
      r = files::write(fd, f.path, f.data, {}, {}, nullptr, {f.exec ? 0755u : 0644u, false});
    }
    if (r.has_error()) return fail(r.error().code, fmt::format("cannot write '{}': {}", f.path, r.error().message));
    ++done.written;
    done.bytes += f.data.size();
  }
  // One sync for every file written (each write skipped its own): the answer promises they
  // are on disk.
  if (!bucket && !plan.write.empty() && ::syncfs(fd) != 0) {
    return fail(Errc::io, fmt::format("cannot sync the written files to disk: {}", std::strerror(errno)));
  }
  return outcome::success();
}

// The server's index learns the MD5 of each file the deploy wrote (it has the bytes), so the
// next listing does not read them back. Folder storage only (S3: the mirror's files are the
// mirror's to change).
void remember_written(const DeployWork& w, const deploy::Package& pkg, const deploy::Plan& plan) {
  if (w.index.empty() || w.write_file || plan.write.empty()) return;
  sync::FileIndex index(w.index);
  for (std::size_t i : plan.write) {
    const deploy::IncomingFile& f = pkg.files[i];
    struct stat st {};
    if (::lstat((w.dir / f.path).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    const std::int64_t mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    index.put(f.path, {static_cast<std::uint64_t>(st.st_size), mtime_ns, f.md5, ""});
  }
  index.save();
}

// A deploy never makes a private workspace public by accident: the workspace.json that says
// "public": false (written by POST /workspaces for a private workspace, and absent from the
// folder a client deploys) stays when the new source has none, and a workspace.json sent to a
// private workspace must say "public" itself, false to keep it private or true to publish it.
Result<void> keep_private(const DeployWork& w, const deploy::Package& pkg, deploy::Plan& plan) {
  constexpr std::string_view kConfig = "workspace.json";
  std::erase(plan.remove, std::string(kConfig));
  if (!w.before || w.before->is_public) return outcome::success();
  for (std::size_t i : plan.write) {
    const deploy::IncomingFile& f = pkg.files[i];
    if (f.path != kConfig) continue;
    json doc = json::parse(f.data, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) {
      return fail(Errc::invalid_argument,
                  fmt::format("workspace.json is not a JSON object, and '{}' is private: fix the file and deploy again",
                              w.name));
    }
    auto pub = doc.find("public");
    if (pub == doc.end() || !pub->is_boolean()) {
      return fail(Errc::invalid_argument,
                  fmt::format("'{}' is private, and the workspace.json this deploy sends would make it public: add "
                              "\"public\": false to keep it private (or \"public\": true to publish it) and deploy "
                              "again",
                              w.name));
    }
  }
  return outcome::success();
}

json summary_json(const DeployWork& w, const deploy::Plan& plan, const Applied& done) {
  return {{"workspace", w.name},       {"written", done.written},   {"deleted", done.deleted},
          {"unchanged", plan.unchanged}, {"bytes", done.bytes},     {"received", w.body->size()},
          {"url", w.job.url.starts_with("/") ? w.job.base_url + w.job.url : w.job.url}};
}

void run_deploy(const DeployWork& w) {
  auto& st = *w.st;
  ReleaseOnce release(w.release);
  auto answer = [&](http::Response r) {
    release();
    st.respond(std::move(r));
  };
  auto pkg = deploy::read_package(*w.body, w.limits);
  if (pkg.has_error()) return answer(error_response(pkg.error().code, pkg.error().message));
  auto current = deploy::digest_folder(w.dir, {}, w.index);
  if (current.has_error()) {
    return answer(error_response(current.error().code, "cannot list the workspace's files: " + current.error().message));
  }
  if (w.partial && pkg.value().has_manifest) {
    return answer(error_response(Errc::invalid_argument,
                                     "a part (?part=1) carries files only; the manifest comes with the last PUT"));
  }
  auto plan = deploy::plan(pkg.value(), current.value().files);
  if (plan.has_error()) return answer(error_response(plan.error().code, plan.error().message));
  if (w.partial) plan.value().remove.clear();  // a part adds; the last PUT deletes
  if (auto kept = keep_private(w, pkg.value(), plan.value()); kept.has_error()) {
    return answer(error_response(kept.error().code, kept.error().message));
  }
  const auto& p = plan.value();
  const bool changes = !p.write.empty() || !p.remove.empty();

  Applied done;
  if (!w.follow) {
    auto r = apply(w, pkg.value(), p, done);
    remember_written(w, pkg.value(), p);
    if (changes && w.changed) w.changed(w.name, fmt::format("deploy ({} written, {} deleted)", done.written, done.deleted), "deploy", w.author);
    release();
    if (r.has_error()) {
      return answer(error_response(
          r.error().code, fmt::format("{}; {} files were written and {} deleted before it: deploy again to finish",
                                      r.error().message, done.written, done.deleted)));
    }
    logger()->info("[ws={}] deploy by {}: {} written, {} deleted, {} unchanged", w.name, w.author, done.written,
                   done.deleted, p.unchanged);
    return answer(api::json_response(200, summary_json(w, p, done)));
  }

  st.begin(200, "text/plain; charset=utf-8", {{"Cache-Control", "no-store"}, {"X-Content-Type-Options", "nosniff"}});
  StreamReport out(w.st);
  out.step(fmt::format("Deploying {}: {} to write ({}), {} to delete, {} unchanged", w.name, p.write.size(),
                       format_bytes(p.write_bytes), p.remove.size(), p.unchanged));
  api::LogTail log(w.job.log_path ? w.job.log_path(w.name) : fs::path());
  auto r = apply(w, pkg.value(), p, done);
  remember_written(w, pkg.value(), p);
  if (changes && w.changed) w.changed(w.name, fmt::format("deploy ({} written, {} deleted)", done.written, done.deleted), "deploy", w.author);
  release();  // following the start needs no lock
  if (r.has_error()) {
    out.problem(fmt::format("{}; {} files were written and {} deleted before it: deploy again to finish",
                            r.error().message, done.written, done.deleted));
    return st.finish();
  }
  logger()->info("[ws={}] deploy by {}: {} written, {} deleted, {} unchanged", w.name, w.author, done.written,
                 done.deleted, p.unchanged);
  const std::string url = w.job.url.starts_with("/") ? w.job.base_url + w.job.url : w.job.url;
  if (!changes && w.before && (w.before->status == "running" || w.before->is_static)) {
    out.done(fmt::format("Nothing changed: {} is running at {}", w.name, url));
    return st.finish();
  }
  api::follow(w.job, w.before, log, out);
  st.finish();
}

}  // namespace

http::Response ControlApi::source_request(const http::Request& req, const WorkspaceView& w, const std::string& author,
                                          const std::function<void(json)>& audit) const {
  if (services_.workspaces_root.empty()) {
    return error_response(Errc::unavailable, "this control plane has no workspace folders to deploy into");
  }
  const fs::path dir = services_.workspaces_root / w.name;
  const fs::path index =
      services_.deploy_index_dir.empty() ? fs::path() : services_.deploy_index_dir / (w.name + ".json");
  auto st = std::make_shared<http::ResponseStream>();
  http::Response later;
  later.stream = st;

  if (req.method == "GET" || req.method == "HEAD") {
    worker_->add([st, dir, index, max_bytes = services_.max_deploy_bytes] {
      auto d = deploy::digest_folder(dir, {}, index);
      if (d.has_error()) {
        st->respond(error_response(d.error().code, "cannot list the workspace's files: " + d.error().message));
      } else {
        std::string body = deploy::list_json(d.value().files);
        body.insert(body.size() - 1, fmt::format(",\"max_bytes\":{}", max_bytes));
        st->respond(200, "application/json", body, {{"Cache-Control", "no-store"}});
      }
      return false;  // once
    });
    return later;
  }

  api::GitPushes* runner = git_pushes_.get();
  if (!runner->lock_name(w.name)) {
    return error_response(Errc::conflict, fmt::format("a deploy or git push to '{}' is running; wait for it to "
                                                      "end, then deploy again",
                                                      w.name));
  }
  DeployWork work;
  work.name = w.name;
  work.author = author;
  work.dir = dir;
  work.index = index;
  work.limits.max_bytes = services_.max_deploy_bytes;
  work.body = std::make_shared<const std::string>(req.body);
  work.partial = http::query_param(req.query, "part").value_or("") == "1";
  work.follow = !work.partial && http::query_param(req.query, "follow").value_or("") != "0";
  work.before = w;
  work.job = follow_job(req, w.name);
  work.st = st;
  work.write_file = services_.write_file;
  work.delete_file = services_.delete_file;
  work.changed = services_.file_changed;
  const std::string name = w.name;
  work.release = [runner, name] { runner->unlock_name(name); };
  audit({{"bytes", req.body.size()}, {"follow", work.follow}});
  bool started = runner->start([work = std::move(work)] { run_deploy(work); });
  if (!started) {
    runner->unlock_name(name);
    return error_response(Errc::unavailable,
                          "too many deploys and git pushes are running at once; try again in a minute");
  }
  return later;
}

}  // namespace ck
