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

struct DockerRuntimeOptions {
  std::filesystem::path data_dir;
  int port_min = 8000;
  int port_max = 8100;
  std::map<std::string, std::string> images;  // type → image, from the config
  /// Which control plane owns a container (label cloudyknight.instance): adoption and the
  /// orphan sweep only touch this control plane's containers.
  std::string instance;
};

class DockerRuntime final : public Runtime {
 public:
  /// `engine` must be connected.
  DockerRuntime(net::io_context& io, std::unique_ptr<DockerEngine> engine, DockerRuntimeOptions opts);
  ~DockerRuntime() override;

  std::string kind() const override { return "docker"; }
  std::string isolation() const override;
  net::awaitable<Result<RunningApp>> start(RunSpec spec, PhaseCallback on_phase) override;
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

  DockerEngine& engine() { return *engine_; }

 private:
  struct Slot;
  net::awaitable<Result<std::string>> prepare_image(const RunSpec& spec, std::shared_ptr<Slot> slot,
                                                    int& container_port);
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

  net::io_context& io_;
  std::unique_ptr<DockerEngine> engine_;
  DockerRuntimeOptions opts_;
  PortAllocator ports_;
  std::map<std::string, std::shared_ptr<Slot>> slots_;
  std::set<std::string> installing_;  // dependency volumes being filled right now
  bool closing_ = false;
};

}  // namespace ck
