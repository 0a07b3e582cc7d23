#include "daemon/daemon.h"

#include <algorithm>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <sys/stat.h>

#include "api/api.h"
#include "api/auth_http.h"
#include "auth/auth.h"
#include "auth/authorize.h"
#include "daemon/backups.h"
#include "daemon/cleanup.h"
#include "core/hash.h"
#include "core/log.h"
#include "gateway/gateway.h"
#include "http/asio.h"
#include "git/workspaces.h"
#include "monitor/monitor.h"
#include "runtime/docker/docker_runtime.h"
#include "runtime/process/process_runtime.h"
#include "events/events.h"
#include "state/state.h"
#include "storage/dir/dir_storage.h"
#include "storage/dir/watcher.h"
#include "storage/s3/mirror.h"
#include "storage/s3/target.h"

#ifndef CK_VERSION
#define CK_VERSION "dev"
#endif

namespace ck {
namespace fs = std::filesystem;

namespace {

// Who reaches a private workspace through the gateway (auth::Auth::reach_private), remembered
// for a few seconds per session and workspace so proxied requests do not each wait on SQLite.
// A logout or a change of owner takes effect within kFor.
class PrivateGate {
 public:
  // `tls`: the gateway speaks TLS, so the session cookie is the __Host- one.
  PrivateGate(auth::Auth& auth, bool tls) : auth_(auth), cookie_name_(auth::session_cookie_name(tls)) {}
  PrivateAccess check(const std::string& workspace, std::string_view cookie_header) {
    auto session = cookie_value(cookie_header, cookie_name_);
    if (!session || session->empty()) return PrivateAccess::login;
    std::string key = *session + "\n" + workspace;
    auto now = std::chrono::steady_clock::now();
    {
      std::lock_guard lock(mu_);
      if (auto it = seen_.find(key); it != seen_.end() && it->second.until > now) return it->second.access;
    }
    PrivateAccess access;
    switch (auth_.reach_private(*session, workspace)) {
      case auth::Auth::Reach::allowed: access = PrivateAccess::allowed; break;
      case auth::Auth::Reach::login: access = PrivateAccess::login; break;
      default: access = PrivateAccess::forbidden; break;
    }
    std::lock_guard lock(mu_);
    if (seen_.size() >= kMaxEntries) seen_.clear();
    seen_[key] = Seen{access, now + kFor};
    return access;
  }

 private:
  static constexpr auto kFor = std::chrono::seconds(5);
  static constexpr std::size_t kMaxEntries = 10000;
  struct Seen {
    PrivateAccess access;
    std::chrono::steady_clock::time_point until;
  };
  auth::Auth& auth_;
  std::string_view cookie_name_;
  std::mutex mu_;
  std::unordered_map<std::string, Seen> seen_;
};

// POST /workspaces/{name}/run, on the control plane's thread.
net::awaitable<void> run_command(Runtime& runtime, std::string name, std::string service,
                                 std::vector<std::string> argv, Duration timeout,
                                 OutputSink output, std::function<void(Result<ExecOutcome>)> done) {
  auto r = co_await runtime.exec_in(name, std::move(service), std::move(argv), timeout,
                                    std::move(output));
  done(std::move(r));
}

// The docker runtime when an engine answers (runtime.kind auto or docker), else the process
// runtime (auto or process). Null after logging why when the chosen one cannot run.
std::unique_ptr<Runtime> make_runtime(net::io_context& io, const Config& config, const fs::path& data,
                                      const std::string& self_exe) {
  auto log = log::get("daemon");
  const std::string& kind = config.runtime.kind;
  std::string why;
  if (kind == "docker" || kind == "auto") {
    std::string socket = DockerEngine::default_socket(&why);
    if (!socket.empty()) {
      auto engine = std::make_unique<DockerEngine>(socket);
      auto connected = run_blocking(engine->connect());
      if (connected.has_value()) {
        DockerRuntimeOptions dro{data, config.runtime.port_min, config.runtime.port_max,
                                 config.images, stable_hash(data.string())};
        dro.egress = config.limits.egress;
        dro.build_memory = config.limits.build_memory;
        dro.build_timeout = config.limits.build_timeout;
        dro.compose_host_ports = config.runtime.compose_host_ports;
        auto rt = std::make_unique<DockerRuntime>(io, std::move(engine), std::move(dro));
        log->info("runtime: docker (engine on {}; isolation: {})", socket, rt->isolation());
        return rt;
      }
      why = connected.error().message;
    }
    if (kind == "docker") {
      log->error("runtime docker: {}: start the Docker engine (dockerd), set DOCKER_HOST=unix://PATH, "
                 "or use --runtime process",
                 why);
      return nullptr;
    }
  }
  ProcessRuntimeOptions popts;
  popts.data_dir = data;
  popts.port_min = config.runtime.port_min;
  popts.port_max = config.runtime.port_max;
  popts.self_exe = self_exe;
  popts.uid_range = UidRange{static_cast<uid_t>(config.runtime.uid_min),
                             static_cast<uid_t>(config.runtime.uid_max)};
  popts.allow_weak_sandbox = config.runtime.allow_weak_sandbox;
  auto rt = std::make_unique<ProcessRuntime>(io, std::move(popts));
  if (kind == "auto") {
    log->info("runtime: process, the embedded runtime ({}; isolation: {})", why, rt->isolation());
  } else {
    log->info("runtime: process (isolation: {})", rt->isolation());
  }
  return rt;
}

// S3 storage as the monitor sees it: the local mirror (a folder per workspace, read like dir
// storage), described by where its source really comes from.
class MirroredStorage final : public Storage {
 public:
  MirroredStorage(fs::path mirror_root, std::string url)
      : dir_(mirror_root), location_(fmt::format("{} (mirror in {})", url, mirror_root.string())) {}
  std::string kind() const override { return "s3"; }
  std::string location() const override { return location_; }
  Result<std::vector<StorageEntry>> list() override { return dir_.list(); }

 private:
  DirStorage dir_;
  std::string location_;
};

std::optional<std::string> process_env(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

// The workspace templates folder: the `templates` config key, else
// <dir of the binary>/../share/cloudyknight/templates (installed), else the source tree's
// templates/ (a binary in <repo>/build/, or the tree it was built from). Empty if none exists.
fs::path find_templates(const Config& config, const std::string& self_exe) {
  auto log = log::get("daemon");
  std::error_code ec;
  if (!config.templates.empty()) {
    fs::path p = fs::absolute(config.templates, ec);
    if (fs::is_directory(p, ec)) {
      log->info("templates: {} (config key templates)", p.string());
      return p;
    }
    log->warn("templates: {} (config key templates) is not a folder; looking next to the binary",
              p.string());
  }
  fs::path bin = fs::path(self_exe).parent_path();
  std::vector<std::pair<fs::path, std::string>> candidates = {
      {bin / ".." / "share" / "cloudyknight" / "templates", "installed with the binary"},
      {bin / ".." / "templates", "the source tree next to the build"},
  };
#ifdef CK_SOURCE_DIR
  candidates.emplace_back(fs::path(CK_SOURCE_DIR) / "templates", "the source tree it was built from");
#endif
  for (const auto& [dir, why] : candidates) {
    if (fs::is_directory(dir, ec)) {
      fs::path p = fs::weakly_canonical(dir, ec);
      log->info("templates: {} ({})", p.string(), why);
      return p;
    }
  }
  log->info("templates: none found (set the `templates` config key); creating from a template "
            "answers 404");
  return {};
}

}  // namespace

// Opens DATA/state.db. One that cannot be opened (corrupt, from a newer version) is moved
// aside and a new one started: it holds history and jobs, never the workspaces themselves.
std::unique_ptr<StateDb> open_state(const fs::path& data) {
  auto log = log::get("daemon");
  fs::path file = data / "state.db";
  auto db = StateDb::open(file);
  if (db.has_value()) return std::move(db.value());
  auto stamp = std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch()).count();
  fs::path aside = data / fmt::format("state.db.broken-{}", stamp);
  std::error_code ec;
  fs::rename(file, aside, ec);
  for (const char* suffix : {"-wal", "-shm"}) fs::remove(data / (std::string("state.db") + suffix), ec);
  log->warn("{}; moved it to {} and started a new one (workspaces are rebuilt from storage and the "
            "runtime; job and status history starts over)",
            db.error().message, aside.string());
  db = StateDb::open(file);
  if (db.has_value()) return std::move(db.value());
  log->error("{}: check that the data folder is writable and not full", db.error().message);
  return nullptr;
}

// gateway.public_url, the listen address and gateway.domain (core/public_url.h); `port` is the
// gateway's actual port (0: the configured one). The config was checked, so this cannot fail.
PublicAddress public_address(const Config& config, std::uint16_t port) {
  auto listen = parse_listen(config.gateway.listen);
  std::string host = listen.has_value() ? listen.value().first : "127.0.0.1";
  if (port == 0 && listen.has_value()) port = listen.value().second;
  auto a = make_public_address(config.gateway.public_url, host, port, config.gateway.domain,
                               config.gateway.tls_enabled());
  return a.has_value() ? a.value() : PublicAddress{};
}

MonitorOptions monitor_options(const Config& config) {
  MonitorOptions mo;
  mo.address = public_address(config, 0);
  mo.scan_interval = config.storage.scan_interval;
  mo.ready_timeout = config.runtime.ready_timeout;
  auto ms = [](Duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d); };
  mo.idle.idle_after = ms(config.idle.idle_after);
  mo.idle.background_after = ms(config.idle.background_after);
  mo.idle.stop_after = ms(config.idle.stop_after);
  mo.idle.grace = ms(config.idle.grace);
  mo.install_concurrency = config.runtime.install_concurrency;
  mo.start_jobs.max_attempts = config.jobs.max_attempts;
  mo.start_jobs.backoff_base = ms(config.jobs.backoff);
  mo.start_jobs.backoff_cap = ms(config.jobs.backoff_cap);
  mo.memory = config.limits.memory;
  mo.install_memory = config.limits.install_memory;
  mo.cpus = config.limits.cpus;
  mo.pids = config.limits.pids;
  mo.max_memory = config.limits.max_memory;
  mo.max_cpus = config.limits.max_cpus;
  mo.max_pids = config.limits.max_pids;
  return mo;
}

// The daemon's io_context, which can destroy its pending work (suspended coroutines among it)
// before the objects those coroutines refer to are destroyed. execution_context::shutdown() is
// what ~io_context does first; running it twice is allowed.
class DaemonContext : public net::io_context {
 public:
  using net::io_context::io_context;
  void destroy_pending_work() { shutdown(); }
};

int run_daemon(const Config& config, const std::string& self_exe) {
  auto log = log::get("daemon");
  std::signal(SIGPIPE, SIG_IGN);

  if (config.storage.kind != "dir" && config.storage.kind != "s3") {
    log->error("storage.kind '{}' is not supported by this version: use `storage.kind: dir` "
               "(or --workspaces DIR) or `storage.kind: s3` (or --storage s3://BUCKET/PREFIX)",
               config.storage.kind);
    return 1;
  }
  const bool s3 = config.storage.kind == "s3";
  if (config.runtime.kind == "swarm") {
    log->error("runtime 'swarm' is not available in this version yet: use --runtime docker, "
               "process or auto");
    return 1;
  }
  auto listen = parse_listen(config.gateway.listen);
  if (listen.has_error()) {
    log->error("{}", listen.error().message);
    return 1;
  }
  std::error_code ec;
  fs::path ws_root;
  if (!s3) {
    ws_root = fs::absolute(config.storage.path, ec);
    if (!fs::exists(ws_root, ec)) {
      fs::create_directories(ws_root, ec);
      if (ec) {
        log->error("cannot create the workspace folder {}: {}", ws_root.string(), ec.message());
        return 1;
      }
      log->info("created the workspace folder {}", ws_root.string());
    } else if (!fs::is_directory(ws_root, ec)) {
      log->error("{} is not a folder: point --workspaces at the folder that holds your workspaces",
                 ws_root.string());
      return 1;
    }
  }
  fs::path data = fs::absolute(config.data, ec);
  fs::create_directories(data, ec);
  if (ec || ::access(data.c_str(), W_OK) != 0) {
    log->error("cannot write to the data folder {}: {} (pass --data DIR)", data.string(),
               ec ? ec.message() : std::strerror(errno));
    return 1;
  }

  // S3 storage: the workspaces are served from a local mirror that S3Mirror keeps in step with
  // the bucket (DATA/mirror); from there on the wiring is the same as for a folder.
  std::unique_ptr<s3::Client> s3_client;
  std::unique_ptr<S3Mirror> mirror;
  std::optional<BackupService::Bucket> backup_bucket;  // a restore writes into the bucket
  if (s3) {
    auto target = s3::make_target(config.storage, process_env);
    if (target.has_error()) {
      log->error("{}", target.error().message);
      return 1;
    }
    const s3::Target& t = target.value();
    s3_client = std::make_unique<s3::Client>(t.options);
    S3MirrorOptions mo;
    mo.bucket = t.bucket;
    mo.prefix = t.prefix;
    mo.data = data;
    mo.interval = std::max(
        std::chrono::duration_cast<std::chrono::milliseconds>(config.storage.list_interval),
        std::chrono::milliseconds(100));
    mirror = std::make_unique<S3Mirror>(*s3_client, mo);
    backup_bucket = BackupService::Bucket{s3_client.get(), t.bucket, t.prefix, [m = mirror.get()] { m->poke(); }};
    ws_root = mirror->root();
    log->info("storage: {} at {} (credentials: {}), listed every {}", mirror->url(),
              t.options.endpoint.empty() ? "AWS" : t.options.endpoint, t.credentials_source,
              format_duration(mo.interval));
    // The first pass blocks, so the monitor starts on a complete mirror. If it fails, the mirror
    // from the last run is served and the mirror's thread keeps retrying.
    // (A failed listing was logged by the mirror, with what it does about it.)
    auto first = mirror->run_pass();
    if (first.has_value() && first.value().failed > 0) {
      log->warn("{} of {} workspaces could not be downloaded from {} yet (retrying every {})",
                first.value().failed, first.value().workspaces, mirror->url(),
                format_duration(mo.interval));
    }
    fs::create_directories(ws_root, ec);
    if (ec) {
      log->error("cannot create the mirror folder {}: {}", ws_root.string(), ec.message());
      return 1;
    }
  }

  DaemonContext io{1};
  // Catch SIGINT/SIGTERM from the start: one that arrives while the daemon is still starting
  // waits here and is handled once the loop runs, instead of killing the process mid-start.
  net::signal_set signals(io, SIGINT, SIGTERM);
  std::unique_ptr<Storage> storage_ptr;
  if (s3) {
    storage_ptr = std::make_unique<MirroredStorage>(ws_root, mirror->url());
  } else {
    storage_ptr = std::make_unique<DirStorage>(ws_root);
  }
  Storage& storage = *storage_ptr;
  auto runtime_ptr = make_runtime(io, config, data, self_exe);
  if (!runtime_ptr) return 1;
  Runtime& runtime = *runtime_ptr;
  auto db = open_state(data);
  if (!db) return 1;
  // The admin token: auth.admin_token when set (stored hashed), else generated on the first start
  // and shown once, on stderr directly and never through the logger (whose lines may be shipped
  // elsewhere); later starts print nothing. Only its hash is in state.db.
  auth::Auth auth_service(*db);
  if (auto admin = auth_service.ensure_admin_token(config.admin_token); admin.has_error()) {
    log->error("{}", admin.error().message);
    return 1;
  } else if (admin.value()) {
    std::string line = "admin token (shown once, store it now): " + *admin.value() + "\n";
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
  }
  SnapshotHolder snapshots;
  EventBus events;
  // git workspaces (folder storage): pulls, autocommits and webhooks run on a worker of their
  // own; a start waits for its pull (MonitorOptions::before_start).
  std::unique_ptr<GitWorkspaces> git;
  MonitorOptions mopts = monitor_options(config);
  if (!s3) {
    git = std::make_unique<GitWorkspaces>(ws_root, db.get(), events, config.git);
    git->set_keys_dir(data / "git" / "keys");
    // A branch preview belongs to whoever owns its workspace (and is private when it is).
    git->on_preview = [&auth_service](const std::string& preview, const std::string& workspace, bool added) {
      auto owner = auth_service.workspace_owner(workspace);
      std::string who = added && owner.has_value() ? owner.value().owner : "";
      bool is_public = !added || !owner.has_value() || owner.value().is_public;
      if (auto r = auth_service.set_workspace_owner(preview, who, is_public); r.has_error()) {
        log::get("git")->warn("[ws={}] cannot record its owner: {}", preview, r.error().message);
      }
    };
    mopts.before_start = [g = git.get()](const std::string& name, std::function<void()> done) {
      if (!g->binding(name)) return done();
      g->pull(name, "start", [done = std::move(done)](Result<git::PullResult>) { done(); });
    };
  }
  // Backups (issue 17): the schedule and restores run as jobs of the monitor's queue.
  auto backup_config = backup::backup_config(config, process_env);
  if (backup_config.has_error()) {
    log->error("{}", backup_config.error().message);
    return 1;
  }
  BackupService backups(std::move(backup_config.value()), ws_root, data, *db, events, std::move(backup_bucket));
  backups.add_job_handlers(mopts);
  backups.schedule();
  // Cleanup (issue 19): dependency volumes, images, trash, logs and state.db history, as jobs.
  CleanupService cleanup(io, runtime, *db, events, data, cleanup_settings(config),
                         [&snapshots]() -> Result<std::set<std::string>> {
                           auto snap = snapshots.load();
                           if (!snap) return fail(Errc::unavailable, "the workspaces are not listed yet");
                           if (!snap->storage_error.empty()) {
                             return fail(Errc::unavailable, "storage could not be listed: " + snap->storage_error);
                           }
                           std::set<std::string> names;
                           for (const auto& w : snap->workspaces) names.insert(w.name);
                           return names;
                         });
  cleanup.add_job_handlers(mopts);
  cleanup.schedule();
  Monitor monitor(io, storage, runtime, snapshots, events, *db, mopts);
  WatcherOptions wo;
  wo.debounce = std::chrono::duration_cast<std::chrono::milliseconds>(config.storage.debounce);
  DirWatcher* watcher_ptr = nullptr;
  DirWatcher watcher(io, ws_root, wo, [&monitor, &watcher_ptr, g = git.get(), &ws_root](WatchBatch batch) {
    monitor.set_polling(watcher_ptr->degraded());
    monitor.on_changes(batch);
    if (!g) return;
    // A workspace.json that now names a remote, in a folder with no repository yet: clone it.
    for (const auto& name : batch.workspaces) {
      auto f = batch.files.find(name);
      if (f == batch.files.end() || !f->second.count("workspace.json") || git::is_repository(ws_root / name)) continue;
      if (g->binding(name)) g->pull(name, "bind", [](Result<git::PullResult>) {});
    }
  });
  watcher_ptr = &watcher;
  if (auto w = watcher.start(); w.has_error()) {
    log->warn("{}; polling the workspace folder every {} instead", w.error().message,
              format_duration(config.storage.scan_interval));
    monitor.set_polling(true);
  } else {
    monitor.set_polling(watcher.degraded());
  }
  if (mirror) mirror->start();

  GatewayOptions go;
  go.host = listen.value().first;
  go.port = listen.value().second;
  go.threads = config.gateway.threads;
  go.request_timeout = config.gateway.request_timeout;
  go.max_body = config.gateway.max_body;
  go.max_header = config.gateway.max_header;
  go.max_file_body = config.gateway.max_file_body;
  go.wake_timeout = config.idle.wake_timeout;
  go.live_reload = config.gateway.live_reload;
  go.event_buffer = config.gateway.event_buffer;
  go.max_connections = config.gateway.max_connections;
  go.max_connections_per_ip = config.gateway.max_connections_per_ip;
  go.header_timeout = config.gateway.header_timeout;
  go.ws_idle_timeout = config.gateway.ws_idle_timeout;
  go.hosts = HostRouting{config.gateway.domain, config.gateway.control_host};
  go.tls = config.gateway.tls_pairs();
  go.tls_reload = config.gateway.tls_reload;
  go.redirect_http = config.gateway.redirect_http;
  go.hsts = config.gateway.hsts;
  const bool tls = !go.tls.empty();
  std::string display_host = go.host == "0.0.0.0" ? "127.0.0.1" : go.host;
  if (display_host.find(':') != std::string::npos) display_host = "[" + display_host + "]";
  // The API is built once the port is known, before start() runs the worker threads (their
  // creation orders this write before any request reads it).
  std::unique_ptr<ControlApi> api;
  GatewayHooks hooks;
  hooks.events = &events;
  hooks.wake = [&io, &monitor](const std::string& name) {
    net::post(io, [&monitor, name] { monitor.wake(name); });
  };
  PrivateGate gate(auth_service, tls);
  hooks.session_cookie = std::string(auth::kSessionCookie);
  hooks.private_access = [&gate](const std::string& name, std::string_view cookie) {
    return gate.check(name, cookie);
  };
  hooks.event_visibility = [&auth_service, tls](std::string_view cookie, std::string_view authorization)
      -> GatewayHooks::WorkspaceVisible {
    // The client's principal once, then auth::authorize per workspace (owner records are
    // cached by Auth, so an event costs no SQLite read). Not in the snapshot: private, unowned.
    auto who = credentials_of(auth_service, authorization, cookie, tls);
    std::shared_ptr<const auth::Principal> principal;
    if (who) principal = std::make_shared<const auth::Principal>(std::move(*who));
    return [&auth_service, principal](const std::string& name, const WorkspaceView* ws) {
      auto record = auth_service.owner_record(name, ws ? ws->is_public : false);
      return auth::authorize(principal.get(), record, auth::Access::see) == auth::Decision::allowed;
    };
  };
  Gateway gateway(go, snapshots, [&api](const http::Request& r) { return api->handle(r); }, hooks);

  monitor.start();
  auto port = gateway.listen();
  if (port.has_error()) {
    log->error("{}", port.error().message);
    if (mirror) mirror->stop();
    watcher.stop();
    net::co_spawn(io, monitor.shutdown(), [&](std::exception_ptr) { io.stop(); });
    io.run();
    return 1;
  }
  const PublicAddress address = public_address(config, port.value());
  gateway.set_address(address);
  monitor.set_address(address);
  std::string base = fmt::format("{}://{}:{}/", tls ? "https" : "http", display_host, port.value());
  StorageEventsHook storage_events;
  if (mirror) {
    storage_events = [m = mirror.get()](const std::vector<std::string>& keys) { m->notify(keys); };
  }
  ApiServices services;
  services.auth = &auth_service;
  services.act = [&io, &monitor](const std::string& name, WorkspaceAction action) {
    net::post(io, [&monitor, name, action] { monitor.act(name, action); });
  };
  services.log_path = [&runtime](const std::string& name) { return runtime.log_path(name); };
  services.workspaces_root = ws_root;
  services.dir_storage = !s3;
  services.max_file_bytes = config.gateway.max_file_body;
  services.max_deploy_bytes = config.gateway.max_body;
  services.deploy_index_dir = data / "deploy-index";
  services.trash_dir = data / "trash";
  services.templates_dir = find_templates(config, self_exe);
  services.run = [&io, &runtime](const std::string& name, const std::string& service,
                                 std::vector<std::string> argv, Duration timeout,
                                 OutputSink output, std::function<void(Result<ExecOutcome>)> done) {
    spawn(io,
          run_command(runtime, name, service, std::move(argv), timeout, std::move(output),
                      std::move(done)),
          "run a command in " + name);
  };
  if (mirror) {
    services.publish = [m = mirror.get()](const std::string& name, fs::path folder,
                                          std::function<void(Result<void>)> done) {
      m->publish(name, std::move(folder), std::move(done));
    };
    services.unpublish = [m = mirror.get()](const std::string& name,
                                            std::function<void(Result<std::size_t>)> done) {
      m->remove(name, std::move(done));
    };
    services.write_file = [m = mirror.get()](
                              const std::string& name, const std::string& rel, std::string body,
                              files::Conditions when,
                              std::function<void(Result<files::Written>, std::string)> done) {
      m->write_file(name, rel, std::move(body), std::move(when), std::move(done));
    };
    services.delete_file = [m = mirror.get()](const std::string& name, const std::string& rel,
                                              files::Conditions when,
                                              std::function<void(Result<void>, std::string)> done) {
      m->delete_file(name, rel, std::move(when), std::move(done));
    };
    services.sync_state = [m = mirror.get()](const std::string& name) {
      auto st = m->state(name);
      return SyncState{st.error, st.last_pass_ms};
    };
  }
  services.sync = [&io, &monitor, m = mirror.get(), g = git.get()](const std::string& name,
                                                                    std::function<void(Result<SyncOutcome>)> done) {
    if (g && g->binding(name)) {  // a git workspace: pull it, then rescan
      g->pull(name, "sync", [&io, &monitor, done = std::move(done)](Result<git::PullResult> r) {
        if (r.has_error()) return done(r.error());
        SyncOutcome o;
        o.storage = "dir";
        o.git = true;
        o.git_updated = r.value().updated;
        o.git_head = r.value().new_head;
        o.git_changed = r.value().changed.size();
        net::post(io, [&monitor, done, o] {
          monitor.scan_now();
          done(o);
        });
      });
      return;
    }
    if (!m) {  // a folder: rescan it now
      net::post(io, [&monitor, done = std::move(done)] {
        monitor.scan_now();
        SyncOutcome o;
        o.storage = "dir";
        done(o);
      });
      return;
    }
    m->pass_now([done = std::move(done), name](Result<MirrorPass> pass) {
      if (pass.has_error()) return done(pass.error());
      const auto& p = pass.value();
      SyncOutcome o;
      o.storage = "s3";
      o.pulled = p.pulled;
      o.removed = p.removed;
      o.failed = p.failed;
      o.files = p.files;
      done(o);
    });
  };
  if (git) add_git_services(services, *git, data, self_exe);
  services.cleanup.start = [&cleanup]() -> Result<nlohmann::json> {
    BOOST_OUTCOME_TRY(job, cleanup.request());
    return nlohmann::json{{"job", {{"id", job.id}, {"kind", job.kind}, {"state", std::string(job_state_name(job.state))}}}};
  };
  services.cleanup.plan = [&cleanup](std::function<void(Result<nlohmann::json>)> done) {
    cleanup.plan([done = std::move(done)](Result<CleanupReport> r) {
      if (r.has_error()) return done(r.error());
      done(cleanup_report_json(r.value()));
    });
  };
  services.cleanup.last = [&cleanup] { return cleanup.last(); };
  add_backup_services(services, backups);  // none configured: GET /backups lists no destination
  ApiInfo info;
  info.version = CK_VERSION;
  info.listen_url = base;
  info.started = std::chrono::system_clock::now();
  info.domain = config.gateway.domain;
  info.control_host = config.gateway.control_host;
  info.port = port.value();
  info.address = address;
  api = std::make_unique<ControlApi>(snapshots, std::move(info),
                                     db.get(), std::move(storage_events), std::move(services));
  // Said before the gateway answers: a client that sees it healthy finds the address logged.
  log->info("CloudyKnight {} is serving {} workspaces from {} at {}", CK_VERSION,
            snapshots.load()->workspaces.size(), storage.location(), base);
  for (const auto& w : snapshots.load()->workspaces) {
    log->info("  {}{}/  ({}{})", base, w.name, w.type, w.matched.empty() ? "" : " — " + w.matched);
  }
  log->info("  {}monitor/api/v1/workspaces  (API)", base);
  if (tls && !config.gateway.redirect_http.empty()) {
    log->info("  http://{}/ answers every request with a redirect to https", config.gateway.redirect_http);
  }
  gateway.start();
  if (git) git->start();
  if (mirror) {
    log->info("  {}monitor/api/v1/storage/events  (MinIO bucket-notification webhook, with a "
              "deploy-scope API token as its auth_token: changes show up at once instead of within {})",
              base, format_duration(config.storage.list_interval));
  }

  bool stopping = false;
  signals.async_wait([&](const boost::system::error_code& e, int sig) {
    if (e || stopping) return;
    stopping = true;
    log->info("received {}; stopping workspaces", sig == SIGINT ? "SIGINT" : "SIGTERM");
    gateway.stop();
    // The mirror first: it finishes the pass in progress (stopping between workspaces), so no
    // download lands in the mirror while the monitor stops the workspaces.
    if (mirror) mirror->stop();
    watcher.stop();
    // A member coroutine, not a capturing lambda: a lambda's captures die with the handler.
    net::co_spawn(io, monitor.shutdown(), [&](std::exception_ptr) {
      log->info("stopped");
      io.stop();
    });
  });
  io.run();
  // The git worker's callbacks post to the monitor's loop: stop it while the monitor exists.
  if (git) git->stop();
  // The same for backup and restore jobs (they stop between files).
  backups.stop();
  cleanup.stop();
  // Coroutines still suspended here (a start in the middle of an install) are destroyed with
  // the io_context's pending work; their destructors reach into the runtime, the monitor and
  // the gateway, so that happens now, while those exist (it used to happen in ~io_context,
  // after the runtime declared below it was gone: a use after free at exit).
  io.destroy_pending_work();
  return 0;
}

}  // namespace ck
