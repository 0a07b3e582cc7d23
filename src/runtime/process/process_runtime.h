#pragma once
// The process runtime: the embedded default when no Docker engine answers. Each workspace
// runs as a child process tree following the container contract: source copied to
// DATA/run/<name>/app, dependencies installed there, app started on $PORT (127.0.0.1), output
// appended to DATA/logs/<name>.log. Every install, app and `run` command is sandboxed
// (sandbox.h, confine.h): its own uid, new pid/mount/ipc/uts namespaces with /app as its
// folder, no capabilities, no_new_privs, seccomp, rlimits, an environment built from nothing,
// plus cgroup v1 limits; a workspace is refused when a layer is missing unless
// runtime.allow_weak_sandbox. All methods run on the control-plane io_context; file copies go
// to a small pool.

#include <functional>
#include <map>
#include <memory>

#include <boost/asio/thread_pool.hpp>

#include "runtime/ports.h"
#include "runtime/process/sandbox.h"
#include "runtime/runtime.h"

namespace ck {

struct ProcessRuntimeOptions {
  std::filesystem::path data_dir;
  int port_min = 8000;
  int port_max = 8100;
  std::string self_exe;  // path of this binary, for `__init`
  UidRange uid_range;             // runtime.uid_range
  bool allow_weak_sandbox = false;  // runtime.allow_weak_sandbox
  std::optional<SandboxProbe> probe;  // tests: what the kernel allows; unset: probe_sandbox()
};

class ProcessRuntime final : public Runtime {
 public:
  ProcessRuntime(net::io_context& io, ProcessRuntimeOptions opts);
  ~ProcessRuntime() override;

  std::string kind() const override { return "process"; }
  /// DATA/run/<name> (the app copy with its installed dependencies, home, uid) of workspaces
  /// that are gone and whose dependencies were not installed for runtime.deps_keep.
  net::awaitable<Result<std::vector<Reclaimed>>> collect_garbage(GcPolicy policy) override;
  std::string isolation() const override { return isolation_; }
  net::awaitable<Result<RunningApp>> start(RunSpec spec, PhaseCallback on_phase) override;
  /// Yes when apps have their own mount namespace (both copies see their folder as /app, so
  /// installed dependencies move between them) and workspace.json fixes no port.
  bool can_replace(const RunSpec& spec) const override;
  /// The new version runs from the other of DATA/run/<name>/app and app-b: dependencies are
  /// linked over (hard links) when their key is unchanged, installed afresh otherwise.
  net::awaitable<Result<RunningApp>> replace(RunSpec spec, PhaseCallback on_phase,
                                             std::function<void(const RunningApp&)> switched,
                                             Duration grace) override;
  net::awaitable<ExitInfo> wait_exit(std::string name) override;
  net::awaitable<void> stop(std::string name, Duration grace) override;
  void kill_all() override;
  std::filesystem::path log_path(const std::string& name) const override;
  net::awaitable<Result<void>> freeze(std::string name) override;
  net::awaitable<Result<void>> thaw(std::string name) override;
  net::awaitable<Result<void>> update_files(std::string name, std::filesystem::path source,
                                            std::vector<std::string> paths) override;
  net::awaitable<Result<ExecOutcome>> exec(std::string name, std::vector<std::string> argv,
                                           Duration timeout, OutputSink output) override;

 private:
  struct Slot;
  net::awaitable<Result<RunningApp>> launch_app(std::shared_ptr<Slot> slot, RunSpec spec,
                                                PhaseCallback on_phase, const Slot* previous);
  net::awaitable<void> stop_slot(std::shared_ptr<Slot> slot, Duration grace);
  Result<void> thaw_slot(Slot& slot);
  std::filesystem::path app_dir(const Slot& slot) const;
  net::awaitable<Result<int>> run_step(Slot& slot, const std::string& cmd,
                                       const std::vector<std::string>& env);
  std::vector<std::string> base_env(const RunSpec& spec, const Slot& slot, int port) const;
  std::vector<std::string> init_env(const Slot& slot) const;
  void release_port(Slot& slot);
  Result<std::shared_ptr<class Child>> launch(Slot& slot, const std::string& cmd,
                                              const std::vector<std::string>& env);

  net::io_context& io_;
  ProcessRuntimeOptions opts_;
  PortAllocator ports_;
  std::optional<SandboxPlan> plan_;  // unset: workspaces are refused with refusal_
  std::string refusal_;
  bool cgroups_ = false;
  std::string isolation_;
  std::map<std::string, std::shared_ptr<Slot>> slots_;
  std::map<std::string, std::shared_ptr<Slot>> pending_;  // new versions starting (replace)
  std::unique_ptr<net::thread_pool> pool_;
};

}  // namespace ck
