#pragma once
// What a compose workspace's project looks like in the engine, as plain data (issue 15): a
// hardened compose::Project turned into Engine API bodies for its network, named volumes and
// one container per service. Pure; no I/O. The docker runtime (compose_runtime.cc) creates
// them in start order and removes them in reverse.
//
// Project `ck-<name>`: bridge networks of its own, one per network the file declares, as
// Compose makes them: the default one is `ck-<name>`, network N is `ck-<name>_<N>`; a service
// joins exactly the networks it lists (none listed: the default) and is reached there by its
// service name; nothing else joins them; an external network (the seeds' traefik-network) is
// the default one. Named volumes `ck-<name>_<volume>`, containers `ck-<name>-<service>`. Only the routed service publishes a port, on 127.0.0.1 from
// runtime.ports (others too with runtime.compose_host_ports, still on 127.0.0.1 only).

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "compose/model.h"

namespace ck {

/// An image to build for a service with `build`.
struct ComposeBuild {
  std::string service;
  std::string tag;         // ck-<name>-<service>:latest
  std::string context;     // relative to the workspace folder, as the file gives it
  std::string dockerfile;  // "" → Dockerfile
  std::map<std::string, std::string> args;
  std::string target;
};

struct ComposeContainer {
  std::string service;
  std::string name;   // ck-<name>-<service>
  std::string image;  // what the container runs (the built tag for a build)
  bool route = false;
  std::vector<compose::Dependency> depends_on;
  /// Engine networks in the order the service lists them; the create body names the first,
  /// the runner connects the others (with the service name as alias) before starting it.
  /// Empty for network_mode none.
  std::vector<std::string> networks;
  int stop_seconds = 0;  // stop_grace_period; 0: the workspace's grace
  bool tty = false;      // tty: true (its logs come raw)
  nlohmann::json body;  // POST /containers/create, cloudyknight.spec label included
  std::string hash;     // that label's value
};

struct ComposeVolume {
  std::string name;  // in the engine: ck-<name>_<volume>
  nlohmann::json labels;
};

struct ComposePlan {
  std::string workspace;
  std::string project;  // ck-<name>
  std::string network;                // ck-<name>, the default network
  std::vector<std::string> networks;  // every engine network the containers use, to create
  std::vector<ComposeVolume> volumes;
  std::vector<ComposeBuild> builds;
  std::vector<ComposeContainer> containers;  // in start order; stop in reverse
  compose::Route route;
};

struct ComposePlanOptions {
  std::string workspace;           // the workspace's name (the file's own `name` is ignored)
  std::string instance;            // cloudyknight.instance label
  std::vector<std::string> order;  // compose::start_order of the project
  compose::Route route;            // compose::pick_route
  int host_port = 0;               // the routed port's on 127.0.0.1; 0: none (internal network)
  bool host_ports = false;         // runtime.compose_host_ports: publish the file's ports too
  /// Image ids by service (what the tag or name resolved to when the runner looked), so a
  /// rebuilt image makes the container's spec hash change.
  std::map<std::string, std::string> image_ids;
  /// Added to the routed service's environment where the file sets nothing (CK_BASE_PATH...).
  std::map<std::string, std::string> env;
};

/// The project's name in the engine: ck-<workspace>.
std::string compose_project(const std::string& workspace);
/// The image a service with `build` is tagged with: ck-<workspace>-<service>:latest.
std::string compose_image_tag(const std::string& workspace, const std::string& service);

/// The engine objects for `project` (hardened). Services not in `order` are not run.
ComposePlan plan_compose(const compose::Project& project, const ComposePlanOptions& options);

/// The engine's name of the file's network `network`: ck-<workspace> for "default",
/// ck-<workspace>_<network> for the others.
std::string compose_network_name(const std::string& workspace, const std::string& network);

/// The POST /networks/create body of one of the project's networks (an engine name from
/// ComposePlan::networks): network_body's, but containers on it may talk to each other
/// (services reach each other by name).
nlohmann::json compose_network_body(const std::string& network, const std::string& workspace,
                                    const std::string& instance, bool internal,
                                    const std::string& subnet = "");

}  // namespace ck
