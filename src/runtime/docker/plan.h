#pragma once
// What a workspace's containers look like, as plain data: the container contract of
// DESIGN.md turned into an Engine API create body, and the same plan printed as a
// docker-compose.yml (`cloudyknight workspace compose NAME`). Pure; no I/O.
//
// A typed workspace (node, python, php, go, ruby) runs in two steps, both from the type's
// image, both with the source bind-mounted read-only at /workspace:
//   install: copies the source to /app and installs dependencies into a named volume of the
//            workspace's own keyed by its lockfile (ck-deps-<name>-<type>-<hash>), under
//            limits.install_memory;
//   app:     copies the source to /app, mounts the same volume, installs only if the volume
//            lacks the marker, writes /app/.container-ready and execs the command on $PORT.
// A Dockerfile workspace runs the image built from its own folder.
// Nothing is shared between workspaces: the dependency volume and the package manager's
// download cache (ck-cache-<name>-<type>) are the workspace's own, and its containers sit on a
// bridge network of their own (ck-net-<name>, see network_body) that no other workspace
// joins. With limits.egress false the app's network is `internal` (no route out; nothing can
// be published on it, so the gateway reaches the container's address on that bridge) and the
// install step runs on a second network of the workspace's with a route out
// (ck-net-<name>-install) so package downloads work.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/runtime.h"

namespace ck {

/// Where a type keeps installed dependencies and its package manager's download cache.
struct TypeLayout {
  std::string deps_dir;   // mounted from the lockfile-keyed volume; "" if none
  std::string cache_dir;  // mounted from ck-cache-<name>-<type>; "" if none
  std::vector<std::string> env;
};
TypeLayout type_layout(const std::string& type);

/// How often the engine runs an app container's HEALTHCHECK (`test -f /app/.container-ready`,
/// for `docker ps` and an outside proxy; the runtime itself waits for the port). Each check is
/// an exec (a runc process): at 2 s, the soak's 33 app containers kept dockerd, containerd and
/// runc the busiest processes of a 2-core host. 30 s is Docker's own default.
inline constexpr std::chrono::seconds kReadyCheckEvery{30};

/// The marker the install step leaves in the dependency volume.
inline constexpr const char* kDepsMarker = ".ck-installed";
/// The port an app listens on inside its container unless workspace.json says otherwise.
inline constexpr int kDefaultContainerPort = 8080;

struct ContainerPlan {
  enum class Role { app, install };
  Role role = Role::app;
  std::string workspace;
  std::string name;   // container name: ck-<workspace> (or .b), ck-<workspace>-install
  std::string image;
  std::string build_context;  // compose only: the Dockerfile folder the image is built from
  std::vector<std::string> cmd;  // empty: the image's own CMD (Dockerfile workspaces)
  std::vector<std::string> env;  // "K=V"
  std::string workdir;
  std::string source;  // host folder mounted read-only at /workspace; "" for none
  struct Volume {
    std::string name, target;
  };
  std::vector<Volume> volumes;
  int container_port = 0;  // 0: nothing published (install step)
  int host_port = 0;       // published on 127.0.0.1; 0 with container_port: exposed only
  std::string network;     // the bridge network the container joins ("": the engine's default)
  std::uint64_t memory = 0;
  double cpus = 1;
  int pids = 256;
  std::vector<std::string> cap_add;
  bool ready_healthcheck = false;  // HEALTHCHECK on /app/.container-ready, every kReadyCheckEvery
  std::map<std::string, std::string> labels;
};

/// The dependency volume for a spec: ck-deps-<name>-<type>-<hash of name, deps key and image>.
/// The workspace's own: two workspaces with the same lockfile never share one.
std::string deps_volume(const RunSpec& spec, const std::string& image);
/// The prefix of every dependency volume of a workspace ("ck-deps-<name>-"), for removing the
/// old ones when its key changes.
std::string deps_volume_prefix(const std::string& workspace);
/// The package manager's download cache of a workspace and type: ck-cache-<name>-<type>.
std::string cache_volume(const std::string& workspace, const std::string& type);

/// How a workspace's containers are networked.
struct NetworkPlan {
  std::string app;      // ck-net-<name>: the app's network
  std::string install;  // the install step's: the same, or ck-net-<name>-install when the
                        // app's is internal
  bool internal = false;  // limits.egress false: the app's network has no route out
};
NetworkPlan plan_network(const std::string& workspace, bool egress);
/// The Linux bridge of a network of ours: "ck-" + 12 hex digits (15 characters, the kernel's
/// limit), so one host firewall rule on "ck-+" covers every workspace network.
std::string bridge_name(const std::string& network);
/// The Engine API body for POST /networks/create: a bridge of its own (no inter-container
/// traffic), labelled cloudyknight.managed/workspace/instance, internal when asked.
nlohmann::json network_body(const std::string& network, const std::string& workspace,
                            const std::string& instance, bool internal,
                            const std::string& subnet = "");

/// Where workspace networks take their addresses: /28 subnets (14 addresses, plenty for the
/// one container on each) of 10.213.0.0/16, so a host holds 4096 workspace networks, where
/// Docker's default pools (/16s and /20s) run out after about 30.
inline constexpr std::string_view kNetworkPool = "10.213.0.0/16";
/// The first /28 of kNetworkPool that overlaps none of `used` (the CIDRs of the engine's
/// networks; what does not parse as IPv4 CIDR is ignored); nullopt when the pool is full.
std::optional<std::string> pick_subnet(const std::vector<std::string>& used);
/// The IPv4 destinations the host routes (the text of /proc/net/route), as CIDRs, the default
/// route left out: a subnet picked for a network must not take addresses another engine, a VPN
/// or the LAN already uses (Docker checks the same for its own pools). Malformed lines are
/// skipped.
std::vector<std::string> route_cidrs(std::string_view proc_net_route);

/// Blue/green: the app container's name, ck-<workspace>, and the name a new version started
/// beside it takes, ck-<workspace>.b; the next new version takes the first again. A workspace
/// name never holds a '.', so the second name is never another workspace's first.
std::string app_container_name(const std::string& workspace, bool second);
/// Whether `name` (as the engine lists it, with or without the leading '/', also with the
/// "-<instance>" suffix create() adds when another control plane holds the name) is the second
/// of app_container_name()'s pair for `workspace`.
bool is_second_app_name(const std::string& workspace, std::string_view name);

/// Adoption at start: which of a workspace's containers (entries of the Engine API's container
/// list) to try adopting, best first: running app containers (role app) whose
/// cloudyknight.spec label is `hash`, that can be reached (a port published on 127.0.0.1, or
/// `internal`) and whose id is not in `superseded`, the newest first (label
/// cloudyknight.created in ms, then Created). A control plane killed while a new version started
/// beside the old one leaves both, or only the old one when it died before the new container
/// existed: the old one runs outdated source (replace() names it in `superseded` first), the
/// newer one copied the latest. Indices into `containers`; the others are to be removed.
std::vector<std::size_t> adoption_order(const nlohmann::json& containers, const std::string& hash,
                                        bool internal,
                                        const std::set<std::string>& superseded = {});

/// The app container of a workspace, run from `image`, on network `net` (internal: nothing is
/// published, host_port must be 0), else published on host_port.
ContainerPlan plan_app(const RunSpec& spec, const std::string& image, int container_port,
                       int host_port, const NetworkPlan& net = {});
/// The install step of a typed workspace (no port, install memory limit, a network with a
/// route out for the registries).
ContainerPlan plan_install(const RunSpec& spec, const std::string& image,
                           const NetworkPlan& net = {});

/// A hash of everything in the plan that decides how the container runs (not the host port),
/// stored in the cloudyknight.spec label: equal hashes mean an adopted container is current.
std::string plan_hash(const ContainerPlan& plan);

/// The HostConfig every container of ours starts from: `mounts`, the memory (no swap), CPU and
/// pids limits, every capability dropped but `cap_add`, no-new-privileges, an init process and
/// a bounded json-file log. Callers add the restart policy, network and port bindings.
nlohmann::json hardened_host_config(nlohmann::json mounts, std::uint64_t memory, double cpus,
                                    int pids, const std::vector<std::string>& cap_add);

/// The Engine API body for POST /containers/create.
nlohmann::json create_body(const ContainerPlan& plan);

/// `s` with every '$' doubled, as Compose files need.
std::string compose_escape(const std::string& s);

/// The plan as a docker-compose.yml service (with its named volumes); '$' escaped as '$$'.
std::string compose_yaml(const ContainerPlan& plan);

}  // namespace ck
