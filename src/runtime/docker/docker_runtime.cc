#include "runtime/docker/docker_runtime.h"
#include "runtime/docker/gc.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/write.hpp>
#include <fcntl.h>
#include <fmt/format.h>
#include <fstream>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "core/files.h"
#include "core/hash.h"
#include "core/log.h"
#include "runtime/docker/archive.h"
#include "runtime/docker/compose_plan.h"
#include "runtime/docker/images.h"
#include "runtime/docker/plan.h"
#include "runtime/docker/slot.h"

namespace ck {
namespace fs = std::filesystem;

namespace {

auto logger() {
  static auto l = log::get("runtime");
  return l;
}

long unix_now() { return static_cast<long>(std::time(nullptr)); }

// An app is ready when a request to its published port gets any answer at all. A bare TCP
// connect proves nothing here: Docker's userland proxy accepts on the host port even while
// nothing listens inside the container, then closes the connection without a byte.
net::awaitable<bool> answers_http(std::string host, int port, Duration timeout) {
  auto ex = co_await net::this_coro::executor;
  net::ip::tcp::socket sock(ex);
  net::steady_timer timer(ex);
  timer.expires_after(timeout);
  bool timed_out = false;
  timer.async_wait([&](const boost::system::error_code& ec) {
    if (ec) return;
    timed_out = true;
    boost::system::error_code ignored;
    sock.close(ignored);
  });
  boost::system::error_code ec;
  auto addr = net::ip::make_address(host, ec);
  if (ec) co_return false;
  net::ip::tcp::endpoint ep(addr, static_cast<unsigned short>(port));
  co_await sock.async_connect(ep, net::redirect_error(net::use_awaitable, ec));
  bool ok = false;
  if (!ec) {
    static constexpr std::string_view kProbe =
        "GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: cloudyknight-probe\r\nConnection: close\r\n\r\n";
    co_await net::async_write(sock, net::buffer(kProbe), net::redirect_error(net::use_awaitable, ec));
    char byte;
    if (!ec) {
      std::size_t n = co_await sock.async_read_some(net::buffer(&byte, 1),
                                                    net::redirect_error(net::use_awaitable, ec));
      ok = n > 0;
    }
  }
  timer.cancel();
  if (!timed_out) {
    boost::system::error_code ignored;
    sock.close(ignored);
  }
  co_return ok;
}

ExitInfo exit_from_state(const json& state, int fallback_code) {
  // docker-init reports an app killed by a signal as 128+signal.
  ExitInfo e = exit_from_code(state.is_object() ? state.value("ExitCode", fallback_code) : fallback_code);
  e.oom = state.is_object() && state.value("OOMKilled", false);
  return e;
}

std::string label(const json& c, const std::string& key) {
  const auto& labels = c.contains("Labels") ? c["Labels"] : c["Config"]["Labels"];
  if (!labels.is_object()) return "";
  auto it = labels.find(key);
  return it != labels.end() && it->is_string() ? it->get<std::string>() : "";
}


// Installs that finished, by dependency volume, so a warm start skips the install container.
// Its mtime is the volume's last use (touched by every start), for the cleanup (gc.h).
fs::path deps_record(const fs::path& data_dir, const std::string& volume) {
  return deps_use_record(data_dir, volume);
}

// DATA/run/<name>/superseded: the id of the container a new version is replacing (written before
// the new version starts, removed once the old container is gone). A control plane killed
// meanwhile must not adopt that container at its next start: it runs outdated source.
fs::path superseded_record(const fs::path& data_dir, const std::string& name) {
  return data_dir / "run" / name / "superseded";
}

std::set<std::string> read_superseded(const fs::path& data_dir, const std::string& name) {
  std::set<std::string> ids;
  std::ifstream in(superseded_record(data_dir, name));
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) ids.insert(line);
  }
  return ids;
}

// A changed path the monitor reports: relative, without "..": safe to name under /app.
bool valid_hmr_path(const std::string& p) {
  if (p.empty() || p.front() == '/') return false;
  for (size_t start = 0; start <= p.size();) {
    size_t end = p.find('/', start);
    if (end == std::string::npos) end = p.size();
    std::string_view part(p.data() + start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

}  // namespace


DockerRuntime::DockerRuntime(net::io_context& io, std::unique_ptr<DockerEngine> engine,
                             DockerRuntimeOptions opts)
    : io_(io), engine_(std::move(engine)), opts_(std::move(opts)), ports_(opts_.port_min, opts_.port_max) {
  install_host_firewall();
  spawn(io_, watch_events(), "docker events");
}

DockerRuntime::~DockerRuntime() { closing_ = true; }

std::string DockerRuntime::isolation() const {
  return fmt::format(
      "Docker {} containers: all capabilities dropped, no-new-privileges, source mounted "
      "read-only, memory/cpu/pids limits, a bridge network per workspace ({}), dependency "
      "volumes per workspace, {}",
      engine_->engine_version(),
      opts_.egress ? "outbound connections allowed"
                   : "internal: no outbound connections, reached on its bridge address",
      firewall_);
}

fs::path DockerRuntime::log_path(const std::string& name) const {
  return workspace_log_path(opts_.data_dir, name);
}

void DockerRuntime::release_port(Slot& slot) {
  if (slot.port) ports_.release(slot.port);
  slot.port = 0;
}

net::awaitable<Result<std::string>> DockerRuntime::prepare_image(const RunSpec& spec,
                                                                 std::shared_ptr<Slot> slot,
                                                                 int& container_port) {
  container_port = spec.port.value_or(kDefaultContainerPort);
  if (spec.type != "dockerfile") {
    auto configured = opts_.images.count(spec.type) ? opts_.images.at(spec.type) : offline_image(spec.type);
    bool explicit_choice = !spec.image.empty();
    co_return co_await resolve_image(*engine_, spec.type, explicit_choice ? spec.image : configured,
                                     explicit_choice);
  }
  // A Dockerfile workspace: build its folder (filtered by .dockerignore) as its own image.
  std::string tag = fmt::format("cloudyknight-ws/{}:latest", spec.name);
  fs::path tar = opts_.data_dir / "run" / spec.name / "context.tar";
  std::error_code ec;
  fs::create_directories(tar.parent_path(), ec);
  slot->log_line("building the image from the Dockerfile");
  auto written = write_tar(spec.source, tar, docker_context_filter(DockerIgnore::load(spec.source)));
  if (written.has_error()) co_return written.error();
  int fd = slot->log_fd;
  json labels = {{"cloudyknight.managed", "true"},
                 {"cloudyknight.workspace", spec.name},
                 {"cloudyknight.instance", opts_.instance}};
  std::function<void(std::string_view)> progress = [fd](std::string_view line) {
    std::string l = std::string(line) + "\n";
    if (fd >= 0) (void)!::write(fd, l.data(), l.size());
  };
  BuildLimits limits;
  limits.memory = opts_.build_memory ? opts_.build_memory : spec.install_memory;
  limits.cpus = spec.cpus;
  limits.timeout = opts_.build_timeout;
  slot->log_line(fmt::format("image build limits: memory {}, {} CPUs, at most {}",
                             format_size(limits.memory), limits.cpus,
                             format_duration(limits.timeout)));
  auto built = co_await engine_->build_image(tar, tag, std::move(labels), std::move(progress), limits);
  fs::remove(tar, ec);
  if (built.has_error()) co_return built.error();
  // The port the image says it listens on, unless workspace.json says one.
  if (!spec.port) container_port = co_await exposed_port(*engine_, tag, kDefaultContainerPort);
  co_return tag;
}

net::awaitable<Result<void>> DockerRuntime::install(const RunSpec& spec, const std::string& image,
                                                    std::shared_ptr<Slot> slot) {
  std::string volume = deps_volume(spec, image);
  slot->deps_volume = volume;
  // One install per dependency volume at a time; whoever waits finds it done.
  while (installing_.count(volume)) {
    co_await sleep_for(std::chrono::milliseconds(200));
    if (slot->stopping) co_return fail(Errc::unavailable, "stopped while starting");
  }
  fs::path record = deps_record(opts_.data_dir, volume);
  // Argument lists are built outside co_await expressions: GCC 12 rejects braced lists there.
  std::vector<std::string> filter = {"cloudyknight.deps=" + volume};
  auto vols = co_await engine_->list_volumes(std::move(filter));
  bool volume_exists = vols.has_value() && vols.value().is_array() && !vols.value().empty();
  if (volume_exists && fs::exists(record)) {
    slot->log_line("dependencies unchanged (volume " + volume + "); skipping the install");
    std::error_code ec;
    fs::last_write_time(record, fs::file_time_type::clock::now(), ec);  // its last use
    co_await remove_old_deps(spec.name, volume);
    co_return outcome::success();
  }
  installing_.insert(volume);
  auto r = co_await run_install(spec, image, slot);
  installing_.erase(volume);
  if (r.has_value()) {
    std::error_code ec;
    fs::create_directories(record.parent_path(), ec);
    std::ofstream(record) << spec.deps_key << "\n";
    co_await remove_old_deps(spec.name, volume);
  }
  co_return r;
}

net::awaitable<Result<void>> DockerRuntime::run_install(const RunSpec& spec, const std::string& image,
                                                        std::shared_ptr<Slot> slot) {
  auto net = plan_network(spec.name, opts_.egress);
  BOOST_OUTCOME_CO_TRYV(co_await ensure_network(net.install, spec.name, false));
  auto plan = plan_install(spec, image, net);
  auto log = logger();
  slot->log_line(fmt::format("installing dependencies in {}: {}", plan.name, spec.install));
  log->info("[ws={}] installing dependencies: {}", spec.name, spec.install);
  BOOST_OUTCOME_CO_TRY(id, co_await create(plan));
  slot->install_container = id;
  auto started = co_await engine_->start_container(id);
  if (started.has_error()) {
    (void)co_await engine_->remove_container(id);
    slot->install_container.clear();
    co_return started.error();
  }
  spawn(io_, follow_logs(slot, id, 0), "install logs " + spec.name);
  auto code = co_await engine_->wait_container(id);
  auto state = co_await engine_->inspect_container(id);
  (void)co_await engine_->remove_container(id);
  slot->install_container.clear();
  if (slot->stopping) co_return fail(Errc::unavailable, "stopped while starting");
  if (code.has_error()) co_return code.error();
  ExitInfo e = exit_from_state(state.has_value() ? state.value()["State"] : json(), code.value());
  if (e.oom) {
    co_return fail(Errc::invalid_argument,
                   fmt::format("installing dependencies ran out of memory (limit {}): raise "
                               "limits.install_memory",
                               format_size(spec.install_memory)));
  }
  if (e.code != 0 || e.signal != 0) {
    co_return fail(Errc::invalid_argument,
                   fmt::format("installing dependencies failed (`{}` {})", spec.install, e.describe()));
  }
  co_return outcome::success();
}

net::awaitable<Result<RunningApp>> DockerRuntime::start(RunSpec spec, PhaseCallback on_phase) {
  auto& slot_ref = slots_[spec.name];
  if (!slot_ref) slot_ref = std::make_shared<Slot>(io_);
  auto slot = slot_ref;
  if (!slot->container.empty() && !slot->exited) {
    co_return fail(Errc::already_exists, fmt::format("workspace {} is already running", spec.name));
  }
  if (pending_.count(spec.name)) {
    co_return fail(Errc::conflict, fmt::format("a new version of workspace {} is starting", spec.name));
  }
  slot->name = spec.name;
  slot->stopping = false;
  slot->container.clear();
  slot->second_name = false;
  slot->exited.reset();
  slot->oom_seen = false;
  auto stopped = []() -> Result<RunningApp> { return fail(Errc::unavailable, "stopped while starting"); };
  if (slot->log_fd < 0) {
    std::error_code ec;
    fs::create_directories(opts_.data_dir / "logs", ec);
    slot->log_fd = ::open(log_path(spec.name).c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  }

  if (spec.type == "compose") co_return co_await start_compose(std::move(spec), on_phase, slot);
  slot->compose = false;
  slot->members.clear();
  on_phase(Phase::preparing, "preparing the image");
  int container_port = 0;
  BOOST_OUTCOME_CO_TRY(image, co_await prepare_image(spec, slot, container_port));
  if (slot->stopping) co_return stopped();
  auto net = plan_network(spec.name, opts_.egress);
  auto current = plan_app(spec, image, container_port, 0, net);
  std::string hash = current.labels["cloudyknight.spec"];
  std::string deps;  // the dependency volume a current container mounts, if any
  for (const auto& v : current.volumes) {
    if (v.name.starts_with("ck-deps-")) deps = v.name;
  }

  // Adopt the container a previous control plane started, if it is current (of two, as a
  // control plane killed during a blue/green replace leaves them, the newer); remove the rest.
  std::vector<std::string> mine = {"cloudyknight.instance=" + opts_.instance,
                                   "cloudyknight.workspace=" + spec.name};
  auto existing = co_await engine_->list_containers(std::move(mine));
  if (existing.has_error()) co_return existing.error();
  const json& list = existing.value();
  const std::set<std::string> superseded = read_superseded(opts_.data_dir, spec.name);
  std::optional<Result<RunningApp>> adopted;
  std::set<std::string> handled;  // adopted, or removed while trying
  for (std::size_t i : adoption_order(list, hash, net.internal, superseded)) {
    const json& c = list[i];
    std::string id = c.value("Id", "");
    int hp = published_loopback_port(c);
    handled.insert(id);
    if (net.internal) {
      auto ip = co_await container_address(id, net.app);
      if (ip.has_error()) {
        logger()->warn("[ws={}] cannot adopt {}: {}", spec.name, id.substr(0, 12), ip.error().message);
        (void)co_await engine_->remove_container(id);
        continue;
      }
      slot->host = ip.value();
      slot->app_port = container_port;
    } else {
      ports_.mark_taken(hp);
      slot->port = hp;
      slot->host = "127.0.0.1";
      slot->app_port = hp;
    }
    slot->container = id;
    std::string name = c.contains("Names") && c["Names"].is_array() && !c["Names"].empty() &&
                               c["Names"][0].is_string()
                           ? c["Names"][0].get<std::string>()
                           : "";
    slot->second_name = is_second_app_name(spec.name, name);
    logger()->info("[ws={}] adopted running container {} on port {}", spec.name, id.substr(0, 12), hp);
    slot->log_line(fmt::format("control plane restarted; adopted container {}", id.substr(0, 12)));
    follow(slot, id, unix_now());
    auto ready = co_await wait_ready(slot, id, std::chrono::seconds(10));
    if (ready.has_value() || slot->stopping) {
      adopted = std::move(ready);
      break;
    }
    // It runs but does not answer: replace it like an outdated one.
    logger()->warn("[ws={}] adopted container {} does not answer ({}); replacing it", spec.name,
                   id.substr(0, 12), ready.error().message);
    release_port(*slot);
    slot->container.clear();
    slot->exited.reset();
    (void)co_await engine_->remove_container(id);
  }
  for (const auto& c : list) {
    std::string id = c.value("Id", "");
    if (handled.count(id)) continue;
    if (superseded.count(id)) {
      logger()->info("[ws={}] removing container {}: a new version was replacing it when the "
                     "control plane stopped",
                     spec.name, id.substr(0, 12));
    } else {
      logger()->info("[ws={}] removing {} container {}", spec.name,
                     c.value("State", "") == "running" ? "outdated" : "stopped", id.substr(0, 12));
    }
    (void)co_await engine_->remove_container(id);
  }
  if (!superseded.empty()) {
    std::error_code ec;
    fs::remove(superseded_record(opts_.data_dir, spec.name), ec);
  }
  if (adopted) {
    if (adopted->has_value() && !deps.empty()) {
      slot->deps_volume = deps;
      co_await remove_old_deps(spec.name, deps);  // the other container's, when its key differed
    }
    co_return std::move(*adopted);
  }
  co_return co_await launch(slot, std::move(spec), std::move(image), container_port, on_phase);
}

// Network, port, dependencies and the app container for `slot` (a start, or a new version
// beside the running one), up to the app answering.
net::awaitable<Result<RunningApp>> DockerRuntime::launch(std::shared_ptr<Slot> slot, RunSpec spec,
                                                         std::string image, int container_port,
                                                         PhaseCallback on_phase) {
  auto stopped = []() -> Result<RunningApp> { return fail(Errc::unavailable, "stopped while starting"); };
  auto net = plan_network(spec.name, opts_.egress);
  // The workspace's own network (adopted when it exists), before anything joins it.
  BOOST_OUTCOME_CO_TRYV(co_await ensure_network(net.app, spec.name, net.internal));
  std::optional<int> port = 0;
  if (!net.internal) {  // nothing can be published on an internal network
    port = ports_.acquire();
    if (!port) {
      co_return fail(Errc::unavailable,
                     fmt::format("no free port left in runtime.ports {}-{}: stop a workspace or "
                                 "widen the range",
                                 opts_.port_min, opts_.port_max));
    }
  }
  slot->port = *port;
  struct PortGuard {
    DockerRuntime& rt;
    Slot& slot;
    bool keep = false;
    ~PortGuard() {
      if (!keep) rt.release_port(slot);
    }
  } port_guard{*this, *slot};

  if (spec.type != "dockerfile" && !spec.install.empty()) {
    on_phase(Phase::installing, spec.install);
    BOOST_OUTCOME_CO_TRYV(co_await install(spec, image, slot));
    if (slot->stopping) co_return stopped();
  }

  on_phase(Phase::starting, spec.command);
  auto plan = plan_app(spec, image, container_port, *port, net);
  plan.name = app_container_name(spec.name, slot->second_name);
  // When it was made, for adoption (adoption_order): not part of the spec hash.
  plan.labels["cloudyknight.created"] = std::to_string(
      std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count());
  BOOST_OUTCOME_CO_TRY(id, co_await create(plan));
  if (slot->stopping) {
    (void)co_await engine_->remove_container(id);
    co_return stopped();
  }
  auto started = co_await engine_->start_container(id);
  if (started.has_error()) {
    (void)co_await engine_->remove_container(id);
    co_return started.error();
  }
  slot->container = id;
  if (net.internal) {
    auto ip = co_await container_address(id, net.app);
    if (ip.has_error()) {
      (void)co_await engine_->remove_container(id);
      slot->container.clear();
      co_return ip.error();
    }
    slot->host = ip.value();
    slot->app_port = container_port;
  } else {
    slot->host = "127.0.0.1";
    slot->app_port = *port;
  }
  slot->log_line(fmt::format("started container {} ({}) on network {}, reached on {}:{} → {}",
                             id.substr(0, 12), image, net.app, slot->host, slot->app_port,
                             container_port));
  logger()->info("[ws={}] started container {} from {} on {}:{}", spec.name, id.substr(0, 12),
                 image, slot->host, slot->app_port);
  follow(slot, id, 0);
  auto ready = co_await wait_ready(slot, id, spec.ready_timeout);
  if (ready.has_value()) port_guard.keep = true;
  co_return ready;
}

bool DockerRuntime::can_replace(const RunSpec& spec) const {
  return spec.type != "compose" && !spec.port && !closing_;
}

net::awaitable<Result<RunningApp>> DockerRuntime::start_new_version(std::shared_ptr<Slot> slot,
                                                                    RunSpec spec,
                                                                    PhaseCallback on_phase) {
  on_phase(Phase::preparing, "preparing the image");
  int container_port = 0;
  // A Dockerfile workspace's image is built again under the same tag; the running container
  // keeps the image it was made from (by id) until it is removed.
  BOOST_OUTCOME_CO_TRY(image, co_await prepare_image(spec, slot, container_port));
  if (slot->stopping) co_return fail(Errc::unavailable, "stopped while starting");
  co_return co_await launch(slot, std::move(spec), std::move(image), container_port, on_phase);
}

net::awaitable<Result<RunningApp>> DockerRuntime::replace(RunSpec spec, PhaseCallback on_phase,
                                                          std::function<void(const RunningApp&)> switched,
                                                          Duration grace) {
  auto it = slots_.find(spec.name);
  if (it == slots_.end() || it->second->container.empty() || it->second->exited ||
      it->second->stopping) {
    co_return fail(Errc::not_found, fmt::format("workspace {} has no running container to replace", spec.name));
  }
  if (!can_replace(spec) || it->second->compose) {
    co_return fail(Errc::conflict,
                   fmt::format("workspace {} cannot run two copies at once ({})", spec.name,
                               spec.port ? "its port is fixed by workspace.json"
                                         : "a compose project runs one copy"));
  }
  if (pending_.count(spec.name)) {
    co_return fail(Errc::conflict, fmt::format("a new version of workspace {} is already starting", spec.name));
  }
  auto old = it->second;
  auto next = std::make_shared<Slot>(io_);
  next->name = spec.name;
  next->second_name = !old->second_name;
  next->log_fd = ::open(log_path(spec.name).c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  pending_[spec.name] = next;
  const std::string name = spec.name;
  // The old container runs outdated source from now on: should the control plane die before it
  // is removed, the next start must not adopt it.
  const fs::path record = superseded_record(opts_.data_dir, name);
  {
    std::error_code ec;
    fs::create_directories(record.parent_path(), ec);
    std::ofstream(record, std::ios::trunc) << old->container << "\n";
  }
  next->log_line(fmt::format("starting the new version beside the running one (container {})",
                             old->container.substr(0, 12)));
  auto started = co_await start_new_version(next, std::move(spec), std::move(on_phase));
  if (auto p = pending_.find(name); p != pending_.end() && p->second == next) pending_.erase(p);
  auto cur = slots_.find(name);
  if (started.has_value() &&
      (old->stopping || next->stopping || closing_ || cur == slots_.end() || cur->second != old)) {
    // Stopped (or started anew) while the new version came up: it goes too.
    co_await stop_slot(next, grace);
    co_return fail(Errc::unavailable, "stopped while the new version started");
  }
  if (started.has_error()) {
    // Whatever it left (an install or an app container that exited) goes; the old one serves on.
    co_await stop_slot(next, std::chrono::seconds(0));
    next->log_line("the new version did not start (" + started.error().message +
                   "); the old one still serves");
    co_return started.error();
  }
  slots_[name] = next;
  retiring_[name] = old;  // stop() and kill_all() still find it until it is removed
  switched(started.value());
  next->log_line(fmt::format("the new version serves on {}:{}; stopping the old one (container {})",
                             next->host, next->app_port, old->container.substr(0, 12)));
  // Requests already sent to the old container get a moment to finish before it is asked to stop.
  co_await sleep_for(std::chrono::milliseconds(200));
  co_await stop_slot(old, grace);
  if (auto r = retiring_.find(name); r != retiring_.end() && r->second == old) retiring_.erase(r);
  if (read_superseded(opts_.data_dir, name).count(old->container)) {
    std::error_code ec;
    fs::remove(record, ec);
  }
  // The old container's dependency volume, when the key changed (it was in use until now).
  if (!next->deps_volume.empty() && old->deps_volume != next->deps_volume) {
    co_await remove_old_deps(name, next->deps_volume);
  }
  co_return started;
}

net::awaitable<Result<RunningApp>> DockerRuntime::wait_ready(std::shared_ptr<Slot> slot, std::string id,
                                                             Duration timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  Duration probe_every = std::chrono::milliseconds(10);
  int port = slot->app_port;
  std::string host = slot->host;
  for (;;) {
    if (slot->stopping) {
      // stop() may have run before the container id was known: remove it here.
      (void)co_await engine_->remove_container(id);
      co_return fail(Errc::unavailable, "stopped while starting");
    }
    if (slot->exited) {
      auto info = *slot->exited;
      co_return fail(Errc::invalid_argument,
                     fmt::format("the app {} before it answered on port {}", info.describe(), port));
    }
    if (co_await answers_http(host, port, std::chrono::seconds(2))) {
      auto ins = co_await engine_->inspect_container(id);
      if (ins.has_value()) slot->pid = ins.value()["State"].value("Pid", 0);
      slot->log_line(fmt::format("ready on {}:{}", host, port));
      co_return RunningApp{host, port, slot->pid};
    }
    if (std::chrono::steady_clock::now() > deadline) {
      (void)co_await engine_->remove_container(id);
      co_return fail(Errc::timeout,
                     fmt::format("the app did not answer on its port within {} (it must listen on "
                                 "0.0.0.0:$PORT inside the container)",
                                 format_duration(timeout)));
    }
    // Probe often at first (most apps are up within tens of ms), then every 100 ms.
    co_await sleep_for(probe_every);
    probe_every = std::min<Duration>(probe_every * 3 / 2, std::chrono::milliseconds(100));
  }
}

void DockerRuntime::follow(std::shared_ptr<Slot> slot, std::string id, long since) {
  spawn(io_, follow_logs(slot, id, since), "logs " + slot->name);
  spawn(io_, watch_exit(slot, id), "watch " + slot->name);
}

net::awaitable<void> DockerRuntime::follow_logs(std::shared_ptr<Slot> slot, std::string id, long since) {
  // Named: GCC 12 destroys a temporary passed to a coroutine in a co_await twice.
  std::function<void(const LogChunk&)> sink = [slot](const LogChunk& c) {
    if (slot->log_fd >= 0) (void)!::write(slot->log_fd, c.text.data(), c.text.size());
  };
  auto r = co_await engine_->logs(id, true, since, std::move(sink));
  if (r.has_error() && r.error().code != Errc::not_found) {
    logger()->debug("[ws={}] log stream of {} ended: {}", slot->name, id.substr(0, 12), r.error().message);
  }
}

net::awaitable<void> DockerRuntime::watch_exit(std::shared_ptr<Slot> slot, std::string id) {
  auto code = co_await engine_->wait_container(id);
  auto state = co_await engine_->inspect_container(id);
  ExitInfo info = exit_from_state(state.has_value() ? state.value()["State"] : json(),
                                  code.has_value() ? code.value() : -1);
  info.requested = slot->stopping;
  info.oom = info.oom || slot->oom_seen;
  if (slot->container == id) slot->set_exited(info);
}

// The engine's event stream for our containers: OOM kills (also of a child process that
// leaves the app running, which no exit status shows) go into the workspace log and the
// exit reason. Reconnects while the engine restarts.
net::awaitable<void> DockerRuntime::watch_events() {
  json filters = {{"type", json::array({"container"})},
                  {"event", json::array({"oom"})},
                  {"label", json::array({"cloudyknight.managed=true"})}};
  std::function<bool(const json&)> on_event = [this](const json& ev) {
    if (closing_) return false;
    std::string ws = ev["Actor"]["Attributes"].value("cloudyknight.workspace", "");
    if (auto slot = slot_of(ws, ev["Actor"].value("ID", ""))) {
      slot->oom_seen = true;
      slot->log_line("the kernel killed a process in the container: out of memory (limit " +
                           ev["Actor"]["Attributes"].value("cloudyknight.memory", "see limits.memory") + ")");
    }
    logger()->warn("[ws={}] out of memory in container {}", ws, ev["Actor"].value("ID", "").substr(0, 12));
    return true;
  };
  while (!closing_) {
    auto r = co_await engine_->events(filters, on_event);
    if (closing_) break;
    if (r.has_error()) logger()->debug("docker event stream ended: {}", r.error().message);
    co_await sleep_for(std::chrono::seconds(1));
  }
}

// The slot a container of `workspace` belongs to: a new version's starting beside the app, an
// old version's stopping after a switch, else the app's (also for a compose member).
std::shared_ptr<DockerRuntime::Slot> DockerRuntime::slot_of(const std::string& workspace,
                                                            const std::string& container) const {
  for (const auto* slots : {&pending_, &retiring_}) {
    auto p = slots->find(workspace);
    if (p != slots->end() && !container.empty() &&
        (p->second->container == container || p->second->install_container == container)) {
      return p->second;
    }
  }
  auto it = slots_.find(workspace);
  return it != slots_.end() ? it->second : nullptr;
}

net::awaitable<ExitInfo> DockerRuntime::wait_exit(std::string name) {
  auto it = slots_.find(name);
  if (it == slots_.end() || it->second->container.empty()) co_return ExitInfo{0, 0, false, true};
  auto slot = it->second;
  while (!slot->exited) {
    slot->exit_signal.expires_at(net::steady_timer::time_point::max());
    boost::system::error_code ec;
    co_await slot->exit_signal.async_wait(net::redirect_error(net::use_awaitable, ec));
  }
  ExitInfo info = *slot->exited;
  info.requested = info.requested || slot->stopping;
  release_port(*slot);
  // An old version stopped after a blue/green switch is not the workspace's app any more.
  auto now = slots_.find(name);
  if (now == slots_.end() || now->second == slot) {
    slot->log_line("app " + info.describe());
  } else {
    slot->log_line("the old version's container " + slot->container.substr(0, 12) + " " + info.describe());
  }
  co_return info;
}

net::awaitable<void> DockerRuntime::stop(std::string name, Duration grace) {
  // A new version still starting beside the app goes too, as does an old one still stopping
  // after a switch (so nothing of the workspace is left when this returns).
  if (auto p = pending_.find(name); p != pending_.end()) {
    auto next = p->second;
    co_await stop_slot(next, grace);
  }
  if (auto it = slots_.find(name); it != slots_.end()) {
    auto slot = it->second;
    co_await stop_slot(slot, grace);
  }
  if (auto r = retiring_.find(name); r != retiring_.end()) {
    auto old = r->second;
    co_await stop_slot(old, grace);
  }
}

net::awaitable<void> DockerRuntime::stop_slot(std::shared_ptr<Slot> slot, Duration grace) {
  const std::string& name = slot->name;
  slot->stopping = true;
  if (!slot->install_container.empty()) (void)co_await engine_->remove_container(slot->install_container);
  if (slot->compose) {
    co_await stop_compose(slot, grace);
  } else if (!slot->container.empty()) {
    std::string id = slot->container;
    if (slot->frozen) {  // a paused container cannot take SIGTERM
      (void)co_await engine_->unpause_container(id);
      slot->frozen = false;
    }
    int secs = static_cast<int>(std::chrono::duration_cast<std::chrono::seconds>(grace).count());
    auto r = co_await engine_->stop_container(id, std::max(secs, 1));
    if (r.has_error() && r.error().code != Errc::not_found) {
      logger()->warn("[ws={}] stopping container {}: {}", name, id.substr(0, 12), r.error().message);
    }
    (void)co_await engine_->remove_container(id);
    if (!slot->exited) slot->set_exited(ExitInfo{0, 0, false, true});
  }
  release_port(*slot);
}

net::awaitable<Result<void>> DockerRuntime::freeze(std::string name) {
  auto it = slots_.find(name);
  if (it == slots_.end() || it->second->container.empty() || it->second->stopping) {
    co_return fail(Errc::not_found, "workspace '" + name + "' has no running container to freeze");
  }
  auto slot = it->second;
  if (slot->frozen) co_return outcome::success();
  if (slot->compose) {  // the whole project: every service's container
    for (const auto& m : slot->members) {
      auto r = co_await engine_->pause_container(m.id);
      // A finished one-shot service (not running) has nothing to pause.
      if (r.has_error() && r.error().code != Errc::already_exists) co_return r.error();
    }
  } else {
    BOOST_OUTCOME_CO_TRY(co_await engine_->pause_container(slot->container));
  }
  slot->frozen = true;
  slot->log_line("frozen (docker pause): no activity; the next request resumes it");
  co_return outcome::success();
}

net::awaitable<Result<void>> DockerRuntime::thaw(std::string name) {
  auto it = slots_.find(name);
  if (it == slots_.end() || !it->second->frozen) co_return outcome::success();
  auto slot = it->second;
  if (slot->compose) {
    for (const auto& m : slot->members) {
      auto r = co_await engine_->unpause_container(m.id);
      if (r.has_error() && r.error().code != Errc::already_exists) co_return r.error();
    }
  } else {
    BOOST_OUTCOME_CO_TRY(co_await engine_->unpause_container(slot->container));
  }
  slot->frozen = false;
  slot->log_line("resumed (docker unpause)");
  co_return outcome::success();
}

net::awaitable<Result<ExecOutcome>> DockerRuntime::exec(std::string name,
                                                        std::vector<std::string> argv,
                                                        Duration timeout, OutputSink output) {
  auto it = slots_.find(name);
  if (it == slots_.end() || it->second->container.empty() || it->second->stopping ||
      it->second->exited) {
    co_return fail(Errc::not_found, "workspace '" + name + "' has no running container");
  }
  auto slot = it->second;
  if (slot->frozen) {
    BOOST_OUTCOME_CO_TRY(co_await thaw(name));
  }
  // The container's own environment and working folder (/app) apply.
  auto r = co_await engine_->exec(slot->container, std::move(argv), {}, "", timeout, std::move(output));
  if (r.has_error()) co_return r.error();
  co_return ExecOutcome{r.value().exit_code, r.value().timed_out};
}

net::awaitable<Result<void>> DockerRuntime::update_files(std::string name, std::filesystem::path source,
                                                         std::vector<std::string> paths) {
  auto it = slots_.find(name);
  if (it == slots_.end() || it->second->container.empty()) {
    co_return fail(Errc::not_found, "workspace '" + name + "' has no running container");
  }
  std::string id = it->second->container;
  std::vector<TarFile> files;
  std::vector<std::string> gone;
  for (const auto& p : paths) {
    // Never a symlink's target: a link leaving the folder (leak -> /etc/shadow) is skipped and
    // its old copy removed; one staying inside is copied as a link.
    auto entry = hmr_entry(source, p);
    switch (entry.kind) {
      case HmrEntry::Kind::copy:
        files.push_back(std::move(entry.file));
        break;
      case HmrEntry::Kind::refused:
        logger()->warn("[ws={}] hmr: not copying {}: {}", name, p, entry.why);
        it->second->log_line(fmt::format("hmr: not copying {}: {}", p, entry.why));
        if (valid_hmr_path(p)) gone.push_back("/app/" + p);
        break;
      case HmrEntry::Kind::gone:
        if (valid_hmr_path(p)) gone.push_back("/app/" + p);
        break;
      case HmrEntry::Kind::ignored:
        break;
    }
  }
  if (!files.empty()) {
    auto tar = tar_of(files);
    if (tar.has_error()) co_return tar.error();
    BOOST_OUTCOME_CO_TRY(co_await engine_->put_archive(id, "/app", std::move(tar.value())));
  }
  if (!gone.empty()) {
    std::vector<std::string> cmd = {"rm", "-rf", "--"};
    cmd.insert(cmd.end(), gone.begin(), gone.end());
    auto r = co_await engine_->exec(id, cmd, {}, "/app", std::chrono::seconds(30));
    if (r.has_error()) co_return r.error();
  }
  co_return outcome::success();
}

void DockerRuntime::kill_all() {
  // Called when waiting is no longer possible: remove our containers with a private loop.
  net::io_context io;
  std::vector<std::pair<std::string, std::shared_ptr<Slot>>> all(slots_.begin(), slots_.end());
  all.insert(all.end(), pending_.begin(), pending_.end());  // new versions starting beside them
  all.insert(all.end(), retiring_.begin(), retiring_.end());  // old versions stopping after a switch
  for (auto& [name, slot] : all) {
    std::vector<std::string> ids = {slot->container, slot->install_container};
    for (const auto& m : slot->members) {
      if (m.id != slot->container) ids.push_back(m.id);
    }
    for (const std::string& id : ids) {
      if (id.empty()) continue;
      slot->stopping = true;
      spawn(io, remove_quietly(id), "kill " + name);
    }
  }
  io.run_for(std::chrono::seconds(10));
}

net::awaitable<Result<std::string>> DockerRuntime::create(ContainerPlan plan) {
  plan.labels["cloudyknight.instance"] = opts_.instance;
  // The plan's named volumes first (creating an existing one is a no-op for the engine). They
  // are the workspace's own, labelled so the sweep removes them with it.
  for (const auto& v : plan.volumes) {
    json labels = {{"cloudyknight.managed", "true"},
                   {"cloudyknight.workspace", plan.workspace},
                   {"cloudyknight.instance", opts_.instance}};
    if (v.name.starts_with("ck-deps-")) labels["cloudyknight.deps"] = v.name;
    BOOST_OUTCOME_CO_TRYV(co_await engine_->create_volume(v.name, labels));
  }
  auto body = create_body(plan);
  auto id = co_await engine_->create_container(plan.name, body);
  if (id.has_error() && id.error().code == Errc::already_exists) {
    // The name is taken: by a leftover of ours (remove it), or by another control plane's
    // container for a workspace of the same name (keep it; take a name of our own).
    auto other = co_await engine_->inspect_container(plan.name);
    if (other.has_value() && label(other.value(), "cloudyknight.instance") == opts_.instance) {
      (void)co_await engine_->remove_container(plan.name);
    } else {
      plan.name += "-" + opts_.instance.substr(0, 8);
      (void)co_await engine_->remove_container(plan.name);
    }
    id = co_await engine_->create_container(plan.name, body);
  }
  co_return id;
}

net::awaitable<void> DockerRuntime::remove_quietly(std::string id) {
  (void)co_await engine_->remove_container(id);
}

net::awaitable<void> DockerRuntime::remove_orphans(std::set<std::string> keep) {
  // Only this control plane's: other control planes on the same engine keep theirs.
  std::vector<std::string> managed = {"cloudyknight.instance=" + opts_.instance};
  auto list = co_await engine_->list_containers(std::move(managed));
  if (list.has_error()) co_return;
  for (const auto& c : list.value()) {
    std::string ws = label(c, "cloudyknight.workspace");
    if (ws.empty() || keep.count(ws)) continue;
    auto it = slots_.find(ws);
    if (it != slots_.end() && !it->second->stopping && !it->second->container.empty()) continue;
    if (pending_.count(ws) && !pending_.at(ws)->stopping) continue;
    std::string id = c.value("Id", "");
    logger()->info("[ws={}] workspace is gone; removing its container {}", ws, id.substr(0, 12));
    (void)co_await engine_->remove_container(id);
    std::error_code ec;
    fs::remove(superseded_record(opts_.data_dir, ws), ec);
  }
  auto gone = [&](const json& labels) {
    if (!labels.is_object()) return std::string();
    std::string ws = labels.value("cloudyknight.workspace", "");
    if (ws.empty() || keep.count(ws)) return std::string();
    auto it = slots_.find(ws);
    if (it != slots_.end() && !it->second->stopping && !it->second->container.empty()) return std::string();
    return ws;
  };
  // Then the networks and volumes of workspaces that are gone (their containers are removed).
  std::vector<std::string> ours = {"cloudyknight.instance=" + opts_.instance};
  auto nets = co_await engine_->list_networks(ours);
  if (nets.has_value() && nets.value().is_array()) {
    for (const auto& n : nets.value()) {
      std::string ws = gone(n.contains("Labels") ? n["Labels"] : json());
      if (ws.empty()) continue;
      std::string name = n.value("Name", "");
      auto r = co_await engine_->remove_network(name);
      if (r.has_error()) {
        logger()->warn("[ws={}] cannot remove network {}: {}", ws, name, r.error().message);
      } else {
        logger()->info("[ws={}] workspace is gone; removed its network {}", ws, name);
      }
    }
  }
  auto vols = co_await engine_->list_volumes(ours);
  if (vols.has_value() && vols.value().is_array()) {
    for (const auto& v : vols.value()) {
      std::string ws = gone(v.contains("Labels") ? v["Labels"] : json());
      if (ws.empty()) continue;
      std::string name = v.value("Name", "");
      auto r = co_await engine_->remove_volume(name);
      if (r.has_error()) {
        logger()->warn("[ws={}] cannot remove volume {}: {}", ws, name, r.error().message);
        continue;
      }
      std::error_code ec;
      fs::remove(deps_record(opts_.data_dir, name), ec);
      logger()->info("[ws={}] workspace is gone; removed its volume {}", ws, name);
    }
  }
}

net::awaitable<Result<void>> DockerRuntime::ensure_network(std::string network,
                                                           std::string workspace, bool internal,
                                                           bool compose) {
  std::vector<std::string> bad_subnets;  // refused by the engine as overlapping
  for (int attempt = 0; attempt < 4; ++attempt) {
    // An address range of our own pool (Docker's defaults run out after ~30 networks): every
    // subnet the engine's networks use, and those other starts are creating now, is taken.
    auto all = co_await engine_->list_networks({});
    if (all.has_error()) co_return all.error();
    std::vector<std::string> used = bad_subnets;
    used.insert(used.end(), subnets_in_flight_.begin(), subnets_in_flight_.end());
    // What the host already routes (another engine's bridges, a VPN, the LAN) is taken too.
    if (auto routes = read_file("/proc/net/route")) {
      auto routed = route_cidrs(*routes);
      used.insert(used.end(), routed.begin(), routed.end());
    }
    for (const auto& n : all.value()) {
      if (!n.contains("IPAM") || !n["IPAM"].is_object() || !n["IPAM"].contains("Config") ||
          !n["IPAM"]["Config"].is_array()) {
        continue;
      }
      for (const auto& c : n["IPAM"]["Config"]) {
        if (c.is_object() && c.contains("Subnet") && c["Subnet"].is_string()) used.push_back(c["Subnet"]);
      }
    }
    auto subnet = pick_subnet(used);
    if (!subnet) {
      co_return fail(Errc::unavailable,
                     fmt::format("no free /28 left in {} for network {}: remove unused networks "
                                 "(docker network prune)",
                                 kNetworkPool, network));
    }
    subnets_in_flight_.insert(*subnet);
    auto body = compose ? compose_network_body(network, workspace, opts_.instance, internal, *subnet)
                        : network_body(network, workspace, opts_.instance, internal, *subnet);
    auto created = co_await engine_->create_network(std::move(body));
    subnets_in_flight_.erase(*subnet);
    if (created.has_value()) {
      logger()->info("[ws={}] created network {} ({}{})", workspace, network, *subnet,
                     internal ? ", internal" : "");
      co_return outcome::success();
    }
    if (created.error().code != Errc::already_exists) {
      if (created.error().message.find("overlap") != std::string::npos) {
        bad_subnets.push_back(*subnet);  // taken by a network made meanwhile: the next one
        continue;
      }
      co_return created.error();
    }
    auto ins = co_await engine_->inspect_network(network);
    if (ins.has_error()) {
      if (ins.error().code == Errc::not_found) continue;  // removed meanwhile: create again
      co_return ins.error();
    }
    const json& n = ins.value();
    const json labels = n.contains("Labels") && n["Labels"].is_object() ? n["Labels"] : json::object();
    if (labels.value("cloudyknight.managed", "") != "true" ||
        labels.value("cloudyknight.workspace", "") != workspace) {
      co_return fail(Errc::already_exists,
                     fmt::format("a Docker network named {} exists and is not this workspace's; "
                                 "remove it (docker network rm {}) or rename the workspace",
                                 network, network));
    }
    bool options_match =
        n.value("Internal", false) == internal && n["Options"].is_object() &&
        n["Options"].value("com.docker.network.bridge.enable_icc", "") ==
            (compose ? "true" : "false") &&
        n["Options"].value("com.docker.network.bridge.name", "") == bridge_name(network);
    if (options_match) co_return outcome::success();  // adopted
    // Made with other settings (limits.egress changed): replace it. Our containers on it were
    // removed as outdated before this runs.
    logger()->info("[ws={}] network {} has other settings; replacing it", workspace, network);
    BOOST_OUTCOME_CO_TRYV(co_await engine_->remove_network(network));
  }
  co_return fail(Errc::unavailable, fmt::format("cannot create network {}", network));
}

net::awaitable<Result<std::string>> DockerRuntime::container_address(std::string id,
                                                                     std::string network) {
  auto ins = co_await engine_->inspect_container(id);
  if (ins.has_error()) co_return ins.error();
  const json& nets = ins.value()["NetworkSettings"]["Networks"];
  if (nets.is_object() && nets.contains(network) && nets[network].is_object()) {
    std::string ip = nets[network].value("IPAddress", "");
    if (!ip.empty()) co_return ip;
  }
  co_return fail(Errc::unavailable,
                 fmt::format("container {} has no address on network {}", id.substr(0, 12), network));
}

// A workspace's dependency volumes other than `keep` (its lockfile changed): removed, so they
// do not pile up. A volume still in use by a container stays until the next time.
net::awaitable<void> DockerRuntime::remove_old_deps(std::string workspace, std::string keep) {
  std::vector<std::string> filter = {"cloudyknight.workspace=" + workspace, "cloudyknight.deps",
                                     "cloudyknight.instance=" + opts_.instance};
  auto vols = co_await engine_->list_volumes(std::move(filter));
  if (vols.has_error() || !vols.value().is_array()) co_return;
  for (const auto& v : vols.value()) {
    std::string name = v.value("Name", "");
    if (name == keep || !name.starts_with(deps_volume_prefix(workspace))) continue;
    auto r = co_await engine_->remove_volume(name);
    if (r.has_error()) {
      logger()->debug("[ws={}] old dependency volume {} stays for now: {}", workspace, name,
                      r.error().message);
      continue;
    }
    std::error_code ec;
    fs::remove(deps_record(opts_.data_dir, name), ec);
    logger()->info("[ws={}] removed the old dependency volume {}", workspace, name);
  }
}

net::awaitable<Result<std::vector<Reclaimed>>> DockerRuntime::collect_garbage(GcPolicy policy) {
  DockerGcOptions o;
  o.data_dir = opts_.data_dir;
  o.instance = opts_.instance;
  o.policy = std::move(policy);
  o.busy = installing_;
  // Both containers' volumes while a new version starts beside the old one.
  for (const auto* slots : {&slots_, &pending_}) {
    for (const auto& [name, slot] : *slots) {
      if (!slot->stopping && !slot->deps_volume.empty()) o.busy.insert(slot->deps_volume);
    }
  }
  co_return co_await docker_gc(*engine_, std::move(o));
}

std::vector<std::string> host_firewall_rule() {
  return {"-i",        "ck-+",
          "-m",        "conntrack",
          "--ctstate", "NEW",
          "-m",        "comment",
          "--comment", "cloudyknight: workspace containers never reach the host",
          "-j",        "DROP"};
}

namespace {

// Runs argv (searched in PATH) with its output discarded; its exit code, or -1.
int run_quietly(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  char* const no_env[] = {const_cast<char*>("PATH=/usr/sbin:/usr/bin:/sbin:/bin"), nullptr};
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), no_env);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

// Docker isolates networks from each other (FORWARD rules), but a container may still open a
// connection to any address of the host itself through its bridge (the INPUT chain): a
// server on 0.0.0.0, or on the bridge's gateway address. One rule on every bridge of ours
// (ck-+) drops those; the host's own connections into the containers are answered (their
// replies are ESTABLISHED). Idempotent (-C first); it stays when the daemon exits, so adopted
// containers keep it, and matches nothing once our bridges are gone.
void DockerRuntime::install_host_firewall() {
  if (!opts_.host_firewall) {
    firewall_ = "containers can reach the host's own ports (the host firewall rule is off)";
    return;
  }
  auto rule = host_firewall_rule();
  std::vector<std::string> check = {"iptables", "-w", "5", "-C", "INPUT"};
  check.insert(check.end(), rule.begin(), rule.end());
  if (run_quietly(check) == 0) {
    firewall_ = "no connections to the host's own ports (iptables INPUT rule on ck-+)";
    return;
  }
  std::vector<std::string> insert = {"iptables", "-w", "5", "-I", "INPUT", "1"};
  insert.insert(insert.end(), rule.begin(), rule.end());
  if (run_quietly(insert) == 0) {
    logger()->info("host firewall: new connections from workspace networks (ck-+) to the host "
                   "are dropped");
    firewall_ = "no connections to the host's own ports (iptables INPUT rule on ck-+)";
    return;
  }
  logger()->warn("host firewall: cannot add the iptables INPUT rule for ck-+ (not root, or no "
                 "iptables): containers can open connections to the host's own ports; add it "
                 "yourself: iptables -I INPUT -i ck-+ -m conntrack --ctstate NEW -j DROP");
  firewall_ = "containers CAN reach the host's own ports (the iptables rule could not be added)";
}

}  // namespace ck
