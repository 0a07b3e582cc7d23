#include "runtime/process/init.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/process/confine.h"

namespace ck {
namespace {

void join_cgroups(const char* list) {
  std::string all(list);
  size_t start = 0;
  while (start <= all.size()) {
    size_t end = all.find(':', start);
    std::string dir = all.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!dir.empty()) {
      std::string procs = dir + "/cgroup.procs";
      int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0 || ::write(fd, "0\n", 2) != 2) {
        std::fprintf(stderr, "cloudyknight: warning: cannot join cgroup %s: %s\n", dir.c_str(),
                     std::strerror(errno));
      }
      if (fd >= 0) ::close(fd);
    }
    if (end == std::string::npos) break;
    start = end + 1;
  }
}

}  // namespace

int run_init(int argc, char** argv) {
  int first = 1;
  while (first < argc && std::strcmp(argv[first], "--") != 0) ++first;
  ++first;
  if (first >= argc) {
    std::fprintf(stderr, "usage: cloudyknight __init -- COMMAND [ARGS...]\n");
    return 2;
  }
  if (const char* cg = std::getenv("CK_INIT_CGROUPS")) {
    join_cgroups(cg);
    ::unsetenv("CK_INIT_CGROUPS");
  }
  // The sandbox's layers (confine.h), carried in CK_INIT_* variables and removed from the
  // environment the app inherits.
  ConfineSpec spec = confine_from_env();
  // CK_INIT_JOIN=<pid>: the command joins that process's namespaces (a command run beside a
  // workspace's app): ipc and uts here, pid for the children, mount in the command's process.
  // The init itself stays in the daemon's mount and pid namespaces, where /proc shows it.
  int join_mnt = -1;
  int own_pid_ns = -1;  // where this process's later children (none but the command) go back to
  if (const char* join = std::getenv("CK_INIT_JOIN")) {
    std::string ns = std::string("/proc/") + join + "/ns/";
    int pid_ns = ::open((ns + "pid").c_str(), O_RDONLY | O_CLOEXEC);
    int ipc_ns = ::open((ns + "ipc").c_str(), O_RDONLY | O_CLOEXEC);
    int uts_ns = ::open((ns + "uts").c_str(), O_RDONLY | O_CLOEXEC);
    join_mnt = ::open((ns + "mnt").c_str(), O_RDONLY | O_CLOEXEC);
    own_pid_ns = ::open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
    if (pid_ns < 0 || ipc_ns < 0 || uts_ns < 0 || join_mnt < 0 || own_pid_ns < 0 ||
        ::setns(ipc_ns, CLONE_NEWIPC) != 0 || ::setns(uts_ns, CLONE_NEWUTS) != 0 ||
        ::setns(pid_ns, CLONE_NEWPID) != 0) {
      std::fprintf(stderr, "cloudyknight: cannot enter the app's namespaces (pid %s): %s\n", join,
                   std::strerror(errno));
      return 126;
    }
    ::close(pid_ns);
    ::close(ipc_ns);
    ::close(uts_ns);
    ::unsetenv("CK_INIT_JOIN");
  }
  bool pid1 = ::getpid() == 1;
  if (pid1 && spec.namespaces) {
    // PID 1 of the workspace's new namespaces: its own root, /proc, /tmp and hostname.
    std::string err;
    if (!enter_sandbox_root(spec, err)) {
      std::fprintf(stderr, "cloudyknight: sandbox: cannot %s; the workspace does not start\n",
                   err.c_str());
      return 126;
    }
  } else if (!pid1) {
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  }
  // If the daemon dies, take the app down with us.
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);

  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) sigaddset(&set, s);
  sigprocmask(SIG_BLOCK, &set, nullptr);

  pid_t app = ::fork();
  if (app < 0) {
    std::fprintf(stderr, "cloudyknight: cannot fork the app: %s\n", std::strerror(errno));
    return 126;
  }
  if (app == 0) {
    ::setpgid(0, 0);
    if (join_mnt >= 0) {
      // Entering a mount namespace resets the working folder: in a sandbox the app's folder
      // is /app, else it has the same path in there.
      char cwd[4096];
      if (!::getcwd(cwd, sizeof cwd) || ::setns(join_mnt, CLONE_NEWNS) != 0 ||
          ::chdir(spec.namespaces ? kSandboxApp : cwd) != 0) {
        std::fprintf(stderr, "cloudyknight: cannot enter the app's mount namespace: %s\n",
                     std::strerror(errno));
        ::_exit(126);
      }
      ::close(join_mnt);
    }
    std::string err;
    if (!confine_process(spec, err)) {
      std::fprintf(stderr, "cloudyknight: sandbox: cannot %s; not running the command\n", err.c_str());
      ::_exit(126);
    }
    sigprocmask(SIG_UNBLOCK, &set, nullptr);
    ::execvp(argv[first], argv + first);
    std::fprintf(stderr, "cloudyknight: cannot run %s: %s\n", argv[first], std::strerror(errno));
    ::_exit(127);
  }
  ::setpgid(app, app);
  if (join_mnt >= 0) ::close(join_mnt);
  if (own_pid_ns >= 0) {
    // Only the command belongs in the app's pid namespace; anything this process starts later
    // (a sanitizer's helper thread at exit, say) stays in ours.
    (void)::setns(own_pid_ns, CLONE_NEWPID);
    ::close(own_pid_ns);
  }

  int exit_code = 0;
  for (;;) {
    siginfo_t info{};
    if (sigwaitinfo(&set, &info) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (info.si_signo == SIGUSR1 || info.si_signo == SIGUSR2) {
      // Freeze/thaw without a freezer cgroup: stop or continue the app's process group.
      ::kill(-app, info.si_signo == SIGUSR1 ? SIGSTOP : SIGCONT);
      continue;
    }
    if (info.si_signo != SIGCHLD) {
      ::kill(-app, info.si_signo);
      continue;
    }
    bool app_done = false;
    for (;;) {
      int status = 0;
      pid_t p = ::waitpid(-1, &status, WNOHANG);
      if (p <= 0) break;
      if (p == app) {
        app_done = true;
        exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
    }
    if (app_done) break;
  }
  // The app is gone; whatever it left behind goes too.
  ::kill(-app, SIGKILL);
  if (pid1) ::kill(-1, SIGKILL);
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
  return exit_code;
}

}  // namespace ck
