#pragma once
// What a compose workspace's project looks like in the engine, as plain data (issue 15): a
// hardened compose::Project turned into Engine API bodies for its network, named volumes and
// one container per service. Pure; no I/O. The docker runtime (compose_runtime.cc) creates
// them in start order and removes them in reverse.
//
// Project `ck-<name>`: one bridge network of its own (`ck-<name>`, containers on it reach each
// other by service name, nothing else joins it; every network the file names, external ones
// included, is this one), named volumes `ck-<name>_<volume>`, containers
// `ck-<name>-<service>`. Only the routed service publishes a port, on 127.0.0.1 from
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
  std::string network;  // ck-<name>
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

/// The POST /networks/create body of the project's network: network_body's, but containers on
/// it may talk to each other (services reach each other by name).
nlohmann::json compose_network_body(const std::string& workspace, const std::string& instance,
                                    bool internal, const std::string& subnet = "");

}  // namespace ck
