#include "runtime/process/child.h"

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/redirect_error.hpp>
#include <csignal>
#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace ck {
namespace {

// Everything the cloned child touches is prepared before clone(): after it, only
// async-signal-safe calls are allowed (the daemon is multi-threaded).
struct ExecArgs {
  const char* exe;
  char* const* argv;
  char* const* envp;
  const char* cwd;
  int log_fd;
  int null_fd;
};

int child_main(void* p) {
  auto* a = static_cast<ExecArgs*>(p);
  ::dup2(a->null_fd, 0);
  ::dup2(a->log_fd, 1);
  ::dup2(a->log_fd, 2);
  ::syscall(SYS_close_range, 3u, ~0u, 0u);
  if (::chdir(a->cwd) != 0) {
    static const char msg[] = "cloudyknight: cannot enter the app folder\n";
    (void)!::write(2, msg, sizeof msg - 1);
    ::_exit(126);
  }
  ::setpgid(0, 0);
  ::execve(a->exe, a->argv, a->envp);
  static const char msg[] = "cloudyknight: cannot execute the workspace init\n";
  (void)!::write(2, msg, sizeof msg - 1);
  ::_exit(127);
}

std::vector<char*> c_strings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

Child::Child(net::any_io_executor ex, pid_t pid, int pidfd) : pid_(pid), pidfd_(pidfd), done_(ex) {
  done_.expires_at(net::steady_timer::time_point::max());
}

Child::~Child() {
  if (!exited_) {
    ::kill(pid_, SIGKILL);
  }
}

Result<std::shared_ptr<Child>> Child::spawn(net::any_io_executor ex, const SpawnOptions& opts) {
  std::vector<std::string> args = {"cloudyknight-init", "__init", "--", "/bin/sh", "-c",
                                   opts.shell_command};
  std::vector<std::string> env = opts.env;
  if (opts.join_namespaces_of > 0) env.push_back(fmt::format("CK_INIT_JOIN={}", opts.join_namespaces_of));
  if (!opts.cgroup_dirs.empty()) {
    std::string joined;
    for (const auto& d : opts.cgroup_dirs) joined += (joined.empty() ? "" : ":") + d;
    env.push_back("CK_INIT_CGROUPS=" + joined);
  }
  auto argv = c_strings(args);
  auto envp = c_strings(env);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) return fail(Errc::io, fmt::format("cannot open /dev/null: {}", std::strerror(errno)));
  ExecArgs a{opts.self_exe.c_str(), argv.data(), envp.data(), opts.cwd.c_str(), opts.log_fd, null_fd};

  constexpr size_t kStack = 256 * 1024;
  void* stack = ::mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) {
    ::close(null_fd);
    return fail(Errc::io, fmt::format("cannot allocate a stack for the child: {}", std::strerror(errno)));
  }
  int flags = SIGCHLD;
  if (opts.namespaces) flags |= CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
  // Without CLONE_VM the child has its own copy of the stack, so it can be unmapped at once.
  pid_t pid = ::clone(child_main, static_cast<char*>(stack) + kStack, flags, &a);
  int clone_errno = errno;
  ::munmap(stack, kStack);
  ::close(null_fd);
  if (pid < 0) {
    return fail(clone_errno == EPERM ? Errc::forbidden : Errc::io,
                fmt::format("cannot start a process: clone failed: {}", std::strerror(clone_errno)));
  }
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    int e = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return fail(Errc::io, fmt::format("pidfd_open failed: {} (Linux 5.3 or newer is needed)", std::strerror(e)));
  }
  auto child = std::shared_ptr<Child>(new Child(ex, pid, pidfd));
  ck::spawn(ex, reap(child), fmt::format("reap pid {}", pid));
  return child;
}

net::awaitable<void> Child::reap(std::shared_ptr<Child> self) {
  net::posix::stream_descriptor fd(co_await net::this_coro::executor, self->pidfd_);
  boost::system::error_code ec;
  co_await fd.async_wait(net::posix::stream_descriptor::wait_read,
                         net::redirect_error(net::use_awaitable, ec));
  int status = 0;
  while (::waitpid(self->pid_, &status, 0) < 0 && errno == EINTR) {
  }
  self->status_ = status;
  self->exited_ = true;
  self->done_.cancel();
}

void Child::signal(int sig) const {
  if (!exited_) ::kill(pid_, sig);
}

net::awaitable<void> Child::wait() {
  while (!exited_) {
    boost::system::error_code ec;
    co_await done_.async_wait(net::redirect_error(net::use_awaitable, ec));
  }
}

}  // namespace ck
