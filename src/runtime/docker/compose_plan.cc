#include "runtime/docker/compose_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "core/hash.h"
#include "runtime/docker/plan.h"

namespace ck {
namespace {

using json = nlohmann::json;

std::int64_t nanos(std::chrono::milliseconds d) {
  return static_cast<std::int64_t>(d.count()) * 1'000'000;
}

json healthcheck_body(const compose::Healthcheck& h) {
  if (h.disable) return {{"Test", json::array({"NONE"})}};
  json body = {{"Interval", nanos(h.interval)},
               {"Timeout", nanos(h.timeout)},
               {"StartPeriod", nanos(h.start_period)},
               {"Retries", h.retries}};
  // An empty test keeps the image's own command with these timings.
  if (!h.test.empty()) body["Test"] = h.test;
  return body;
}

// "", "no", "always", "unless-stopped", "on-failure[:N]".
json restart_body(const std::string& restart) {
  if (restart == "always" || restart == "unless-stopped") return {{"Name", restart}};
  if (restart.starts_with("on-failure")) {
    int max = 0;
    if (restart.size() > 11 && restart[10] == ':') {
      try {
        max = std::max(0, std::stoi(restart.substr(11)));
      } catch (const std::exception&) {
        max = 0;
      }
    }
    return {{"Name", "on-failure"}, {"MaximumRetryCount", max}};
  }
  return {{"Name", "no"}};
}

// Labels the runtime decides by (whose a container or volume is, its spec, what a sweep may
// remove): never taken from the file.
bool reserved_label(const std::string& key) {
  return key.starts_with("cloudyknight.") || key.starts_with("com.docker.compose.");
}

std::string volume_name(const compose::Project& project, const std::string& workspace,
                        const std::string& local) {
  auto it = project.volumes.find(local);
  if (it != project.volumes.end() && it->second.external) {
    return it->second.external_name.empty() ? local : it->second.external_name;
  }
  return compose_project(workspace) + "_" + local;
}

json volume_labels(const std::string& workspace, const std::string& instance,
                   const std::string& local, const std::map<std::string, std::string>& own) {
  json labels = json::object();
  for (const auto& [k, v] : own) {
    if (!reserved_label(k)) labels[k] = v;
  }
  labels["cloudyknight.managed"] = "true";
  labels["cloudyknight.workspace"] = workspace;
  labels["cloudyknight.instance"] = instance;
  labels["com.docker.compose.project"] = compose_project(workspace);
  labels["com.docker.compose.volume"] = local;
  return labels;
}

// The port binding key and body for one published port.
void publish(json& bindings, json& exposed, int container_port, const std::string& protocol,
             int host_port) {
  std::string key = fmt::format("{}/{}", container_port, protocol.empty() ? "tcp" : protocol);
  exposed[key] = json::object();
  if (host_port <= 0) return;
  json binding = {{"HostIp", "127.0.0.1"}, {"HostPort", std::to_string(host_port)}};
  if (!bindings.contains(key)) bindings[key] = json::array();
  bindings[key].push_back(binding);
}

ComposeContainer plan_service(const compose::Project& project, const compose::Service& s,
                              const ComposePlanOptions& o, const std::string& workspace) {
  ComposeContainer c;
  if (s.network_mode != "none") {
    for (const auto& n : s.networks) c.networks.push_back(compose_network_name(workspace, n));
    if (c.networks.empty()) c.networks.push_back(compose_network_name(workspace, "default"));
  }
  c.service = s.name;
  c.name = compose_project(workspace) + "-" + s.name;
  c.image = s.build ? compose_image_tag(workspace, s.name) : s.image;
  c.route = s.name == o.route.service;
  c.depends_on = s.depends_on;

  std::map<std::string, std::string> env = s.environment;
  if (c.route) {
    for (const auto& [k, v] : o.env) env.emplace(k, v);
  }
  json env_list = json::array();
  for (const auto& [k, v] : env) env_list.push_back(k + "=" + v);

  json labels = json::object();
  for (const auto& [k, v] : s.labels) {
    if (!reserved_label(k) || k == "cloudyknight.route" || k == "cloudyknight.port") labels[k] = v;
  }
  labels["cloudyknight.managed"] = "true";
  labels["cloudyknight.workspace"] = workspace;
  labels["cloudyknight.service"] = s.name;
  labels["cloudyknight.role"] = c.route ? "route" : "service";
  labels["cloudyknight.instance"] = o.instance;
  labels["cloudyknight.memory"] = std::to_string(s.memory);
  if (auto it = o.image_ids.find(s.name); it != o.image_ids.end()) {
    labels["cloudyknight.image"] = it->second;
  }
  labels["com.docker.compose.project"] = compose_project(workspace);
  labels["com.docker.compose.service"] = s.name;

  json mounts = json::array();
  for (const auto& m : s.volumes) {
    switch (m.kind) {
      case compose::Mount::Kind::bind:
        // harden() left only binds inside the workspace folder, all read-only.
        mounts.push_back(
            {{"Type", "bind"}, {"Source", m.source}, {"Target", m.target}, {"ReadOnly", true}});
        break;
      case compose::Mount::Kind::volume: {
        json mount = {{"Type", "volume"}, {"Target", m.target}, {"ReadOnly", m.read_only}};
        if (!m.source.empty()) mount["Source"] = volume_name(project, workspace, m.source);
        mounts.push_back(mount);
        break;
      }
      case compose::Mount::Kind::tmpfs:
        mounts.push_back({{"Type", "tmpfs"}, {"Target", m.target}});
        break;
    }
  }

  json bindings = json::object();
  json exposed = json::object();
  for (const auto& p : s.ports) {
    if (p.container_port <= 0) continue;
    bool routed_port = c.route && p.container_port == o.route.port;
    publish(bindings, exposed, p.container_port, p.protocol,
            routed_port ? 0 : (o.host_ports ? p.host_port : 0));
  }
  for (int port : s.expose) publish(bindings, exposed, port, "tcp", 0);
  if (c.route && o.route.port > 0) publish(bindings, exposed, o.route.port, "tcp", o.host_port);

  // Images such as postgres or redis start as root and drop privileges themselves.
  json host = hardened_host_config(
      std::move(mounts), s.memory, s.cpus, s.pids,
      {"CHOWN", "SETUID", "SETGID", "DAC_OVERRIDE", "FOWNER", "NET_BIND_SERVICE"});
  host["RestartPolicy"] = restart_body(s.restart);
  host["NetworkMode"] = c.networks.empty() ? "none" : c.networks.front();
  if (!bindings.empty()) host["PortBindings"] = bindings;

  json body = {{"Image", c.image}, {"Env", env_list}, {"Labels", labels}, {"HostConfig", host}};
  // API 1.41 takes one endpoint at create; the others are connected before the start. The
  // hash below covers them all through this label.
  if (!c.networks.empty()) {
    body["NetworkingConfig"] = {
        {"EndpointsConfig", {{c.networks.front(), {{"Aliases", json::array({s.name})}}}}}};
    labels["cloudyknight.networks"] = fmt::format("{}", fmt::join(c.networks, ","));
    body["Labels"] = labels;
  }
  if (s.command) body["Cmd"] = *s.command;
  if (s.entrypoint) body["Entrypoint"] = *s.entrypoint;
  if (!s.working_dir.empty()) body["WorkingDir"] = s.working_dir;
  if (!s.user.empty()) body["User"] = s.user;
  if (!s.hostname.empty()) body["Hostname"] = s.hostname;
  if (!s.stop_signal.empty()) body["StopSignal"] = s.stop_signal;
  if (s.stop_grace_period) {
    c.stop_seconds = static_cast<int>(std::max<std::int64_t>(
        1, std::chrono::duration_cast<std::chrono::seconds>(*s.stop_grace_period).count()));
    body["StopTimeout"] = c.stop_seconds;
  }
  if (s.tty) body["Tty"] = *s.tty;
  c.tty = s.tty.value_or(false);
  if (s.stdin_open) body["OpenStdin"] = *s.stdin_open;
  if (!s.extra_hosts.empty()) body["HostConfig"]["ExtraHosts"] = s.extra_hosts;
  if (!exposed.empty()) body["ExposedPorts"] = exposed;
  if (s.healthcheck) body["Healthcheck"] = healthcheck_body(*s.healthcheck);

  // The hash leaves out the routed port's host side: an adopted container keeps its port.
  // (The plan made to look for one to adopt has no host port yet.)
  json hashed = body;
  if (c.route && o.route.port > 0 && hashed["HostConfig"].contains("PortBindings")) {
    json& b = hashed["HostConfig"]["PortBindings"];
    b.erase(fmt::format("{}/tcp", o.route.port));
    if (b.empty()) hashed["HostConfig"].erase("PortBindings");
  }
  c.hash = stable_hash(hashed.dump()).substr(0, 12);
  body["Labels"]["cloudyknight.spec"] = c.hash;
  c.body = std::move(body);
  return c;
}

}  // namespace

std::string compose_project(const std::string& workspace) { return "ck-" + workspace; }

std::string compose_image_tag(const std::string& workspace, const std::string& service) {
  return fmt::format("ck-{}-{}:latest", workspace, service);
}

std::string compose_network_name(const std::string& workspace, const std::string& network) {
  if (network == "default") return compose_project(workspace);
  return compose_project(workspace) + "_" + network;
}

nlohmann::json compose_network_body(const std::string& network, const std::string& workspace,
                                    const std::string& instance, bool internal,
                                    const std::string& subnet) {
  json body = network_body(network, workspace, instance, internal, subnet);
  body["Options"]["com.docker.network.bridge.enable_icc"] = "true";
  body["Labels"]["com.docker.compose.project"] = compose_project(workspace);
  return body;
}

ComposePlan plan_compose(const compose::Project& project, const ComposePlanOptions& o) {
  ComposePlan plan;
  plan.workspace = o.workspace;
  plan.project = compose_project(o.workspace);
  plan.network = plan.project;
  plan.route = o.route;
  std::set<std::string> volumes;
  for (const auto& name : o.order) {
    auto it = project.services.find(name);
    if (it == project.services.end()) continue;
    const compose::Service& s = it->second;
    if (s.build) {
      plan.builds.push_back({s.name, compose_image_tag(o.workspace, s.name), s.build->context,
                             s.build->dockerfile, s.build->args, s.build->target});
    }
    for (const auto& m : s.volumes) {
      if (m.kind != compose::Mount::Kind::volume || m.source.empty()) continue;
      auto v = project.volumes.find(m.source);
      if (v != project.volumes.end() && v->second.external) continue;  // not ours to create
      if (!volumes.insert(m.source).second) continue;
      static const std::map<std::string, std::string> kNone;
      plan.volumes.push_back(
          {volume_name(project, o.workspace, m.source),
           volume_labels(o.workspace, o.instance, m.source,
                         v != project.volumes.end() ? v->second.labels : kNone)});
    }
    plan.containers.push_back(plan_service(project, s, o, o.workspace));
    for (const auto& n : plan.containers.back().networks) {
      if (std::find(plan.networks.begin(), plan.networks.end(), n) == plan.networks.end()) {
        plan.networks.push_back(n);
      }
    }
  }
  return plan;
}

}  // namespace ck
