#pragma once
// A workspace's own docker-compose file as plain data (issue 15): the Compose specification's
// keys people use, parsed, merged with override files, interpolated from the workspace's .env,
// then hardened by the operator's rules. Pure: reads files, never talks to Docker. The runner
// (runtime/docker/compose_runtime) turns a hardened Project into networks, volumes and
// containers through the Engine API.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ck::compose {

/// Where a value came from, for messages: "docker-compose.yml:12: services.web.ports[0]: ...".
struct Location {
  std::string file;  // file name relative to the workspace ("docker-compose.yml")
  int line = 0;      // 1-based; 0 when unknown
  std::string key;   // dotted path: services.web.ports[0]
};

/// An invalid or refused file. what() is one line: "<file>:<line>: <key>: <message>".
class Error : public std::runtime_error {
 public:
  Error(Location where, const std::string& message);
  const Location& where() const { return where_; }
  const std::string& message() const { return message_; }

 private:
  Location where_;
  std::string message_;
};

struct Port {
  std::string host_ip;     // "" when the file gives none
  int host_port = 0;       // 0: none published on the host (or "any", left to the engine)
  int container_port = 0;
  std::string protocol = "tcp";
};

struct Mount {
  enum class Kind { volume, bind, tmpfs };
  Kind kind = Kind::volume;
  std::string source;  // volume name (project-local, before prefixing) or host path; "" for an
                       // anonymous volume or tmpfs
  std::string target;  // path inside the container
  bool read_only = false;
  Location where;
};

struct Healthcheck {
  std::vector<std::string> test;  // as the Engine wants it: {"CMD", ...}, {"CMD-SHELL", "..."}
  bool disable = false;           // test: ["NONE"] or disable: true
  std::chrono::milliseconds interval{30000};
  std::chrono::milliseconds timeout{30000};
  std::chrono::milliseconds start_period{0};
  int retries = 3;
};

struct Dependency {
  enum class Condition { started, healthy, completed_successfully };
  std::string service;
  Condition condition = Condition::started;
  bool required = true;
  Location where;  // added by the parser: the depends_on entry
};

struct Build {
  std::string context = ".";  // relative to the workspace folder
  std::string dockerfile;     // "" → Dockerfile in the context
  std::map<std::string, std::string> args;
  std::string target;
};

struct Service {
  std::string name;
  std::string image;             // "" when only build is given
  std::optional<Build> build;
  std::optional<std::vector<std::string>> command;     // exec form; a string is split as a shell
  std::optional<std::vector<std::string>> entrypoint;  // would (quotes honoured, no expansion)
  std::map<std::string, std::string> environment;      // env_file entries, then environment
  std::vector<Port> ports;
  std::vector<int> expose;
  std::vector<Mount> volumes;
  std::vector<std::string> networks;  // project-local names; empty → the project's default
  std::vector<Dependency> depends_on;
  std::optional<Healthcheck> healthcheck;
  std::string restart;  // "", "no", "always", "on-failure[:N]", "unless-stopped"
  std::string working_dir;
  std::string user;
  std::string hostname;
  std::string stop_signal;                               // "SIGINT", ...
  std::optional<std::chrono::milliseconds> stop_grace_period;
  std::optional<bool> tty;
  std::optional<bool> stdin_open;
  std::vector<std::string> extra_hosts;  // "name:address", as the engine takes them
  std::map<std::string, std::string> labels;
  std::vector<std::string> profiles;
  std::uint64_t memory = 0;  // bytes: deploy.resources.limits.memory or mem_limit; 0 = unset
  double cpus = 0;           // deploy.resources.limits.cpus or cpus; 0 = unset
  int pids = 0;              // deploy.resources.limits.pids or pids_limit; 0 = unset
  // Keys the safety rules refuse are recorded, not dropped, so harden() can name them:
  // privileged, cap_add, pid, ipc, network_mode, devices, security_opt, userns_mode, ...
  std::map<std::string, Location> refused;
  Location where;  // the service's own key
  std::string network_mode;  // added: "" (the project's networks) or "none"; "bridge" reads as ""
};

struct Volume {
  std::string name;  // project-local name
  bool external = false;
  std::string external_name;  // the engine's name when external
  std::map<std::string, std::string> labels;
  Location where;  // added: its key under the top-level volumes
};

struct Network {
  std::string name;  // project-local name
  bool external = false;
  std::string external_name;
  Location where;  // added: its key under the top-level networks
};

struct Project {
  std::string name;                         // top-level `name`, else "" (the runner names it)
  std::vector<std::string> files;           // the files read, base first, then overrides
  std::map<std::string, Service> services;  // only the active ones (profiles applied)
  std::map<std::string, Volume> volumes;
  std::map<std::string, Network> networks;
  std::vector<std::string> warnings;        // one per unknown key: "<file>:<line>: <key>: ..."
};

/// Variables for ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, $VAR, $$.
using Vars = std::map<std::string, std::string>;

struct LoadOptions {
  std::filesystem::path dir;            // the workspace folder
  Vars vars;                            // beat the workspace's .env
  std::vector<std::string> profiles;    // active profiles (services without profiles always run)
  std::size_t max_bytes = 1u << 20;     // per file; larger files are refused
};

/// The compose file a folder holds, in the order Compose looks for them (compose.yaml,
/// compose.yml, docker-compose.yaml, docker-compose.yml); nullopt when none.
std::optional<std::string> find_file(const std::filesystem::path& dir);

/// Reads the folder's compose file and its `.override` file (same base name, e.g.
/// docker-compose.override.yml), the .env file for variables, every env_file; merges,
/// interpolates and validates. Throws Error.
Project load(const LoadOptions& options);

/// One file's text, parsed and interpolated with `vars` (env_file entries are read from `dir`
/// when it is given, refused when it is empty). The unit tests and the fuzz target use it.
Project parse(std::string_view text, const std::string& file, const Vars& vars,
              const std::filesystem::path& dir = {});

/// `base` with `override` merged in, by the Compose spec's merge rules.
Project merge(Project base, const Project& override);

/// `text` with variables substituted. Throws Error (at `where`) on ${VAR:?err} and on a
/// malformed reference.
std::string interpolate(std::string_view text, const Vars& vars, const Location& where);

/// Services in start order (each after everything it depends on; ties by name). Throws Error
/// on a cycle or a dependency on a service that does not exist.
std::vector<std::string> start_order(const Project& project);

/// The operator's rules (issue 15, section 4).
struct Policy {
  std::string workspace;                  // its name: the project is "ck-<workspace>"
  std::filesystem::path source;           // the workspace's real folder on the host
  std::uint64_t memory = 512ull << 20;    // per service caps
  double cpus = 1;
  int pids = 256;
  bool host_ports = false;                // runtime.compose_host_ports
};

/// Which service the gateway routes to and the port it listens on inside its container.
struct Route {
  std::string service;
  int port = 0;
};

/// The service labelled cloudyknight.route=true (port from cloudyknight.port, else its only
/// port), else the only service with a published or exposed port; throws Error naming the
/// candidates otherwise.
Route pick_route(const Project& project);

/// `project` made safe to run, or Error naming the first refused key: binds only inside
/// policy.source, made read-only (the seeds' /workspaces/<name> prefix is rewritten to the
/// real folder); privileged, cap_add, pid/ipc/network_mode host, devices, the docker socket
/// and other host paths refused; limits capped by the policy; external networks mapped to the
/// project's own; host ports dropped from every service (the runner publishes the routed
/// one) unless policy.host_ports.
Project harden(Project project, const Policy& policy);

/// The project as a compose file (what `cloudyknight ws compose NAME` prints for a compose
/// workspace): the effective, rewritten services. '$' escaped as '$$'.
std::string to_yaml(const Project& project);

}  // namespace ck::compose
