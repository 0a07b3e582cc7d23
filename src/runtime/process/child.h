#pragma once
// A child process started through `cloudyknight __init` (init.cc), optionally in its own pid,
// mount, ipc and uts namespaces, and watched through a pidfd on an io_context. Lives on that context.

#include <memory>
#include <string>
#include <sys/types.h>
#include <vector>

#include "core/error.h"
#include "http/asio.h"

namespace ck {

struct SpawnOptions {
  std::string self_exe;       // path of the cloudyknight binary (for __init)
  std::string shell_command;  // run with /bin/sh -c
  std::string cwd;
  std::vector<std::string> env;  // "K=V"
  int log_fd = -1;               // stdout and stderr
  bool namespaces = false;       // new pid, mount, ipc and uts namespaces (needs root)
  pid_t join_namespaces_of = 0;  // > 0: the command enters that process's pid, mount, ipc, uts
  std::vector<std::string> cgroup_dirs;  // joined by the child before it runs anything
};

class Child {
 public:
  /// Starts the child. Fails with the errno text when clone/exec setup fails.
  static Result<std::shared_ptr<Child>> spawn(net::any_io_executor ex, const SpawnOptions& opts);
  ~Child();

  pid_t pid() const { return pid_; }
  bool exited() const { return exited_; }
  /// Raw wait status (valid once exited()).
  int status() const { return status_; }
  /// Sends a signal to the child (its init forwards TERM/INT/HUP to the app).
  void signal(int sig) const;
  /// Completes when the child has exited and been reaped.
  net::awaitable<void> wait();

 private:
  Child(net::any_io_executor ex, pid_t pid, int pidfd);
  static net::awaitable<void> reap(std::shared_ptr<Child> self);

  pid_t pid_;
  int pidfd_;
  bool exited_ = false;
  int status_ = 0;
  net::steady_timer done_;
};

}  // namespace ck
