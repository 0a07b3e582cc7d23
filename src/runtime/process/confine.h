#pragma once
// The sandbox's layers as `cloudyknight __init` applies them (init.cc), in a freshly exec'd,
// single-threaded process: the new root (mounts + pivot_root) in the init, the uid switch,
// capability drop, no_new_privs, rlimits and seccomp filter in the app's process right before
// exec. The daemon describes what to apply with confine_env(); the init reads it back with
// confine_from_env() and strips those variables before the app starts.

#include <sys/types.h>

#include <string>
#include <vector>

namespace ck {

struct ConfineSpec {
  bool own_uid = false;
  bool namespaces = false;  // the init is PID 1 of new pid/mount/ipc/uts namespaces
  bool drop_caps = false;
  bool no_new_privs = false;
  bool seccomp = false;
  bool rlimits = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string app_dir;   // host path, bound read-write at /app
  std::string home_dir;  // host path, bound read-write at /home/app
  std::string root_dir;  // an empty host folder the new root's tmpfs is mounted on
  std::string hostname;
};

/// The sandbox's fixed paths.
inline constexpr const char* kSandboxApp = "/app";
inline constexpr const char* kSandboxHome = "/home/app";

/// CK_INIT_* variables that carry `spec` to the init.
std::vector<std::string> confine_env(const ConfineSpec& spec);
/// Reads them back from the environment and removes them from it.
ConfineSpec confine_from_env();

/// The system calls the seccomp filter refuses with EPERM (for docs and tests).
const std::vector<std::string>& seccomp_refused_syscalls();
/// True when this kernel loads seccomp filters (checked without loading one).
bool seccomp_available(std::string& why);

/// In the init, as PID 1 of the new namespaces: builds the root (read-only system folders,
/// a minimal /etc and /dev, /proc, a private /tmp, /app and HOME) on a tmpfs at
/// spec.root_dir, pivots into it and detaches the old root; sets the hostname. On failure
/// returns false with `err` naming the step.
bool enter_sandbox_root(const ConfineSpec& spec, std::string& err);

/// In the process about to exec the app (or a `run` command): switches to spec.uid/gid,
/// drops every capability, sets no_new_privs, the rlimits and the seccomp filter, each as
/// spec says. Returns false with `err` naming the step that failed.
bool confine_process(const ConfineSpec& spec, std::string& err);

}  // namespace ck
