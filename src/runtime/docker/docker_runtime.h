#pragma once
// The docker driver: every workspace in its own ephemeral container, through the Engine API
// (see plan.h for what the containers look like). It adopts the labelled containers a
// previous control plane left running when their spec hash is unchanged, replaces the
// others, streams container output into DATA/logs/<name>.log, and reports exits with the
// engine's reason (exit code, OOMKilled). Methods run on the control-plane io_context.

#include <map>
#include <memory>
#include <set>

#include "runtime/docker/engine.h"
#include "runtime/ports.h"
#include "runtime/runtime.h"

namespace ck {

struct ContainerPlan;
struct ComposePlan;
namespace compose {
struct Dependency;
}

struct DockerRuntimeOptions {
  std::filesystem::path data_dir;
  int port_min = 8000;
  int port_max = 8100;
  std::map<std::string, std::string> images;  // type → image, from the config
  /// Which control plane owns a container (label cloudyknight.instance): adoption and the
  /// orphan sweep only touch this control plane's containers.
  std::string instance;
  /// limits.egress: false puts apps on an `internal` network (no route out); the gateway then
  /// reaches the container's address on that bridge instead of a published port.
  bool egress = true;
  /// Image builds (Dockerfile workspaces): memory/memswap for their RUN steps (0: the spec's
  /// install memory), CPUs (0: the spec's), and the time the whole build may take.
  std::uint64_t build_memory = 0;
  Duration build_timeout = std::chrono::minutes(30);
  /// Adds the host firewall rule that keeps containers on our networks from opening
  /// connections to the host itself (see host_firewall()).
  bool host_firewall = true;
  /// runtime.compose_host_ports: compose services other than the routed one publish the ports
  /// their file asks for (on 127.0.0.1 only).
  bool compose_host_ports = false;
};

/// The iptables rule (arguments after the chain) that drops new connections from every bridge
/// of ours (ck-+, see bridge_name) to the host's own addresses; replies to connections the host
/// opened (the gateway, the readiness probe) still pass.
std::vector<std::string> host_firewall_rule();

class DockerRuntime final : public Runtime {
 public:
  /// `engine` must be connected.
  DockerRuntime(net::io_context& io, std::unique_ptr<DockerEngine> engine, DockerRuntimeOptions opts);
  ~DockerRuntime() override;

  std::string kind() const override { return "docker"; }
  net::awaitable<Result<std::vector<Reclaimed>>> collect_garbage(GcPolicy policy) override;
  std::string isolation() const override;
  net::awaitable<Result<RunningApp>> start(RunSpec spec, PhaseCallback on_phase) override;
  /// Yes for a single-container workspace (typed or Dockerfile; not compose) whose port
  /// workspace.json does not fix: the new container publishes a port of its own.
  bool can_replace(const RunSpec& spec) const override;
  /// The new version runs in a second container (ck-<name>.b, then ck-<name> again) with its
  /// own port (or address on the internal network) while the old one serves; a changed
  /// dependency key installs into a new volume, an unchanged one reuses the old container's.
  net::awaitable<Result<RunningApp>> replace(RunSpec spec, PhaseCallback on_phase,
                                             std::function<void(const RunningApp&)> switched,
                                             Duration grace) override;
  net::awaitable<ExitInfo> wait_exit(std::string name) override;
  net::awaitable<void> stop(std::string name, Duration grace) override;
  void kill_all() override;
  std::filesystem::path log_path(const std::string& name) const override;
  net::awaitable<void> remove_orphans(std::set<std::string> keep) override;
  net::awaitable<Result<void>> freeze(std::string name) override;
  net::awaitable<Result<void>> thaw(std::string name) override;
  net::awaitable<Result<void>> update_files(std::string name, std::filesystem::path source,
                                            std::vector<std::string> paths) override;
  net::awaitable<Result<ExecOutcome>> exec(std::string name, std::vector<std::string> argv,
                                           Duration timeout, OutputSink output) override;
  net::awaitable<Result<ExecOutcome>> exec_in(std::string name, std::string service,
                                              std::vector<std::string> argv, Duration timeout,
                                              OutputSink output) override;

  DockerEngine& engine() { return *engine_; }

 private:
  struct Slot;
  net::awaitable<Result<std::string>> prepare_image(const RunSpec& spec, std::shared_ptr<Slot> slot,
                                                    int& container_port);
  net::awaitable<Result<RunningApp>> launch(std::shared_ptr<Slot> slot, RunSpec spec,
                                            std::string image, int container_port,
                                            PhaseCallback on_phase);
  net::awaitable<Result<RunningApp>> start_new_version(std::shared_ptr<Slot> slot, RunSpec spec,
                                                       PhaseCallback on_phase);
  net::awaitable<void> stop_slot(std::shared_ptr<Slot> slot, Duration grace);
  std::shared_ptr<Slot> slot_of(const std::string& workspace, const std::string& container) const;
  net::awaitable<Result<void>> install(const RunSpec& spec, const std::string& image,
                                       std::shared_ptr<Slot> slot);
  net::awaitable<Result<void>> run_install(const RunSpec& spec, const std::string& image,
                                           std::shared_ptr<Slot> slot);
  net::awaitable<Result<RunningApp>> wait_ready(std::shared_ptr<Slot> slot, std::string id,
                                                Duration timeout);
  void follow(std::shared_ptr<Slot> slot, std::string id, long since);
  net::awaitable<void> follow_logs(std::shared_ptr<Slot> slot, std::string id, long since);
  net::awaitable<void> watch_exit(std::shared_ptr<Slot> slot, std::string id);
  net::awaitable<Result<std::string>> create(ContainerPlan plan);
  net::awaitable<void> remove_quietly(std::string id);
  net::awaitable<void> watch_events();
  void release_port(Slot& slot);
  net::awaitable<Result<void>> ensure_network(std::string network, std::string workspace,
                                              bool internal, bool compose = false);
  // Compose workspaces (compose_runtime.cc).
  net::awaitable<Result<RunningApp>> start_compose(RunSpec spec, PhaseCallback on_phase,
                                                   std::shared_ptr<Slot> slot);
  net::awaitable<Result<void>> compose_images(const RunSpec& spec, const ComposePlan& plan,
                                              std::shared_ptr<Slot> slot,
                                              std::map<std::string, std::string>& ids);
  net::awaitable<Result<void>> wait_dependency(std::shared_ptr<Slot> slot, std::string service,
                                               compose::Dependency dep, Duration timeout);
  net::awaitable<void> follow_service(std::shared_ptr<Slot> slot, std::string id, bool tty,
                                      std::string prefix, long since);
  net::awaitable<void> stop_compose(std::shared_ptr<Slot> slot, Duration grace);
  std::set<std::string> subnets_in_flight_;  // picked for networks being created now
  net::awaitable<Result<std::string>> container_address(std::string id, std::string network);
  net::awaitable<void> remove_old_deps(std::string workspace, std::string keep);
  void install_host_firewall();

  net::io_context& io_;
  std::unique_ptr<DockerEngine> engine_;
  DockerRuntimeOptions opts_;
  PortAllocator ports_;
  std::map<std::string, std::shared_ptr<Slot>> slots_;
  std::map<std::string, std::shared_ptr<Slot>> pending_;  // new versions starting (replace)
  std::map<std::string, std::shared_ptr<Slot>> retiring_;  // old versions stopping after a switch
  std::set<std::string> installing_;  // dependency volumes being filled right now
  bool closing_ = false;
  std::string firewall_;  // what install_host_firewall() achieved, for isolation()
};

}  // namespace ck
