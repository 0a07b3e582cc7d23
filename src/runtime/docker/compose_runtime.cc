// Compose workspaces in the docker runtime (issue 15): the workspace's own compose file, read
// and hardened by compose/model.h, run as one project through the Engine API (no compose CLI).
//
// start: load + harden (a refused or invalid file fails the workspace with the model's one-line
// message) → images (built from the service's context, or found on this host; pulled when a
// registry answers) → adopt a current project a previous control plane left running, else
// remove what is there → network, volumes → containers in start order, each after its
// dependencies' conditions hold → wait for the routed service to answer on its port.
// stop: containers in reverse order (SIGTERM, then SIGKILL after the grace), then the network;
// named volumes stay until the workspace is deleted (remove_orphans).
// Every service's output goes to the workspace log, each line prefixed "<service> | ".

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>

#include "compose/model.h"
#include "core/log.h"
#include "core/units.h"
#include "runtime/docker/archive.h"
#include "runtime/docker/compose_plan.h"
#include "runtime/docker/docker_runtime.h"
#include "runtime/docker/slot.h"

namespace ck {
namespace fs = std::filesystem;

namespace {

auto logger() {
  static auto l = log::get("runtime");
  return l;
}

std::string label_of(const json& c, const std::string& key) {
  const json& labels = c.contains("Labels") ? c["Labels"] : json();
  if (!labels.is_object()) return "";
  auto it = labels.find(key);
  return it != labels.end() && it->is_string() ? it->get<std::string>() : "";
}

// `inner` lies inside `outer` (both made absolute, symlinks resolved where they exist).
bool inside(const fs::path& outer, const fs::path& inner) {
  std::error_code ec;
  auto o = fs::weakly_canonical(outer, ec);
  if (ec) return false;
  auto i = fs::weakly_canonical(inner, ec);
  if (ec) return false;
  auto [end, _] = std::mismatch(o.begin(), o.end(), i.begin(), i.end());
  return end == o.end();
}

// The last health check's output, one line, for messages.
std::string last_health_output(const json& state) {
  if (!state.contains("Health") || !state["Health"].is_object()) return "";
  const json& log = state["Health"]["Log"];
  if (!log.is_array() || log.empty() || !log.back().is_object()) return "";
  std::string out = log.back().value("Output", "");
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r' || out.back() == ' '))
    out.pop_back();
  std::replace(out.begin(), out.end(), '\n', ' ');
  if (out.size() > 300) out = out.substr(0, 300) + "...";
  return fmt::format("exit code {}{}{}", log.back().value("ExitCode", -1), out.empty() ? "" : ": ",
                     out);
}

}  // namespace

net::awaitable<Result<void>> DockerRuntime::compose_images(
    const RunSpec& spec, const ComposePlan& plan, std::shared_ptr<Slot> slot,
    std::map<std::string, std::string>& ids) {
  for (const auto& b : plan.builds) {
    fs::path context = spec.source / b.context;
    if (!inside(spec.source, context) || !fs::is_directory(context)) {
      co_return fail(Errc::invalid_argument,
                     fmt::format("service {}: build.context {} is not a folder inside the "
                                 "workspace",
                                 b.service, b.context));
    }
    fs::path tar = opts_.data_dir / "run" / spec.name / (b.service + ".context.tar");
    std::error_code ec;
    fs::create_directories(tar.parent_path(), ec);
    slot->log_line(
        fmt::format("building the image of service {} ({}) from {}", b.service, b.tag, b.context));
    auto written = write_tar(context, tar, docker_context_filter(DockerIgnore::load(context)));
    if (written.has_error()) co_return written.error();
    json labels = {{"cloudyknight.managed", "true"},
                   {"cloudyknight.workspace", spec.name},
                   {"cloudyknight.service", b.service},
                   {"cloudyknight.instance", opts_.instance}};
    int fd = slot->log_fd;
    std::string prefix = b.service + " | ";
    std::function<void(std::string_view)> progress = [fd, prefix](std::string_view line) {
      std::string l = prefix + std::string(line) + "\n";
      if (fd >= 0) (void)!::write(fd, l.data(), l.size());
    };
    BuildLimits limits;
    limits.memory = opts_.build_memory ? opts_.build_memory : spec.install_memory;
    limits.cpus = spec.cpus;
    limits.timeout = opts_.build_timeout;
    limits.dockerfile = b.dockerfile;
    limits.args = b.args;
    limits.target = b.target;
    auto built =
        co_await engine_->build_image(tar, b.tag, std::move(labels), std::move(progress), limits);
    fs::remove(tar, ec);
    if (built.has_error()) {
      co_return fail(built.error().code, fmt::format("service {}: building its image failed: {}",
                                                     b.service, built.error().message));
    }
    if (slot->stopping) co_return fail(Errc::unavailable, "stopped while starting");
  }
  for (const auto& c : plan.containers) {
    auto ins = co_await engine_->inspect_image(c.image);
    if (ins.has_error() && ins.error().code == Errc::not_found) {
      slot->log_line(
          fmt::format("service {}: image {} is not on this host; pulling it", c.service, c.image));
      auto pulled = co_await engine_->pull_image(c.image, std::chrono::minutes(10));
      if (pulled.has_error()) {
        co_return fail(Errc::invalid_argument,
                       fmt::format("service {}: image {} is not on this host and cannot be pulled "
                                   "({}): load or build it on this host (docker load, docker "
                                   "build -t {} ...) or give the service a build",
                                   c.service, c.image, pulled.error().message, c.image));
      }
      ins = co_await engine_->inspect_image(c.image);
    }
    if (ins.has_error()) {
      co_return fail(ins.error().code, fmt::format("service {}: image {}: {}", c.service, c.image,
                                                   ins.error().message));
    }
    ids[c.service] = ins.value().value("Id", "");
  }
  co_return outcome::success();
}

net::awaitable<Result<RunningApp>> DockerRuntime::start_compose(RunSpec spec,
                                                                PhaseCallback on_phase,
                                                                std::shared_ptr<Slot> slot) {
  auto log = logger();
  slot->compose = true;
  slot->members.clear();
  on_phase(Phase::preparing, "reading the compose file");

  // The file, hardened by the operator's rules. Reading it is small and bounded (1 MiB).
  compose::Project project;
  compose::Route route;
  std::vector<std::string> order;
  std::string refused;
  try {
    compose::LoadOptions lo;
    lo.dir = spec.source;
    auto loaded = compose::load(lo);
    for (const auto& w : loaded.warnings) slot->log_line("compose: warning: " + w);
    route = compose::pick_route(loaded);
    compose::Policy policy;
    policy.workspace = spec.name;
    policy.source = spec.source;
    policy.memory = spec.memory;
    policy.cpus = spec.cpus;
    policy.pids = spec.pids;
    policy.host_ports = opts_.compose_host_ports;
    project = compose::harden(std::move(loaded), policy);
    order = compose::start_order(project);
  } catch (const compose::Error& e) {
    refused = e.what();
  } catch (const std::exception& e) {
    refused = fmt::format("the compose file cannot be read: {}", e.what());
  }
  if (!refused.empty()) {
    slot->log_line("compose: " + refused);
    log->warn("[ws={}] compose: {}", spec.name, refused);
    co_return fail(Errc::invalid_argument, refused);
  }
  slot->log_line(fmt::format("compose project {}: services {} (start order), routed: {} on port {}",
                             compose_project(spec.name), fmt::join(order, ", "), route.service,
                             route.port));

  ComposePlanOptions po;
  po.workspace = spec.name;
  po.instance = opts_.instance;
  po.order = order;
  po.route = route;
  po.host_ports = opts_.compose_host_ports;
  po.env = spec.env;
  // Images first: their ids are part of every container's spec hash.
  on_phase(Phase::preparing, "preparing the images");
  {
    auto images_plan = plan_compose(project, po);
    auto r = co_await compose_images(spec, images_plan, slot, po.image_ids);
    if (r.has_error()) {
      slot->log_line(r.error().message);
      co_return r.error();
    }
  }
  if (slot->stopping) co_return fail(Errc::unavailable, "stopped while starting");
  const bool internal = !opts_.egress;
  auto plan = plan_compose(project, po);
  slot->networks = plan.networks;
  // Where the gateway reaches the routed service when nothing is published: its first network.
  std::string route_network = plan.network;
  for (const auto& c : plan.containers) {
    if (c.route && !c.networks.empty()) route_network = c.networks.front();
  }

  // Adopt the whole project a previous control plane left, when every container is current;
  // anything else of this workspace's is removed first.
  std::vector<std::string> mine = {"cloudyknight.instance=" + opts_.instance,
                                   "cloudyknight.workspace=" + spec.name};
  auto existing = co_await engine_->list_containers(std::move(mine));
  if (existing.has_error()) co_return existing.error();
  std::map<std::string, json> found;  // by service, current ones only
  for (const auto& c : existing.value()) {
    std::string service = label_of(c, "cloudyknight.service");
    auto it = std::find_if(plan.containers.begin(), plan.containers.end(),
                           [&](const ComposeContainer& p) { return p.service == service; });
    if (it == plan.containers.end() || label_of(c, "cloudyknight.spec") != it->hash) continue;
    bool running = c.value("State", "") == "running";
    bool done_ok =
        c.value("State", "") == "exited" && c.value("Status", "").starts_with("Exited (0)");
    if (running || (done_ok && !it->route)) found[service] = c;
  }
  bool adoptable = found.size() == plan.containers.size();
  int adopted_port = 0;
  for (const auto& c : plan.containers) {
    if (!adoptable) break;
    if (c.route && !internal) {
      adopted_port = published_loopback_port(found[c.service]);
      adoptable = adopted_port > 0;
    }
  }
  if (adoptable) {
    for (const auto& c : plan.containers) {
      std::string id = found[c.service].value("Id", "");
      slot->members.push_back({c.service, id, c.stop_seconds, c.tty});
      if (c.route) slot->container = id;
    }
    if (internal) {
      auto ip = co_await container_address(slot->container, route_network);
      if (ip.has_value()) {
        slot->host = ip.value();
        slot->app_port = route.port;
      } else {
        adoptable = false;
      }
    } else {
      ports_.mark_taken(adopted_port);
      slot->port = adopted_port;
      slot->host = "127.0.0.1";
      slot->app_port = adopted_port;
    }
  }
  if (adoptable) {
    log->info("[ws={}] adopted the running compose project {} ({} containers)", spec.name,
              plan.project, slot->members.size());
    slot->log_line(
        fmt::format("control plane restarted; adopted compose project {}", plan.project));
    long now = static_cast<long>(std::time(nullptr));
    for (const auto& m : slot->members) {
      spawn(io_, follow_service(slot, m.id, m.tty, m.service, now), "logs " + spec.name + "/" + m.service);
    }
    spawn(io_, watch_exit(slot, slot->container), "watch " + spec.name);
    auto ready = co_await wait_ready(slot, slot->container, std::chrono::seconds(10));
    if (ready.has_value() || slot->stopping) co_return ready;
    log->warn("[ws={}] adopted project does not answer ({}); replacing it", spec.name,
              ready.error().message);
    slot->exited.reset();
  }
  release_port(*slot);
  slot->members.clear();
  slot->container.clear();
  for (const auto& c : existing.value()) {
    std::string id = c.value("Id", "");
    log->info("[ws={}] removing outdated container {} ({})", spec.name, id.substr(0, 12),
              label_of(c, "cloudyknight.service"));
    (void)co_await engine_->remove_container(id);
  }

  // Networks a previous version of the file asked for and this one does not: gone with the
  // containers just removed.
  std::vector<std::string> project_labels = {"cloudyknight.instance=" + opts_.instance,
                                             "cloudyknight.workspace=" + spec.name,
                                             "com.docker.compose.project=" + plan.project};
  auto old_nets = co_await engine_->list_networks(std::move(project_labels));
  if (old_nets.has_value() && old_nets.value().is_array()) {
    for (const auto& n : old_nets.value()) {
      std::string name = n.value("Name", "");
      if (std::find(plan.networks.begin(), plan.networks.end(), name) != plan.networks.end()) {
        continue;
      }
      auto r = co_await engine_->remove_network(name);
      log->info("[ws={}] removing network {}, no longer in the compose file{}", spec.name, name,
                r.has_error() ? ": " + r.error().message : "");
    }
  }
  for (const auto& n : plan.networks) {
    BOOST_OUTCOME_CO_TRYV(co_await ensure_network(n, spec.name, internal, true));
  }
  for (const auto& v : plan.volumes) {
    BOOST_OUTCOME_CO_TRYV(co_await engine_->create_volume(v.name, v.labels));
  }
  if (!internal) {
    auto port = ports_.acquire();
    if (!port) {
      co_return fail(Errc::unavailable,
                     fmt::format("no free port left in runtime.ports {}-{}: stop a workspace or "
                                 "widen the range",
                                 opts_.port_min, opts_.port_max));
    }
    slot->port = *port;
    po.host_port = *port;
    plan = plan_compose(project, po);
  }

  // Containers in start order, each once its dependencies are as asked.
  on_phase(Phase::starting, fmt::format("starting {}", fmt::join(order, ", ")));
  Result<void> failed = outcome::success();
  for (const auto& c : plan.containers) {
    for (const auto& dep : c.depends_on) {
      bool present = std::any_of(slot->members.begin(), slot->members.end(),
                                 [&](const Slot::Member& m) { return m.service == dep.service; });
      if (!present) continue;  // not active (profiles) and not required
      slot->log_line(fmt::format(
          "{}: waiting for {} ({})", c.service, dep.service,
          dep.condition == compose::Dependency::Condition::healthy   ? "healthy"
          : dep.condition == compose::Dependency::Condition::started ? "started"
                                                                     : "completed successfully"));
      failed = co_await wait_dependency(slot, c.service, dep, spec.ready_timeout);
      if (failed.has_error()) break;
    }
    if (failed.has_error()) break;
    if (slot->stopping) {
      failed = fail(Errc::unavailable, "stopped while starting");
      break;
    }
    auto id = co_await engine_->create_container(c.name, c.body);
    if (id.has_error() && id.error().code == Errc::already_exists) {
      auto other = co_await engine_->inspect_container(c.name);
      const json& labels = other.has_value() ? other.value()["Config"]["Labels"] : json();
      if (labels.is_object() && labels.value("cloudyknight.instance", "") == opts_.instance) {
        (void)co_await engine_->remove_container(c.name);
        id = co_await engine_->create_container(c.name, c.body);
      } else {
        failed = fail(Errc::already_exists,
                      fmt::format("a container named {} exists and is not this workspace's: "
                                  "remove it (docker rm -f {}) or rename the workspace",
                                  c.name, c.name));
        break;
      }
    }
    if (id.has_error()) {
      failed = fail(id.error().code, fmt::format("service {}: {}", c.service, id.error().message));
      break;
    }
    slot->members.push_back({c.service, id.value(), c.stop_seconds, c.tty});
    if (c.route) slot->container = id.value();
    for (std::size_t i = 1; i < c.networks.size() && !failed.has_error(); ++i) {
      std::vector<std::string> aliases = {c.service};
      auto joined = co_await engine_->connect_network(c.networks[i], id.value(), std::move(aliases));
      if (joined.has_error()) {
        failed = fail(joined.error().code,
                      fmt::format("service {}: {}", c.service, joined.error().message));
      }
    }
    if (failed.has_error()) break;
    auto started = co_await engine_->start_container(id.value());
    if (started.has_error()) {
      failed = fail(started.error().code,
                    fmt::format("service {}: {}", c.service, started.error().message));
      break;
    }
    spawn(io_, follow_service(slot, id.value(), c.tty, c.service, 0),
          "logs " + spec.name + "/" + c.service);
    slot->log_line(
        fmt::format("started {} ({}) as {}", c.service, c.image, id.value().substr(0, 12)));
    log->info("[ws={}] started service {} from {} as {}", spec.name, c.service, c.image,
              id.value().substr(0, 12));
  }
  if (!failed.has_error() && slot->container.empty()) {
    failed = fail(
        Errc::invalid_argument,
        fmt::format("the routed service {} is not among the services that run", route.service));
  }
  if (!failed.has_error()) {
    if (internal) {
      auto ip = co_await container_address(slot->container, route_network);
      if (ip.has_error()) {
        failed = ip.error();
      } else {
        slot->host = ip.value();
        slot->app_port = route.port;
      }
    } else {
      slot->host = "127.0.0.1";
      slot->app_port = slot->port;
    }
  }
  if (!failed.has_error()) {
    spawn(io_, watch_exit(slot, slot->container), "watch " + spec.name);
    slot->log_line(fmt::format("routed service {} reached on {}:{} → {}", route.service, slot->host,
                               slot->app_port, route.port));
    auto ready = co_await wait_ready(slot, slot->container, spec.ready_timeout);
    if (ready.has_value()) co_return ready;
    failed = ready.error();
  }
  // Nothing half-started stays behind; the log keeps what happened.
  slot->log_line(failed.error().message);
  for (auto it = slot->members.rbegin(); it != slot->members.rend(); ++it) {
    (void)co_await engine_->remove_container(it->id);
  }
  slot->members.clear();
  slot->container.clear();
  release_port(*slot);
  co_return failed.error();
}

net::awaitable<Result<void>> DockerRuntime::wait_dependency(std::shared_ptr<Slot> slot,
                                                            std::string service,
                                                            compose::Dependency dep,
                                                            Duration timeout) {
  using Condition = compose::Dependency::Condition;
  if (dep.condition == Condition::started) co_return outcome::success();
  std::string id;
  for (const auto& m : slot->members) {
    if (m.service == dep.service) id = m.id;
  }
  // A one-shot job (migrations) may take longer than an app takes to answer.
  if (dep.condition == Condition::completed_successfully) {
    timeout = std::max<Duration>(timeout, std::chrono::minutes(10));
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (slot->stopping) co_return fail(Errc::unavailable, "stopped while starting");
    auto ins = co_await engine_->inspect_container(id);
    if (ins.has_error()) co_return ins.error();
    const json& state = ins.value()["State"];
    std::string status = state.is_object() ? state.value("Status", "") : "";
    int code = state.is_object() ? state.value("ExitCode", -1) : -1;
    if (dep.condition == Condition::completed_successfully) {
      if (status == "exited" || status == "dead") {
        if (code == 0) co_return outcome::success();
        co_return fail(Errc::invalid_argument,
                       fmt::format("service {} exited with code {}; {} waits for it to complete "
                                   "successfully (its output is in the workspace log)",
                                   dep.service, code, service));
      }
    } else {
      if (!state.contains("Health") || !state["Health"].is_object()) {
        co_return fail(Errc::invalid_argument,
                       fmt::format("service {} has no healthcheck, but {} waits for it to be "
                                   "healthy (depends_on condition service_healthy): give {} a "
                                   "healthcheck",
                                   dep.service, service, dep.service));
      }
      std::string health = state["Health"].value("Status", "");
      if (health == "healthy") co_return outcome::success();
      if (health == "unhealthy") {
        co_return fail(Errc::invalid_argument,
                       fmt::format("service {} is unhealthy ({}); {} waits for it to be healthy",
                                   dep.service, last_health_output(state), service));
      }
      if (status == "exited" || status == "dead") {
        co_return fail(Errc::invalid_argument,
                       fmt::format("service {} exited with code {} before it became healthy; {} "
                                   "waits for it",
                                   dep.service, code, service));
      }
    }
    if (std::chrono::steady_clock::now() > deadline) {
      std::string last = last_health_output(state);
      co_return fail(
          Errc::timeout,
          fmt::format("service {} was not {} within {}{}{}; {} waits for it", dep.service,
                      dep.condition == Condition::healthy ? "healthy" : "done",
                      format_duration(timeout), last.empty() ? "" : ": last check ", last,
                      service));
    }
    co_await sleep_for(std::chrono::milliseconds(250));
  }
}

// One service's output into the workspace log, "<service> | line" as `docker-compose logs`
// prints it.
net::awaitable<void> DockerRuntime::follow_service(std::shared_ptr<Slot> slot, std::string id, bool tty,
                                                   std::string service, long since) {
  auto carry = std::make_shared<std::string>();
  std::string prefix = service + " | ";
  auto write_line = [slot, prefix](std::string_view line) {
    if (slot->log_fd < 0) return;
    std::string l = prefix;
    l.append(line);
    l.push_back('\n');
    (void)!::write(slot->log_fd, l.data(), l.size());
  };
  // Named: GCC 12 destroys a temporary passed to a coroutine in a co_await twice.
  std::function<void(const LogChunk&)> sink = [carry, write_line](const LogChunk& c) {
    carry->append(c.text);
    std::size_t start = 0, nl;
    while ((nl = carry->find('\n', start)) != std::string::npos) {
      write_line(std::string_view(*carry).substr(start, nl - start));
      start = nl + 1;
    }
    carry->erase(0, start);
    if (carry->size() > 64 * 1024) {  // a very long line without end: write it as it is
      write_line(*carry);
      carry->clear();
    }
  };
  auto r = co_await engine_->logs(id, true, since, std::move(sink), tty);
  if (!carry->empty()) write_line(*carry);
  if (r.has_error() && r.error().code != Errc::not_found) {
    logger()->debug("[ws={}] log stream of {} ended: {}", slot->name, service, r.error().message);
  }
}

net::awaitable<void> DockerRuntime::stop_compose(std::shared_ptr<Slot> slot, Duration grace) {
  int secs = std::max(
      1, static_cast<int>(std::chrono::duration_cast<std::chrono::seconds>(grace).count()));
  auto members = slot->members;
  if (slot->frozen) {  // a paused container cannot take SIGTERM
    for (const auto& m : members) (void)co_await engine_->unpause_container(m.id);
    slot->frozen = false;
  }
  for (auto it = members.rbegin(); it != members.rend(); ++it) {
    auto r = co_await engine_->stop_container(it->id, it->stop_seconds > 0 ? it->stop_seconds : secs);
    if (r.has_error() && r.error().code != Errc::not_found) {
      logger()->warn("[ws={}] stopping service {}: {}", slot->name, it->service, r.error().message);
    }
    (void)co_await engine_->remove_container(it->id);
  }
  slot->members.clear();
  for (const auto& network : slot->networks) {
    auto r = co_await engine_->remove_network(network);
    if (r.has_error()) {
      logger()->warn("[ws={}] cannot remove network {}: {}", slot->name, network,
                     r.error().message);
    }
  }
  if (!slot->container.empty() && !slot->exited) slot->set_exited(ExitInfo{0, 0, false, true});
}

net::awaitable<Result<ExecOutcome>> DockerRuntime::exec_in(std::string name, std::string service,
                                                           std::vector<std::string> argv,
                                                           Duration timeout, OutputSink output) {
  if (service.empty())
    co_return co_await exec(std::move(name), std::move(argv), timeout, std::move(output));
  auto it = slots_.find(name);
  if (it == slots_.end() || it->second->container.empty() || it->second->stopping ||
      it->second->exited) {
    co_return fail(Errc::not_found, "workspace '" + name + "' has no running container");
  }
  auto slot = it->second;
  if (!slot->compose) {
    co_return fail(Errc::invalid_argument,
                   "\"service\" chooses a service of a compose "
                   "workspace; '" +
                       name + "' runs one app");
  }
  std::string id;
  std::vector<std::string> names;
  for (const auto& m : slot->members) {
    names.push_back(m.service);
    if (m.service == service) id = m.id;
  }
  if (id.empty()) {
    co_return fail(Errc::invalid_argument, fmt::format("'{}' has no service '{}'; its services: {}",
                                                       name, service, fmt::join(names, ", ")));
  }
  if (slot->frozen) {
    BOOST_OUTCOME_CO_TRY(co_await thaw(name));
  }
  // The service's own environment and working folder apply.
  auto r = co_await engine_->exec(id, std::move(argv), {}, "", timeout, std::move(output));
  if (r.has_error()) co_return r.error();
  co_return ExecOutcome{r.value().exit_code, r.value().timed_out};
}

}  // namespace ck
