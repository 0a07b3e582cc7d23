#pragma once
// What the docker runtime keeps per workspace (private to runtime/docker: docker_runtime.cc
// and compose_runtime.cc). Lives on the control-plane io_context.

#include <unistd.h>

#include <optional>
#include <string>
#include <vector>

#include "runtime/docker/docker_runtime.h"

namespace ck {

struct DockerRuntime::Slot {
  explicit Slot(net::io_context& io) : exit_signal(io) {}
  std::string name;
  std::string container;  // the app container's id
  bool second_name = false;  // it is named ck-<name>.b (app_container_name): blue/green alternates
  std::string install_container;
  std::string deps_volume;  // the dependency volume this start uses (the cleanup leaves it)
  int port = 0;
  int pid = 0;
  bool stopping = false;
  bool frozen = false;
  int log_fd = -1;
  std::optional<ExitInfo> exited;  // set by watch_exit
  bool oom_seen = false;           // the engine reported an OOM kill in the container
  std::string host = "127.0.0.1";  // where the gateway reaches the app: the published port on
  int app_port = 0;                // loopback, or the container's address on an internal net
  net::steady_timer exit_signal;   // cancelled when `exited` is set
  // A compose workspace: every service's container in start order (`container` is the routed
  // one's), and the project's networks.
  struct Member {
    std::string service, id;
    int stop_seconds = 0;  // its stop_grace_period; 0: the workspace's grace
    bool tty = false;      // its output comes raw (no stream frames)
  };
  bool compose = false;
  std::vector<Member> members;
  std::vector<std::string> networks;
  ~Slot() {
    if (log_fd >= 0) ::close(log_fd);
  }
  void log_line(const std::string& line) const { append_log_line(log_fd, line); }
  void set_exited(ExitInfo info) {
    exited = info;
    exit_signal.cancel();
  }
};

}  // namespace ck
