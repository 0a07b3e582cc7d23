#include "runtime/process/process_runtime.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <array>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <fstream>
#include <sys/wait.h>
#include <unistd.h>

#include "core/hash.h"
#include "core/log.h"
#include "core/shell.h"
#include "runtime/process/cgroup.h"
#include "runtime/process/child.h"
#include "runtime/process/confine.h"

namespace ck {
namespace fs = std::filesystem;

namespace {

auto logger() {
  static auto l = log::get("runtime");
  return l;
}

// Folders that hold installed dependencies or tool state, never copied from the source and
// kept across restarts while the dependency key is unchanged.
constexpr const char* kDepFolders[] = {"node_modules", ".venv", "vendor"};
constexpr const char* kNeverCopied[] = {"node_modules", ".git", ".venv", "__pycache__", ".container-ready"};

bool is_dep_folder(const std::string& n) {
  for (const char* d : kDepFolders) {
    if (n == d) return true;
  }
  return false;
}

bool never_copied(const std::string& n) {
  for (const char* d : kNeverCopied) {
    if (n == d) return true;
  }
  return false;
}

// Refreshes app_dir from source. Keeps installed dependencies when `keep_deps`.
Result<void> refresh_app_dir(const fs::path& source, const fs::path& app_dir, bool keep_deps) {
  std::error_code ec;
  fs::create_directories(app_dir, ec);
  if (ec) return fail(Errc::io, fmt::format("cannot create {}: {}", app_dir.string(), ec.message()));
  for (auto it = fs::directory_iterator(app_dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::string n = it->path().filename().string();
    if (keep_deps && is_dep_folder(n)) continue;
    fs::remove_all(it->path(), ec);
    if (ec) return fail(Errc::io, fmt::format("cannot clean {}: {}", it->path().string(), ec.message()));
  }
  if (ec) return fail(Errc::io, fmt::format("cannot list {}: {}", app_dir.string(), ec.message()));
  for (auto it = fs::directory_iterator(source, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::string n = it->path().filename().string();
    if (never_copied(n)) continue;
    if (keep_deps && is_dep_folder(n)) continue;
    std::error_code cec;
    fs::copy(it->path(), app_dir / n,
             fs::copy_options::recursive | fs::copy_options::copy_symlinks |
                 fs::copy_options::overwrite_existing,
             cec);
    if (cec) {
      return fail(Errc::io, fmt::format("cannot copy {} into {}: {}", it->path().string(),
                                        app_dir.string(), cec.message()));
    }
  }
  if (ec) return fail(Errc::io, fmt::format("cannot read the source folder {}: {}", source.string(), ec.message()));
  return outcome::success();
}

// Where a folder's dependency key is kept: DATA/run/<name>/deps-key for "app" (as before
// blue/green), <dir>.deps-key for the other.
fs::path deps_key_file(const fs::path& run_dir, const std::string& dir) {
  return dir == "app" ? run_dir / "deps-key" : run_dir / (dir + ".deps-key");
}

// Each app copy has its own sandbox mount point, so two copies of a workspace can run at once.
fs::path sandbox_root(const fs::path& run_dir, const std::string& dir) {
  return dir == "app" ? run_dir / "sandbox-root" : run_dir / ("sandbox-root." + dir);
}

std::string read_small(const fs::path& p) {
  std::ifstream in(p);
  std::string s;
  std::getline(in, s);
  return s;
}

void write_small(const fs::path& p, const std::string& s) {
  // Never through a symlink: the folder may be the workspace's.
  auto r = write_file_nofollow(p, s);
  if (r.has_error()) logger()->warn("{}", r.error().message);
}


// Kills an init (child.h) and its command's process group, which the host sees as the init's
// children.
void kill_tree(pid_t init) {
  std::ifstream in(fmt::format("/proc/{}/task/{}/children", init, init));
  pid_t child = 0;
  while (in >> child) {
    ::kill(-child, SIGKILL);
    ::kill(child, SIGKILL);
  }
  ::kill(init, SIGKILL);
}

ExitInfo exit_info(int status) {
  ExitInfo e;
  if (WIFSIGNALED(status)) {
    e.signal = WTERMSIG(status);
  } else if (WIFEXITED(status)) {
    e = exit_from_code(WEXITSTATUS(status));  // our init reports signals as 128+signal
  }
  return e;
}

}  // namespace

struct ProcessRuntime::Slot {
  std::string name;
  std::string dir = "app";  // below DATA/run/<name>: "app", or "app-b" for a new version
  std::shared_ptr<Child> current;  // the install step or the app
  std::shared_ptr<Child> app;
  int port = 0;
  bool stopping = false;
  bool frozen = false;
  int log_fd = -1;
  std::uint64_t oom_before = 0;
  std::optional<Cgroup> cgroup;
  std::vector<std::string> env;  // the app's environment, for exec
  bool namespaced = false;       // the app runs in its own namespaces
  ConfineSpec confine;           // the sandbox's layers for its processes

  ~Slot() {
    if (log_fd >= 0) ::close(log_fd);
  }
  void log_line(const std::string& line) const { append_log_line(log_fd, line); }
};

ProcessRuntime::ProcessRuntime(net::io_context& io, ProcessRuntimeOptions opts)
    : io_(io),
      opts_(std::move(opts)),
      ports_(opts_.port_min, opts_.port_max),
      pool_(std::make_unique<net::thread_pool>(2)) {
  SandboxProbe probe = opts_.probe ? *opts_.probe : probe_sandbox();
  auto plan = decide_sandbox(probe, opts_.allow_weak_sandbox);
  if (plan.has_value()) {
    plan_ = plan.value();
    isolation_ = plan_->describe(opts_.uid_range);
  } else {
    refusal_ = plan.error().message;
    isolation_ = "sandbox refused: " + refusal_;
  }
  std::string why;
  cgroups_ = Cgroup::available(why);
  if (cgroups_) {
    isolation_ += "; cgroup v1 memory, pids and cpu limits";
  } else {
    isolation_ += "; without cgroup limits (" + why + ")";
  }
}

ProcessRuntime::~ProcessRuntime() {
  kill_all();
  pool_->join();
}

fs::path ProcessRuntime::log_path(const std::string& name) const {
  return workspace_log_path(opts_.data_dir, name);
}

fs::path ProcessRuntime::app_dir(const Slot& slot) const {
  return opts_.data_dir / "run" / slot.name / slot.dir;
}

std::vector<std::string> ProcessRuntime::base_env(const RunSpec& spec, const Slot& slot, int port) const {
  // Built from nothing: the daemon's own environment (its secrets) never reaches a workspace.
  std::vector<std::string> env;
  bool sandboxed = plan_ && plan_->namespaces;
  fs::path run_dir = opts_.data_dir / "run" / spec.name;
  fs::path app_dir = sandboxed ? fs::path(kSandboxApp) : this->app_dir(slot);
  std::string home = sandboxed ? std::string(kSandboxHome) : (run_dir / "home").string();
  env.push_back("PATH=" + (app_dir / ".venv/bin").string() + ":" +
                (app_dir / "node_modules/.bin").string() + ":/usr/local/bin:/usr/bin:/bin");
  env.push_back("HOME=" + home);
  env.push_back("LANG=C.UTF-8");
  env.push_back(fmt::format("PORT={}", port));
  env.push_back("HOST=127.0.0.1");
  env.push_back("PYTHONUNBUFFERED=1");
  env.push_back("CLOUDYKNIGHT_WORKSPACE=" + spec.name);
  for (const auto& [k, v] : spec.env) {
    if (k.starts_with("CK_INIT_")) continue;  // the init's own channel
    env.push_back(k + "=" + v);
  }
  return env;
}

std::vector<std::string> ProcessRuntime::init_env(const Slot& slot) const {
  std::vector<std::string> env = slot.env;
  for (auto& kv : confine_env(slot.confine)) env.push_back(std::move(kv));
  return env;
}

Result<std::shared_ptr<Child>> ProcessRuntime::launch(Slot& slot, const std::string& cmd,
                                                      const std::vector<std::string>& env) {
  SpawnOptions so;
  so.self_exe = opts_.self_exe;
  so.shell_command = cmd;
  so.cwd = app_dir(slot).string();
  so.env = env;
  for (auto& kv : confine_env(slot.confine)) so.env.push_back(std::move(kv));
  so.log_fd = slot.log_fd;
  so.namespaces = slot.confine.namespaces;
  if (slot.cgroup) so.cgroup_dirs = slot.cgroup->dirs();
  // No fallback to fewer namespaces: a sandbox that cannot be built is an error, not a warning.
  auto child = Child::spawn(io_.get_executor(), so);
  if (child.has_value()) slot.current = child.value();
  return child;
}

net::awaitable<Result<int>> ProcessRuntime::run_step(Slot& slot, const std::string& cmd,
                                                     const std::vector<std::string>& env) {
  BOOST_OUTCOME_CO_TRY(child, launch(slot, cmd, env));
  co_await child->wait();
  slot.current.reset();
  auto e = exit_info(child->status());
  co_return e.signal ? 128 + e.signal : e.code;
}

net::awaitable<Result<RunningApp>> ProcessRuntime::start(RunSpec spec, PhaseCallback on_phase) {
  auto& slot_ptr = slots_[spec.name];
  if (!slot_ptr) slot_ptr = std::make_shared<Slot>();
  auto slot = slot_ptr;  // keeps it alive across suspension points
  if (slot->app && !slot->app->exited()) {
    co_return fail(Errc::already_exists, fmt::format("workspace {} is already running", spec.name));
  }
  if (pending_.count(spec.name)) {
    co_return fail(Errc::conflict, fmt::format("a new version of workspace {} is starting", spec.name));
  }
  slot->name = spec.name;
  slot->stopping = false;
  // The copy whose dependencies match, when only app-b's do (the last new version ran there).
  fs::path run_dir = opts_.data_dir / "run" / spec.name;
  slot->dir = "app";
  if (read_small(deps_key_file(run_dir, "app")) != spec.deps_key &&
      read_small(deps_key_file(run_dir, "app-b")) == spec.deps_key) {
    slot->dir = "app-b";
  }
  co_return co_await launch_app(slot, std::move(spec), std::move(on_phase), nullptr);
}

bool ProcessRuntime::can_replace(const RunSpec& spec) const {
  return plan_ && plan_->namespaces && !spec.port;
}

net::awaitable<Result<RunningApp>> ProcessRuntime::replace(RunSpec spec, PhaseCallback on_phase,
                                                           std::function<void(const RunningApp&)> switched,
                                                           Duration grace) {
  auto it = slots_.find(spec.name);
  if (it == slots_.end() || !it->second->app || it->second->app->exited() || it->second->stopping) {
    co_return fail(Errc::not_found, fmt::format("workspace {} has no running app to replace", spec.name));
  }
  if (!can_replace(spec)) {
    co_return fail(Errc::conflict,
                   fmt::format("workspace {} cannot run two copies here ({})", spec.name,
                               spec.port ? "its port is fixed by workspace.json"
                                         : "apps have no mount namespace of their own"));
  }
  if (pending_.count(spec.name)) {
    co_return fail(Errc::conflict, fmt::format("a new version of workspace {} is already starting", spec.name));
  }
  auto old = it->second;
  auto next = std::make_shared<Slot>();
  next->name = spec.name;
  next->dir = old->dir == "app" ? "app-b" : "app";
  pending_[spec.name] = next;
  const std::string name = spec.name;
  auto started = co_await launch_app(next, std::move(spec), std::move(on_phase), old.get());
  if (auto p = pending_.find(name); p != pending_.end() && p->second == next) pending_.erase(p);
  if (started.has_value() && (old->stopping || next->stopping || slots_[name] != old)) {
    // Stopped (or started anew) while the new version came up: it goes too.
    co_await stop_slot(next, grace);
    co_return fail(Errc::unavailable, "stopped while the new version started");
  }
  if (started.has_error()) {
    co_await stop_slot(next, std::chrono::seconds(0));  // an install or app it left behind
    co_return started.error();
  }
  slots_[name] = next;
  switched(started.value());
  next->log_line(fmt::format("the new version serves on port {}; stopping the old one (port {})",
                             started.value().port, old->port));
  // Requests already sent to the old copy get a moment to finish before it is asked to stop.
  co_await sleep_for(std::chrono::milliseconds(200));
  co_await stop_slot(old, grace);
  // Its folder goes (nothing accumulates); the next new version is made from this one.
  auto ex = co_await net::this_coro::executor;
  const fs::path old_dir = app_dir(*old);
  const fs::path old_key = deps_key_file(opts_.data_dir / "run" / name, old->dir);
  co_await net::post(pool_->get_executor(), net::use_awaitable);
  std::error_code ec;
  fs::remove(old_key, ec);
  fs::remove_all(old_dir, ec);
  co_await net::post(ex, net::use_awaitable);
  if (ec) logger()->warn("[ws={}] cannot remove the old app copy {}: {}", name, old_dir.string(), ec.message());
  co_return started;
}

net::awaitable<Result<RunningApp>> ProcessRuntime::launch_app(std::shared_ptr<Slot> slot, RunSpec spec,
                                                              PhaseCallback on_phase,
                                                              const Slot* previous) {
  auto log = logger();
  if (!plan_) {
    // The sandbox this host allows is weaker than asked: say so where the user looks.
    std::error_code dir_ec;
    fs::create_directories(opts_.data_dir / "logs", dir_ec);
    int fd = ::open(log_path(spec.name).c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    append_log_line(fd, "not starting: " + refusal_);
    if (fd >= 0) ::close(fd);
    log->error("[ws={}] not starting: {}", spec.name, refusal_);
    co_return fail(Errc::forbidden, refusal_);
  }

  auto stopped = [&]() -> Result<RunningApp> {
    return fail(Errc::unavailable, "stopped while starting");
  };

  // Port first: a full range is a clear, early error.
  int port = 0;
  if (spec.port) {
    if (!ports_.acquire_exact(*spec.port)) {
      co_return fail(Errc::unavailable,
                     fmt::format("port {} from workspace.json is already in use on this host: "
                                 "free it or remove \"port\"",
                                 *spec.port));
    }
    port = *spec.port;
  } else if (auto p = ports_.acquire()) {
    port = *p;
  } else {
    co_return fail(Errc::unavailable,
                   fmt::format("no free port left in runtime.ports {}-{}: stop a workspace or "
                               "widen the range",
                               opts_.port_min, opts_.port_max));
  }
  slot->port = port;
  // Every way out but a ready app gives the port back.
  struct PortGuard {
    ProcessRuntime& rt;
    Slot& slot;
    bool keep = false;
    ~PortGuard() {
      if (!keep) rt.release_port(slot);
    }
  } port_guard{*this, *slot};

  on_phase(Phase::preparing, "copying the source");
  fs::path run_dir = opts_.data_dir / "run" / spec.name;
  fs::path app_dir = this->app_dir(*slot);
  fs::path home_dir = run_dir / "home";
  const fs::path deps_key = deps_key_file(run_dir, slot->dir);
  // A new version beside the running one starts in an empty folder and takes the installed
  // dependencies over (linked) when their key is unchanged.
  fs::path link_deps_from;
  if (previous) {
    bool same = !spec.install.empty() &&
                read_small(deps_key_file(run_dir, previous->dir)) == spec.deps_key;
    if (same) link_deps_from = this->app_dir(*previous);
  }
  bool keep_deps = previous ? !link_deps_from.empty()
                            : !spec.install.empty() && read_small(deps_key) == spec.deps_key &&
                                  fs::exists(app_dir);
  ConfineSpec confine;
  confine.own_uid = plan_->own_uid;
  confine.namespaces = plan_->namespaces;
  confine.drop_caps = plan_->drop_caps;
  confine.no_new_privs = plan_->no_new_privs;
  confine.seccomp = plan_->seccomp;
  confine.rlimits = plan_->rlimits;
  confine.app_dir = app_dir.string();
  confine.home_dir = home_dir.string();
  confine.root_dir = sandbox_root(run_dir, slot->dir).string();
  confine.hostname = sandbox_hostname(spec.name);
  if (confine.own_uid) {
    // On this thread only, so two starts never pick the same uid.
    auto uid = assign_workspace_uid(opts_.data_dir, spec.name, opts_.uid_range);
    if (uid.has_error()) co_return uid.error();
    confine.uid = uid.value();
    confine.gid = static_cast<gid_t>(uid.value());
  }
  auto ex = co_await net::this_coro::executor;
  co_await net::post(pool_->get_executor(), net::use_awaitable);
  std::error_code ec;
  fs::create_directories(opts_.data_dir / "logs", ec);
  Result<void> copied = outcome::success();
  if (previous) {
    ::unlink(deps_key.c_str());
    fs::remove_all(app_dir, ec);
    fs::create_directories(app_dir, ec);
    for (const char* d : kDepFolders) {
      if (link_deps_from.empty() || copied.has_error()) break;
      std::error_code e2;
      if (!fs::is_directory(fs::symlink_status(link_deps_from / d, e2))) continue;
      std::optional<uid_t> owner;
      if (confine.own_uid) owner = confine.uid;
      copied = link_tree(link_deps_from / d, app_dir / d, owner);
    }
  }
  if (copied.has_value()) copied = refresh_app_dir(spec.source, app_dir, keep_deps);
  if (copied.has_value()) {
    fs::create_directories(home_dir, ec);
    if (confine.namespaces) fs::create_directories(confine.root_dir, ec);
    if (confine.own_uid) {
      // The workspace's uid owns its folders; the walk never follows a symlink.
      copied = chown_tree(app_dir, confine.uid, confine.gid);
      if (copied.has_value()) copied = chown_tree(home_dir, confine.uid, confine.gid);
    }
  }
  co_await net::post(ex, net::use_awaitable);
  if (copied.has_error()) {
    co_return copied.error();
  }
  slot->confine = confine;
  if (slot->stopping) {
    co_return stopped();
  }

  if (slot->log_fd < 0) {
    slot->log_fd = ::open(log_path(spec.name).c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (slot->log_fd < 0) {
      co_return fail(Errc::io, fmt::format("cannot open the log {}: {}", log_path(spec.name).string(),
                                           std::strerror(errno)));
    }
  }
  if (cgroups_) {
    // Keyed by this control plane's data folder too: two daemons on one host never share a
    // group (freezing one must not freeze the other's app of the same name).
    // A new version beside the running one has a group of its own ("<name>.app-b").
    slot->cgroup = Cgroup::create(stable_hash(opts_.data_dir.string()) + "/" + spec.name +
                                  (slot->dir == "app" ? "" : "." + slot->dir));
    slot->cgroup->set_pids(spec.pids);
    slot->cgroup->set_cpus(spec.cpus);
    slot->cgroup->set_memory(spec.install_memory);
  }

  auto env = base_env(spec, *slot, port);
  {
    std::string line = plan_->describe(opts_.uid_range);
    if (confine.own_uid) line += fmt::format(" (uid {}, gid {})", confine.uid, confine.gid);
    slot->log_line(line);
    log->info("[ws={}] {}", spec.name, line);
  }
  if (!spec.install.empty() && !keep_deps) {
    on_phase(Phase::installing, spec.install);
    slot->log_line("installing dependencies: " + spec.install);
    log->info("[ws={}] installing dependencies: {}", spec.name, spec.install);
    ::unlink(deps_key.c_str());
    auto rc = co_await run_step(*slot, spec.install, env);
    if (rc.has_error()) {
      co_return rc.error();
    }
    if (slot->stopping) {
      co_return stopped();
    }
    if (rc.value() != 0) {
      co_return fail(Errc::invalid_argument,
                     fmt::format("installing dependencies failed (`{}` exited with code {})",
                                 spec.install, rc.value()));
    }
    write_small(deps_key, spec.deps_key);
  } else if (keep_deps) {
    slot->log_line("dependencies unchanged since the last install; reusing them");
    if (previous) write_small(deps_key, spec.deps_key);
  }
  write_small(app_dir / ".container-ready", "ready");

  if (slot->cgroup) {
    slot->cgroup->set_memory(spec.memory);
    slot->oom_before = slot->cgroup->oom_kills();
  }
  on_phase(Phase::starting, spec.command);
  slot->log_line(fmt::format("starting: {} (PORT={})", spec.command, port));
  auto child = launch(*slot, spec.command, env);
  if (child.has_error()) {
    co_return child.error();
  }
  slot->app = child.value();
  slot->env = env;
  slot->namespaced = confine.namespaces;
  log->info("[ws={} pid={}] started `{}` on port {}", spec.name, slot->app->pid(), spec.command, port);

  // Ready when the app accepts a connection on 127.0.0.1 or ::1.
  auto deadline = std::chrono::steady_clock::now() + spec.ready_timeout;
  Duration probe_every = std::chrono::milliseconds(10);
  for (;;) {
    for (const char* host : {"127.0.0.1", "::1"}) {
      net::ip::tcp::socket s(ex);
      boost::system::error_code cec;
      net::ip::tcp::endpoint ep(net::ip::make_address(host), static_cast<unsigned short>(port));
      co_await s.async_connect(ep, net::redirect_error(net::use_awaitable, cec));
      if (!cec) {
        slot->log_line(fmt::format("ready on {}:{}", host, port));
        port_guard.keep = true;
        co_return RunningApp{host, port, slot->app->pid()};
      }
    }
    if (slot->app->exited() || slot->stopping) break;
    if (std::chrono::steady_clock::now() > deadline) {
      slot->app->signal(SIGKILL);
      co_await slot->app->wait();
      break;
    }
    // Probe often at first (most apps are up within tens of ms), then every 100 ms.
    co_await sleep_for(probe_every);
    probe_every = std::min<Duration>(probe_every * 3 / 2, std::chrono::milliseconds(100));
  }
  co_await slot->app->wait();
  auto info = exit_info(slot->app->status());
  slot->app.reset();
  slot->current.reset();
  if (slot->stopping) co_return stopped();
  if (std::chrono::steady_clock::now() > deadline) {
    co_return fail(Errc::timeout,
                   fmt::format("the app did not open port {} within {} (it must listen on $PORT)",
                               port, format_duration(spec.ready_timeout)));
  }
  co_return fail(Errc::invalid_argument,
                 fmt::format("the app {} before it opened port {}", info.describe(), port));
}

net::awaitable<ExitInfo> ProcessRuntime::wait_exit(std::string name) {
  auto it = slots_.find(name);
  if (it == slots_.end() || !it->second->app) co_return ExitInfo{0, 0, false, true};
  auto slot = it->second;
  auto app = slot->app;
  co_await app->wait();
  ExitInfo info = exit_info(app->status());
  info.requested = slot->stopping;
  if (slot->cgroup && slot->cgroup->oom_kills() > slot->oom_before) info.oom = true;
  if (slot->app == app) {
    slot->app.reset();
    slot->current.reset();
    release_port(*slot);
    slot->log_line("app " + info.describe());
  }
  co_return info;
}

net::awaitable<void> ProcessRuntime::stop(std::string name, Duration grace) {
  // A new version still starting beside the app goes too.
  if (auto p = pending_.find(name); p != pending_.end()) {
    auto next = p->second;
    co_await stop_slot(next, grace);
  }
  auto it = slots_.find(name);
  if (it == slots_.end()) co_return;
  auto slot = it->second;
  co_await stop_slot(slot, grace);
}

net::awaitable<void> ProcessRuntime::stop_slot(std::shared_ptr<Slot> slot, Duration grace) {
  const std::string& name = slot->name;
  slot->stopping = true;
  auto child = slot->current;
  (void)thaw_slot(*slot);  // frozen processes cannot take SIGTERM
  if (child && !child->exited()) {
    child->signal(SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + grace;
    while (!child->exited() && std::chrono::steady_clock::now() < deadline) {
      co_await sleep_for(std::chrono::milliseconds(25));
    }
    if (!child->exited()) {
      logger()->warn("[ws={} pid={}] did not stop within {}; killing it", name, child->pid(),
                     format_duration(grace));
      child->signal(SIGKILL);
    }
    co_await child->wait();
  }
  release_port(*slot);
  if (slot->cgroup) slot->cgroup->remove();
}

net::awaitable<Result<void>> ProcessRuntime::freeze(std::string name) {
  auto it = slots_.find(name);
  if (it == slots_.end() || !it->second->app || it->second->app->exited() || it->second->stopping) {
    co_return fail(Errc::not_found, "workspace '" + name + "' has no running app to freeze");
  }
  auto& slot = *it->second;
  if (slot.frozen) co_return outcome::success();
  if (slot.cgroup && slot.cgroup->has_freezer()) {
    if (!slot.cgroup->set_frozen(true)) {
      slot.cgroup->set_frozen(false);
      co_return fail(Errc::unavailable, "the cgroup freezer did not freeze workspace '" + name + "'");
    }
    slot.log_line("frozen (cgroup freezer): no activity; the next request resumes it");
  } else {
    slot.app->signal(SIGUSR1);  // init stops the app's process group
    slot.log_line("frozen (SIGSTOP): no activity; the next request resumes it");
  }
  slot.frozen = true;
  co_return outcome::success();
}

net::awaitable<Result<void>> ProcessRuntime::thaw(std::string name) {
  auto it = slots_.find(name);
  if (it == slots_.end()) co_return outcome::success();
  co_return thaw_slot(*it->second);
}

Result<void> ProcessRuntime::thaw_slot(Slot& slot) {
  if (!slot.frozen) return outcome::success();
  if (slot.cgroup && slot.cgroup->has_freezer()) {
    if (!slot.cgroup->set_frozen(false)) {
      return fail(Errc::unavailable, "the cgroup freezer did not thaw workspace '" + slot.name + "'");
    }
  } else if (slot.app) {
    slot.app->signal(SIGUSR2);
  }
  slot.frozen = false;
  slot.log_line("resumed");
  return outcome::success();
}

net::awaitable<Result<void>> ProcessRuntime::update_files(std::string name, fs::path source,
                                                          std::vector<std::string> paths) {
  auto it = slots_.find(name);
  if (it == slots_.end() || !it->second->app) {
    co_return fail(Errc::not_found, "workspace '" + name + "' has no running app");
  }
  fs::path app_dir = this->app_dir(*it->second);
  const auto& confine = it->second->confine;
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  if (confine.own_uid) {
    uid = confine.uid;
    gid = confine.gid;
  }
  for (const auto& p : paths) {
    // Neither side is followed through a symlink: the source's links are copied as links
    // (resolved inside the sandbox), and the running app cannot redirect the write.
    auto r = update_file_beneath(source, app_dir, p, uid, gid);
    if (r.has_error()) {
      co_return fail(r.error().code, fmt::format("cannot update {} in the running app: {}", p,
                                                 r.error().message));
    }
  }
  co_return outcome::success();
}

namespace {

// A command started by ProcessRuntime::exec: its output pipe and what has happened so far.
struct ExecRun {
  ExecRun(net::any_io_executor ex, int fd) : pipe(ex, fd), wake(ex) {}
  net::posix::stream_descriptor pipe;
  net::steady_timer wake;  // cancelled when the output ends or the command exits
  bool eof = false;
  bool exited = false;
  bool stopped = false;  // the sink asked to stop
};

net::awaitable<void> read_exec_output(std::shared_ptr<ExecRun> run, std::shared_ptr<Child> child,
                                      OutputSink output) {
  std::array<char, 16384> buf;
  for (;;) {
    boost::system::error_code ec;
    std::size_t n =
        co_await run->pipe.async_read_some(net::buffer(buf), net::redirect_error(net::use_awaitable, ec));
    if (n > 0 && !run->stopped && !output(std::string_view(buf.data(), n))) {
      run->stopped = true;
      kill_tree(child->pid());
    }
    if (ec) break;
  }
  run->eof = true;
  run->wake.cancel();
}

net::awaitable<void> watch_exec_exit(std::shared_ptr<ExecRun> run, std::shared_ptr<Child> child) {
  co_await child->wait();
  run->exited = true;
  run->wake.cancel();
}

}  // namespace

net::awaitable<Result<ExecOutcome>> ProcessRuntime::exec(std::string name,
                                                         std::vector<std::string> argv,
                                                         Duration timeout, OutputSink output) {
  auto it = slots_.find(name);
  if (it == slots_.end() || !it->second->app || it->second->app->exited() || it->second->stopping) {
    co_return fail(Errc::not_found, "workspace '" + name + "' has no running app");
  }
  if (argv.empty()) co_return fail(Errc::invalid_argument, "no command to run");
  auto slot = it->second;
  if (slot->frozen) {
    BOOST_OUTCOME_CO_TRY(co_await thaw(name));
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    co_return fail(Errc::io, fmt::format("cannot make a pipe for the command's output: {}",
                                         std::strerror(errno)));
  }
  std::string cmd = "exec";
  for (const auto& word : argv) cmd += " " + shell_quote(word);
  SpawnOptions so;
  so.self_exe = opts_.self_exe;
  so.shell_command = cmd;
  so.cwd = app_dir(*slot).string();
  so.env = init_env(*slot);
  so.log_fd = fds[1];
  // Beside the app: in its namespaces (when it has them) and its cgroup, never a new sandbox.
  if (slot->namespaced) so.join_namespaces_of = slot->app->pid();
  if (slot->cgroup) so.cgroup_dirs = slot->cgroup->dirs();
  auto child = Child::spawn(io_.get_executor(), so);
  ::close(fds[1]);
  if (child.has_error()) {
    ::close(fds[0]);
    co_return child.error();
  }
  auto ch = child.value();
  auto run = std::make_shared<ExecRun>(io_.get_executor(), fds[0]);
  OutputSink output_probe = output;
  spawn(io_, read_exec_output(run, ch, std::move(output)), "exec output of " + name);
  spawn(io_, watch_exec_exit(run, ch), "exec exit of " + name);
  auto now = [] { return std::chrono::steady_clock::now(); };
  auto deadline = now() + timeout;
  bool timed_out = false;
  // The output ends when every process holding the pipe is gone; something left in the
  // background after the command exits gets a moment, then the pipe is closed on it.
  constexpr auto kLinger = std::chrono::milliseconds(200);
  // A command that prints nothing is asked each second whether its output is still wanted
  // (an empty write), so one whose client went away is stopped then, not at its timeout.
  constexpr auto kProbe = std::chrono::seconds(1);
  while (!run->eof) {
    auto until = run->exited ? std::min(deadline, now() + kLinger) : deadline;
    run->wake.expires_at(std::min(until, now() + kProbe));
    boost::system::error_code ec;
    co_await run->wake.async_wait(net::redirect_error(net::use_awaitable, ec));
    if (run->eof) break;
    if (!run->stopped && !run->exited && !output_probe("")) {
      run->stopped = true;
      kill_tree(ch->pid());
    }
    if (now() < until) continue;  // woken early (the exit, a probe): wait on from here
    if (!run->exited && !timed_out) {
      timed_out = true;
      kill_tree(ch->pid());
      deadline = now() + std::chrono::seconds(2);
      continue;
    }
    run->pipe.close(ec);  // the reader ends with an error, which sets eof
    deadline = now() + std::chrono::seconds(1);
  }
  co_await ch->wait();
  auto info = exit_info(ch->status());
  int code = info.signal ? 128 + info.signal : info.code;
  co_return ExecOutcome{code, timed_out};
}

void ProcessRuntime::release_port(Slot& slot) {
  if (slot.port) ports_.release(slot.port);
  slot.port = 0;
}

void ProcessRuntime::kill_all() {
  for (auto* slots : {&slots_, &pending_}) {
    for (auto& [name, slot] : *slots) {
      if (slot->current && !slot->current->exited()) {
        slot->stopping = true;
        slot->current->signal(SIGKILL);
      }
    }
  }
}


namespace {

// Bytes a folder's files take (symlinks not followed).
std::uint64_t folder_bytes(const fs::path& p) {
  std::uint64_t total = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(p, fs::directory_options::skip_permission_denied, ec), end;
       !ec && it != end; it.increment(ec)) {
    std::error_code e2;
    if (it->is_regular_file(e2) && !it->is_symlink(e2)) total += it->file_size(e2);
  }
  return total;
}

// Whether anything is mounted at or below `dir` (a sandbox root still mounted).
bool has_mounts_below(const fs::path& dir) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  const std::string prefix = dir.string() + "/";
  while (std::getline(in, line)) {
    // "<id> <parent> <maj:min> <root> <mount point> ...": the fifth field.
    std::size_t pos = 0;
    for (int field = 0; field < 4 && pos != std::string::npos; ++field) pos = line.find(' ', pos + 1);
    if (pos == std::string::npos) continue;
    auto end = line.find(' ', pos + 1);
    std::string point = line.substr(pos + 1, end == std::string::npos ? std::string::npos : end - pos - 1);
    if (point == dir.string() || point.starts_with(prefix)) return true;
  }
  return false;
}

}  // namespace

net::awaitable<Result<std::vector<Reclaimed>>> ProcessRuntime::collect_garbage(GcPolicy policy) {
  std::vector<Reclaimed> out;
  if (!policy.workspaces_known) co_return out;
  // Workspaces that are gone and run nothing here (decided on this thread, where starts begin).
  std::vector<std::string> gone;
  std::error_code ec;
  const fs::path run = opts_.data_dir / "run";
  for (fs::directory_iterator it(run, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    std::error_code e2;
    if (name == "deps" || !it->is_directory(e2) || it->is_symlink(e2)) continue;
    if (policy.workspaces.count(name) || pending_.count(name)) continue;
    // A slot stays after its app stopped: only one stopped for good (its process ended) lets go.
    if (auto slot = slots_.find(name); slot != slots_.end()) {
      const auto& child = slot->second->current;
      if (!slot->second->stopping || (child && !child->exited())) continue;
    }
    gone.push_back(std::move(name));
  }
  if (gone.empty()) co_return out;
  auto ex = co_await net::this_coro::executor;
  co_await net::post(pool_->get_executor(), net::use_awaitable);
  const auto now = fs::file_time_type::clock::now();
  for (const auto& name : gone) {
    fs::path dir = run / name;
    // Its last use: the dependencies' install (deps-key), else the folder itself.
    std::error_code e2;
    auto used = fs::last_write_time(dir / "deps-key", e2);
    if (e2) used = fs::last_write_time(dir, e2);
    if (e2) continue;
    auto age = std::chrono::duration_cast<std::chrono::seconds>(now - used);
    if (age < policy.deps_keep) continue;
    Reclaimed r;
    r.kind = "deps";
    r.name = dir.string();
    r.bytes = folder_bytes(dir);
    r.reason = fmt::format("workspace {} is gone; its app copy and dependencies unused for {}", name,
                           format_duration(std::chrono::duration_cast<Duration>(age)));
    if (has_mounts_below(dir)) {
      r.error = "something is still mounted below it (a sandbox of a stopping app); tried again next time";
      r.bytes = 0;
    } else if (!policy.dry_run) {
      fs::remove_all(dir, e2);
      if (e2) {
        r.error = e2.message();
        r.bytes = 0;
      }
    }
    out.push_back(std::move(r));
  }
  co_await net::post(ex, net::use_awaitable);
  co_return out;
}

}  // namespace ck
