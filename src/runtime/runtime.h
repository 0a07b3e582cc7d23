#pragma once
// The Runtime seam: runs a workspace's app following the container contract (copy the source,
// install dependencies, start on $PORT, report readiness and exit). Drivers: process/ (the
// embedded default), docker/ later. Methods are called on the control-plane io_context.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/units.h"
#include "http/asio.h"
#include "runtime/exec.h"

namespace ck {

/// One thing a cleanup removed (or, in a dry run, would remove).
struct Reclaimed {
  std::string kind;  // "volume", "deps" (a folder), "image", "trash", "log", "state"
  std::string name;  // the volume, image, file or table
  std::uint64_t bytes = 0;
  std::string reason;  // why it goes ("unused for 8d")
  std::string error;   // set: removing it failed (it stays)
};

/// What Runtime::collect_garbage keeps.
struct GcPolicy {
  Duration deps_keep = std::chrono::hours(24 * 7);  // a dependency volume unused this long goes
  std::uint64_t deps_max_size = 0;  // dependency volumes together at most this (0: no cap)
  std::set<std::string> workspaces;  // the workspaces that exist: their images stay
  bool workspaces_known = true;      // false (storage could not be listed): no image goes
  bool dry_run = false;
};

/// What the runtime needs to know to run one workspace.
struct RunSpec {
  std::string name;
  std::string type;  // "node", "python"...
  std::filesystem::path source;
  std::string install;  // shell command, may be empty
  std::string command;  // shell command; $PORT is set
  std::string image;    // workspace.json "image": overrides the type's image (docker)
  std::optional<int> port;
  std::map<std::string, std::string> env;  // with CK_BASE_PATH and BASE_URL (make_run_spec)
  bool keep_prefix = false;  // workspace.json "prefix": "keep": the app sees /<name>/...
  std::string domain;        // gateway.domain, for the Traefik Host rule (docker labels)
  std::string deps_key;  // changes when dependencies must be installed again
  std::uint64_t memory = 512ull << 20;
  std::uint64_t install_memory = 1ull << 30;
  double cpus = 1;
  int pids = 256;
  Duration ready_timeout = std::chrono::seconds(60);
};

struct RunningApp {
  std::string host;  // "127.0.0.1" or "::1", whichever the app accepted on
  int port = 0;
  int pid = 0;  // host pid of the workspace's top process
};

/// How an app ended.
struct ExitInfo {
  int code = -1;    // exit code, or -1 if killed by a signal
  int signal = 0;   // the signal that killed it
  bool oom = false; // the kernel killed it for exceeding its memory limit
  bool requested = false;  // it was stopped on purpose
  std::string describe() const;
};

/// An exit code as an init process or shell reports it: 128+N means killed by signal N.
ExitInfo exit_from_code(int code);

enum class Phase { preparing, installing, starting };

using PhaseCallback = std::function<void(Phase, const std::string& detail)>;

class Runtime {
 public:
  virtual ~Runtime() = default;
  virtual std::string kind() const = 0;
  /// What isolation is applied to apps, in words, for logs and /status.
  virtual std::string isolation() const = 0;
  /// Prepares and starts the app; completes once it accepts TCP connections on its port.
  /// On failure the message says what failed; the details are in log_path(name).
  virtual net::awaitable<Result<RunningApp>> start(RunSpec spec, PhaseCallback on_phase) = 0;
  /// Blue/green: whether replace() can start `spec`'s new version beside the running one.
  /// Drivers that run one copy of a workspace say no, as does an app whose port workspace.json
  /// fixes; the monitor then stops the old copy first and holds requests meanwhile.
  virtual bool can_replace(const RunSpec& spec) const {
    (void)spec;
    return false;
  }
  /// Starts the workspace's new version beside the running one (its own copy of the source,
  /// port and limits) while the old one serves. Once the new one accepts connections it is the
  /// workspace's app: `switched` gets it (the caller routes to it), then the old one is stopped
  /// within `grace`, and wait_exit() follows the new one. When the new one does not start, the
  /// old one is left as it was and the error says why.
  virtual net::awaitable<Result<RunningApp>> replace(RunSpec spec, PhaseCallback on_phase,
                                                     std::function<void(const RunningApp&)> switched,
                                                     Duration grace) {
    (void)on_phase;
    (void)switched;
    (void)grace;
    co_return fail(Errc::conflict, "the " + kind() + " runtime runs one copy of workspace " +
                                       spec.name + " at a time");
  }
  /// Completes when the workspace's running app exits; at once if nothing runs.
  virtual net::awaitable<ExitInfo> wait_exit(std::string name) = 0;
  /// Stops whatever runs for the workspace (install or app): SIGTERM, SIGKILL after `grace`.
  virtual net::awaitable<void> stop(std::string name, Duration grace) = 0;
  /// Kills every process at once; for shutdown when waiting is not possible.
  virtual void kill_all() = 0;
  /// The workspace's log file (install and app output).
  virtual std::filesystem::path log_path(const std::string& name) const = 0;
  /// Freezes the running app so it uses no CPU (docker pause, the cgroup freezer); its
  /// memory and port stay, and thaw() resumes it in milliseconds.
  virtual net::awaitable<Result<void>> freeze(std::string name) = 0;
  virtual net::awaitable<Result<void>> thaw(std::string name) = 0;
  /// Copies changed source files (relative paths; a missing file is deleted) into the
  /// running app's copy, for apps that reload themselves (workspace.json "reload": "hmr").
  virtual net::awaitable<Result<void>> update_files(std::string name, std::filesystem::path source,
                                                    std::vector<std::string> paths) = 0;
  /// Runs argv where the workspace's app runs: inside its container (docker), or in its pid
  /// and mount namespaces and cgroup (process), in the app's folder with its environment;
  /// never on the host outside them. The output goes to `output` as it comes; the command is
  /// killed when `timeout` passes or `output` answers false. not_found when the app is not
  /// running.
  virtual net::awaitable<Result<ExecOutcome>> exec(std::string name, std::vector<std::string> argv,
                                                   Duration timeout, OutputSink output) = 0;
  /// exec() in one service of a compose workspace ("" = the routed one, as exec()).
  /// invalid_argument when the workspace has no such service.
  virtual net::awaitable<Result<ExecOutcome>> exec_in(std::string name, std::string service,
                                                      std::vector<std::string> argv,
                                                      Duration timeout, OutputSink output) {
    if (!service.empty()) {
      co_return fail(Errc::invalid_argument,
                     "\"service\" chooses a service of a compose workspace; '" + name +
                         "' runs one app");
    }
    co_return co_await exec(std::move(name), std::move(argv), timeout, std::move(output));
  }
  /// Removes what the runtime still runs for workspaces not in `keep` (containers left over
  /// from a previous control plane whose folder is gone). Drivers whose apps die with the
  /// control plane have nothing to do.
  virtual net::awaitable<void> remove_orphans(std::set<std::string> keep) {
    (void)keep;
    co_return;
  }
  /// Removes what the runtime keeps beyond `policy` (docker: dependency volumes unused for
  /// deps_keep or beyond deps_max_size, images it built that nothing uses); with
  /// policy.dry_run only says what it would remove. Never touches what a running or starting
  /// app uses. Drivers that keep nothing across starts have nothing to do.
  virtual net::awaitable<Result<std::vector<Reclaimed>>> collect_garbage(GcPolicy policy) {
    (void)policy;
    co_return std::vector<Reclaimed>{};
  }
};

/// DATA/logs/<name>.log: where every driver writes a workspace's install and app output.
std::filesystem::path workspace_log_path(const std::filesystem::path& data_dir,
                                         const std::string& name);

/// Appends "==> cloudyknight <time>: <line>" to a workspace log (fd < 0: nothing).
void append_log_line(int fd, const std::string& line);

/// The last `lines` lines of a text file ("" if it cannot be read).
std::string tail_file(const std::filesystem::path& path, int lines);

}  // namespace ck
