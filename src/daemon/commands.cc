// The CLI commands that need the runtime's object graph but no daemon: `images build`,
// `workspace compose` and `workspace git-init`.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <iostream>

#include <unistd.h>

#include <cstring>

#include "compose/model.h"
#include "events/events.h"
#include "git/workspaces.h"
#include "core/names.h"
#include "daemon/daemon.h"
#include "runtime/docker/compose_plan.h"
#include "runtime/docker/images.h"
#include "runtime/docker/plan.h"
#include "workspace/workspace.h"

namespace ck {
namespace fs = std::filesystem;

namespace {

// A connected engine, or null with the reason in `why`.
std::unique_ptr<DockerEngine> connect_engine(std::string& why) {
  std::string socket = DockerEngine::default_socket(&why);
  if (socket.empty()) return nullptr;
  auto engine = std::make_unique<DockerEngine>(socket);
  auto r = run_blocking(engine->connect());
  if (r.has_error()) {
    why = r.error().message;
    return nullptr;
  }
  return engine;
}

}  // namespace

int build_images_command(const Config& config, const std::vector<std::string>& types, bool force,
                         bool pull) {
  std::string why;
  auto engine = connect_engine(why);
  if (!engine) {
    std::cerr << "cloudyknight: " << why << ": start the Docker engine (dockerd) first\n";
    return 1;
  }
  ImageBuildOptions opts;
  opts.types = types;
  opts.configured = config.images;
  opts.force = force;
  opts.pull = pull;
  std::error_code ec;
  opts.work_dir = fs::absolute(config.data, ec) / "images";
  auto say = [](const std::string& line) { std::cout << line << std::endl; };
  auto r = run_blocking(build_images(*engine, opts, say));
  if (r.has_error()) {
    std::cerr << "cloudyknight: " << r.error().message << "\n";
    return 1;
  }
  return 0;
}

int compose_command(const Config& config, const std::string& name) {
  if (auto valid = validate_workspace_name(name); valid.has_error()) {
    std::cerr << "cloudyknight: " << valid.error().message << "\n";
    return 2;
  }
  if (config.storage.kind != "dir") {
    std::cerr << "cloudyknight: `workspace compose` reads dir storage only in this version "
                 "(storage.kind is '" << config.storage.kind << "')\n";
    return 1;
  }
  std::error_code ec;
  fs::path dir = fs::absolute(fs::path(config.storage.path) / name, ec);
  if (!fs::is_directory(dir, ec)) {
    std::cerr << "cloudyknight: there is no workspace '" << name << "' in "
              << fs::absolute(config.storage.path, ec).string()
              << " (pass --workspaces DIR or --config FILE)\n";
    return 1;
  }
  WorkspaceSpec spec = detect_workspace(name, dir);
  if (!spec.error.empty()) {
    std::cerr << "cloudyknight: " << name << " cannot run: " << spec.error << "\n";
    return 1;
  }
  if (spec.type == WorkspaceType::static_site) {
    std::cerr << "cloudyknight: " << name << " is a static site; the gateway serves it itself, "
                 "without a container\n";
    return 1;
  }
  RunSpec rs = make_run_spec(name, dir, spec, monitor_options(config));
  if (spec.type == WorkspaceType::compose) {
    // The workspace's own file as the docker runtime runs it: merged, interpolated, hardened.
    try {
      compose::LoadOptions lo;
      lo.dir = dir;
      auto project = compose::load(lo);
      for (const auto& w : project.warnings) std::cerr << "cloudyknight: warning: " << w << "\n";
      auto route = compose::pick_route(project);
      compose::Policy policy;
      policy.workspace = name;
      policy.source = dir;
      policy.memory = rs.memory;
      policy.cpus = rs.cpus;
      policy.pids = rs.pids;
      policy.host_ports = config.runtime.compose_host_ports;
      auto hardened = compose::harden(std::move(project), policy);
      auto order = compose::start_order(hardened);
      std::cout << fmt::format("# The compose project CloudyKnight runs for workspace '{}' ({}), "
                               "as project {}:\n# {} rewritten by the operator's rules (binds "
                               "read-only inside the workspace, limits, external networks as "
                               "the default one).\n# Start order: {}; the gateway routes /{}/ "
                               "to {} on port {}.\n",
                               name, spec.matched, compose_project(name), spec.matched,
                               fmt::join(order, ", "), name, route.service, route.port)
                << compose::to_yaml(hardened);
      return 0;
    } catch (const compose::Error& e) {
      std::cerr << "cloudyknight: " << name << " cannot run: " << e.what() << "\n";
      return 1;
    }
  }
  std::string type = rs.type;
  std::string image = rs.image.empty() ? (config.images.count(type) ? config.images.at(type) : offline_image(type))
                                       : rs.image;
  int host_port = 0;
  int container_port = rs.port.value_or(kDefaultContainerPort);
  std::string why;
  if (auto engine = connect_engine(why)) {
    if (spec.type == WorkspaceType::dockerfile) {
      image = fmt::format("cloudyknight-ws/{}:latest", name);
      // As the runtime does: the built image's EXPOSE unless workspace.json says a port.
      if (!rs.port) container_port = run_blocking(exposed_port(*engine, image, kDefaultContainerPort));
    } else {
      auto resolved = run_blocking(resolve_image(*engine, type, image, !rs.image.empty()));
      if (resolved.has_value()) image = resolved.value();
    }
    auto running = run_blocking(engine->list_containers({"cloudyknight.managed=true", "cloudyknight.workspace=" + name}));
    if (running.has_value()) {
      for (const auto& c : running.value()) {
        if (int p = published_loopback_port(c)) host_port = p;
      }
    }
  } else if (spec.type == WorkspaceType::dockerfile) {
    image = fmt::format("cloudyknight-ws/{}:latest", name);
  }
  auto plan = plan_app(rs, image, container_port, host_port);
  if (spec.type == WorkspaceType::dockerfile) plan.build_context = dir.string();
  std::cout << fmt::format("# The container CloudyKnight runs for workspace '{}' ({} — {}).\n", name,
                           type_name(spec.type), spec.matched)
            << "# `docker compose up` runs it the same way (the dependency volumes are created by "
               "CloudyKnight, or by `docker volume create`).\n"
            << compose_yaml(plan);
  return 0;
}

}  // namespace ck

namespace ck {

int git_init_command(const Config& config, const std::string& name, const std::string& url,
                     const std::string& branch) {
  auto fail_with = [](const std::string& message) {
    std::cerr << "cloudyknight: " << message << "\n";
    return 1;
  };
  if (config.storage.kind != "dir") {
    return fail_with("git workspaces need folder storage (storage.kind: dir, or --workspaces DIR)");
  }
  if (auto v = validate_workspace_name(name); v.has_error()) return fail_with(v.error().message);
  std::error_code ec;
  fs::path root = fs::absolute(config.storage.path, ec);
  fs::path folder = root / name;
  if (fs::exists(fs::symlink_status(folder, ec))) {
    return fail_with("a workspace named '" + name + "' already exists in " + root.string() +
                     "; pick another name, or add \"git\": {\"url\": ...} to its workspace.json");
  }
  fs::create_directories(root, ec);
  // Cloned beside its place and renamed in, so the daemon never sees half a clone.
  fs::path tmp = root / fmt::format(".ck-create-{}-git-{}", name, ::getpid());
  EventBus events;
  GitWorkspaces g(root, nullptr, events, config.git);
  g.set_keys_dir(fs::absolute(config.data, ec) / "git" / "keys");
  auto r = g.clone_new(name, tmp, git::Remote{url, branch}, "");
  if (r.has_error()) return fail_with(r.error().message);
  if (::rename(tmp.c_str(), folder.c_str()) != 0) {
    fs::remove_all(tmp, ec);
    return fail_with(fmt::format("cannot move the clone into {}: {}", folder.string(), std::strerror(errno)));
  }
  auto st = git::status(folder);
  std::cout << fmt::format("cloned {} into {} (branch {}, {}); a running daemon starts it and pulls it "
                           "before every start, every {} and on POST /monitor/api/v1/git/hook\n",
                           git::redact_url(url), folder.string(), st.has_value() ? st.value().branch : branch,
                           r.value().new_head.substr(0, 12), format_duration(config.git.poll));
  return 0;
}

}  // namespace ck
