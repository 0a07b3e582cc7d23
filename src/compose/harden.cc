// The operator's rules (issue 15, section 4) and the choice of the routed service. Pure but
// for resolving bind sources on disk (symlinks), so a link inside the folder cannot smuggle a
// host path into a mount.
#include <algorithm>
#include <set>

#include "compose/internal.h"

namespace ck::compose {

namespace fs = std::filesystem;

namespace {

std::string why_refused(const std::string& key) {
  static const std::map<std::string, std::string> reasons = {
      {"privileged", "privileged would give the container root on the host; remove it"},
      {"cap_add",
       "cap_add would give the container kernel capabilities beyond Docker's "
       "defaults; remove it"},
      {"pid",
       "pid would share the host's (or another container's) processes with the "
       "container; remove it"},
      {"ipc",
       "ipc: host, service: and container: share another IPC namespace; remove it or use "
       "private"},
      {"network_mode",
       "network_mode host, service: and container: join another network "
       "namespace; remove it (bridge and none are allowed)"},
      {"devices", "devices would give the container the host's devices; remove it"},
      {"security_opt",
       "security_opt could turn off the container's seccomp/AppArmor "
       "confinement; remove it"},
      {"userns_mode", "userns_mode would change the container's user namespace; remove it"},
      {"cgroup_parent",
       "cgroup_parent would move the container out of the limits CloudyKnight "
       "sets; remove it"},
      {"volumes_from",
       "volumes_from would mount another container's volumes; remove it and share a named "
       "volume instead"},
      {"sysctls", "sysctls would change kernel settings; remove it"},
      {"uts", "uts: host would share the host's hostname; remove it"},
      {"cgroup", "cgroup: host would share the host's cgroup namespace; remove it"},
      {"runtime", "runtime would pick another container runtime; remove it"},
      {"isolation", "isolation would change how the container is isolated; remove it"},
      {"device_cgroup_rules", "device_cgroup_rules would give access to host devices; remove it"},
      {"oom_kill_disable",
       "oom_kill_disable would keep the host's OOM killer away from the "
       "container; remove it"},
      {"oom_score_adj",
       "oom_score_adj would change how the host's OOM killer ranks the "
       "container; remove it"},
      {"storage_opt", "storage_opt would change the host's storage driver options; remove it"},
      {"gpus", "gpus would give the container the host's GPUs; remove it"},
      {"external_links", "external_links would reach containers outside this project; remove it"},
      {"credential_spec", "credential_spec would read host credentials; remove it"},
      {"ulimits", "ulimits could raise limits above the operator's; remove it"},
  };
  auto it = reasons.find(key);
  return it != reasons.end() ? it->second
                             : key + " is not allowed by CloudyKnight's safety rules; remove it";
}

bool is_docker_socket(const fs::path& p) {
  fs::path n = p.lexically_normal();
  return n == "/var/run/docker.sock" || n == "/run/docker.sock" || n == "/var/run" || n == "/run" ||
         n == "/var/run/docker" || n == "/run/docker";
}

[[noreturn]] void socket_error(const Location& where) {
  throw Error(where,
              "mounting the Docker socket would give the container control of every "
              "container on the host (root); remove this volume");
}

/// `source` as written (relative, the seeds' /workspaces/<name>/..., or absolute) → an
/// absolute, normalised path, then checked inside the workspace folder, links resolved.
fs::path resolve_inside(const std::string& source, const Policy& policy, const Location& where,
                        const char* what) {
  if (source.empty() || source[0] == '~') {
    throw Error(where, std::string(what) + " '" + source +
                           "' is in a home folder on the host; only paths inside the "
                           "workspace folder (./...) are allowed");
  }
  fs::path raw(source);
  fs::path seeds = fs::path("/workspaces") / policy.workspace;
  fs::path resolved;
  if (raw.is_relative()) {
    resolved = policy.source / raw;
  } else if (!policy.workspace.empty() && detail::is_within(seeds, raw)) {
    resolved = policy.source / raw.lexically_normal().lexically_relative(seeds);
  } else {
    resolved = raw;
  }
  resolved = resolved.lexically_normal();
  if (is_docker_socket(resolved)) {
    socket_error(where);
  }
  if (!detail::is_within(policy.source, resolved)) {
    throw Error(where, std::string(what) + " '" + source + "' (" + resolved.string() +
                           ") is outside the workspace folder; only paths inside it (./...) "
                           "are allowed");
  }
  std::error_code ec;
  fs::path real = fs::weakly_canonical(resolved, ec);
  fs::path root = fs::weakly_canonical(policy.source, ec);
  if (is_docker_socket(real)) {
    socket_error(where);
  }
  if (ec || !detail::is_within(root, real)) {
    throw Error(where, std::string(what) + " '" + source + "' leads through a link to '" +
                           real.string() + "', outside the workspace folder; remove the link");
  }
  return real;
}

bool is_true(const std::string& s) { return s == "true" || s == "True" || s == "TRUE"; }

int port_label(const Service& s, const std::string& label) {
  auto it = s.labels.find(label);
  if (it == s.labels.end()) {
    return 0;
  }
  int port = 0;
  bool ok = !it->second.empty() && it->second.size() <= 5 &&
            std::all_of(it->second.begin(), it->second.end(),
                        [](char c) { return c >= '0' && c <= '9'; });
  if (ok) {
    port = std::stoi(it->second);
  }
  if (!ok || port < 1 || port > 65535) {
    throw Error({s.where.file, s.where.line, s.where.key + ".labels." + label},
                "expected a port number 1-65535, not '" + it->second + "'");
  }
  return port;
}

/// traefik.http.services.<x>.loadbalancer.server.port, as the seeds label their app.
int traefik_port(const Service& s) {
  static const std::string kPrefix = "traefik.http.services.";
  static const std::string kSuffix = ".loadbalancer.server.port";
  if (auto en = s.labels.find("traefik.enable"); en != s.labels.end() && !is_true(en->second)) {
    return 0;
  }
  for (const auto& [k, v] : s.labels) {
    if (k.size() > kPrefix.size() + kSuffix.size() && k.compare(0, kPrefix.size(), kPrefix) == 0 &&
        k.compare(k.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0) {
      return port_label(s, k);
    }
  }
  return 0;
}

std::set<int> container_ports(const Service& s) {
  std::set<int> out(s.expose.begin(), s.expose.end());
  for (const auto& p : s.ports) {
    if (p.protocol == "tcp") {
      out.insert(p.container_port);
    }
  }
  return out;
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) {
    out += (out.empty() ? "" : ", ") + n;
  }
  return out;
}

}  // namespace

Route pick_route(const Project& project) {
  Location where{project.files.empty() ? "" : project.files.front(), 0, "services"};
  auto port_of = [](const Service& s) -> int {
    if (int p = port_label(s, "cloudyknight.port")) {
      return p;
    }
    auto ports = container_ports(s);
    if (ports.size() == 1) {
      return *ports.begin();
    }
    if (int p = traefik_port(s)) {
      return p;
    }
    std::string list;
    for (int p : ports) {
      list += (list.empty() ? "" : ", ") + std::to_string(p);
    }
    throw Error(s.where, ports.empty()
                             ? "the routed service has no port; add `expose: [PORT]` or the "
                               "label cloudyknight.port=PORT"
                             : "the routed service listens on " + list +
                                   "; choose one with the label cloudyknight.port=PORT");
  };
  std::vector<std::string> labelled;
  for (const auto& [name, s] : project.services) {
    if (auto it = s.labels.find("cloudyknight.route");
        it != s.labels.end() && is_true(it->second)) {
      labelled.push_back(name);
    }
  }
  if (labelled.size() > 1) {
    throw Error(where, "more than one service is labelled cloudyknight.route=true (" +
                           join(labelled) + "); keep the label on one");
  }
  if (labelled.size() == 1) {
    const Service& s = project.services.at(labelled[0]);
    return {s.name, port_of(s)};
  }
  std::vector<std::string> with_ports;
  std::vector<std::string> with_labels;
  for (const auto& [name, s] : project.services) {
    if (!container_ports(s).empty()) {
      with_ports.push_back(name);
    } else if (s.labels.count("cloudyknight.port") != 0 || traefik_port(s) != 0) {
      with_labels.push_back(name);
    }
  }
  const auto& candidates = !with_ports.empty() ? with_ports : with_labels;
  if (candidates.size() == 1) {
    const Service& s = project.services.at(candidates[0]);
    return {s.name, port_of(s)};
  }
  std::vector<std::string> all;
  for (const auto& [name, s] : project.services) {
    all.push_back(name);
  }
  if (candidates.empty()) {
    throw Error(where, "no service publishes or exposes a port (services: " + join(all) +
                           "); label the one to route with cloudyknight.route=true and "
                           "cloudyknight.port=PORT");
  }
  throw Error(where, "more than one service could be routed (" + join(candidates) +
                         "); label the one the gateway should reach with "
                         "cloudyknight.route=true");
}

Project harden(Project project, const Policy& policy) {
  if (policy.source.empty() || policy.source.is_relative()) {
    throw Error({}, "the workspace's source folder must be an absolute path");
  }
  if (!policy.workspace.empty()) {
    project.name = "ck-" + policy.workspace;
  }
  for (const auto& [name, v] : project.volumes) {
    if (v.external) {
      throw Error({v.where.file, v.where.line, v.where.key + ".external"},
                  "external volume '" + v.external_name +
                      "' would reach data outside this workspace; drop `external` to get a "
                      "volume of the project's own");
    }
  }
  std::set<std::string> mapped;
  for (auto it = project.networks.begin(); it != project.networks.end();) {
    if (it->second.external) {
      const Location& w = it->second.where;
      project.warnings.push_back(w.file + ":" + std::to_string(w.line) + ": " + w.key +
                                 ": external network '" + it->second.external_name +
                                 "' mapped to the project's own network");
      mapped.insert(it->first);
      it = project.networks.erase(it);
    } else {
      ++it;
    }
  }
  bool default_named = false;
  for (auto& [name, s] : project.services) {
    if (!s.refused.empty()) {
      auto first = std::min_element(s.refused.begin(), s.refused.end(),
                                    [](auto& a, auto& b) { return a.second.line < b.second.line; });
      throw Error(first->second, why_refused(first->first));
    }
    for (const auto& [label, value] : s.labels) {
      if (label.rfind("cloudyknight.", 0) == 0 && label != "cloudyknight.route" &&
          label != "cloudyknight.port") {
        throw Error({s.where.file, s.where.line, s.where.key + ".labels." + label},
                    "labels under cloudyknight. are set by CloudyKnight itself (only "
                    "cloudyknight.route and cloudyknight.port are yours); remove it");
      }
    }
    for (auto& m : s.volumes) {
      if (m.kind != Mount::Kind::bind) {
        continue;
      }
      m.source = resolve_inside(m.source, policy, m.where, "the bind mount source").string();
      m.read_only = true;
    }
    if (s.build) {
      Location where{s.where.file, s.where.line, s.where.key + ".build"};
      const std::string& ctx = s.build->context;
      if (ctx.find("://") != std::string::npos || ctx.rfind("git@", 0) == 0) {
        throw Error(where,
                    "a remote build context cannot be fetched; build from a folder "
                    "inside the workspace");
      }
      fs::path real = resolve_inside(ctx, policy, where, "the build context");
      if (!s.build->dockerfile.empty()) {
        resolve_inside((real / s.build->dockerfile).string(), policy, where, "the dockerfile");
      }
      fs::path rel = real.lexically_relative(fs::weakly_canonical(policy.source));
      s.build->context = rel.empty() ? "." : rel.string();
    }
    std::vector<std::string> nets;
    for (const auto& n : s.networks) {
      std::string to = mapped.count(n) != 0 ? "default" : n;
      if (std::find(nets.begin(), nets.end(), to) == nets.end()) {
        nets.push_back(to);
      }
    }
    // Only the default left: say so the header's way (an empty list), not by a name the
    // runner would have to special-case.
    if (nets.size() == 1 && nets[0] == "default") {
      nets.clear();
    }
    default_named = default_named || std::find(nets.begin(), nets.end(), "default") != nets.end();
    s.networks = std::move(nets);
    if (policy.memory != 0 && (s.memory == 0 || s.memory > policy.memory)) {
      s.memory = policy.memory;
    }
    if (policy.cpus > 0 && (s.cpus <= 0 || s.cpus > policy.cpus)) {
      s.cpus = policy.cpus;
    }
    if (policy.pids > 0 && (s.pids <= 0 || s.pids > policy.pids)) {
      s.pids = policy.pids;
    }
    if (!policy.host_ports) {
      std::vector<Port> kept;
      std::set<std::pair<int, std::string>> seen;
      for (auto p : s.ports) {
        p.host_port = 0;
        p.host_ip.clear();
        if (seen.emplace(p.container_port, p.protocol).second) {
          kept.push_back(p);
        }
      }
      s.ports = std::move(kept);
    }
  }
  if (default_named && project.networks.count("default") == 0) {
    Network def;
    def.name = "default";  // Compose's name for the project's default network
    project.networks["default"] = def;
  }
  return project;
}

}  // namespace ck::compose
