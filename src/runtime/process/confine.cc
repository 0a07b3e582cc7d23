#include "runtime/process/confine.h"

#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "runtime/process/sandbox.h"

namespace ck {
namespace {

// Files of the host's /etc the sandbox gets a copy of (symlinks stay symlinks), and folders
// it gets read-only. Everything else (shadow, sudoers, the daemon's config...) is absent.
constexpr const char* kEtcFiles[] = {
    "resolv.conf",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "ld.so.cache",
    "ld.so.conf",
    "localtime",
    "timezone",
    "os-release",
    "debian_version",
    "mime.types",
    "protocols",
    "services",
    "networks",
    "ethertypes",
    "npmrc",
    "pip.conf",
    "mtab",
    "ca-certificates.conf",
    "inputrc",
    "magic",
    "magic.mime",
};
constexpr const char* kEtcDirs[] = {"ssl",     "ca-certificates", "alternatives", "ld.so.conf.d",
                                    "python3", "fonts",           "perl"};
constexpr const char* kSystemDirs[] = {"usr", "bin", "sbin", "lib", "lib64", "lib32", "libx32"};
constexpr const char* kDevNodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
constexpr std::size_t kMaxEtcFile = 4u << 20;

bool fail_with(std::string& err, const std::string& step) {
  err = step + ": " + std::strerror(errno);
  return false;
}

bool flag(const char* v) { return v && std::strcmp(v, "1") == 0; }

std::string take_env(const char* name) {
  const char* v = std::getenv(name);
  std::string out = v ? v : "";
  ::unsetenv(name);
  return out;
}

bool read_file(const std::string& path, std::string& out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  out.clear();
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > kMaxEtcFile) break;
  }
  ::close(fd);
  return true;
}

bool write_file(const std::string& path, const std::string& text, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) return false;
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  return ok;
}

// Copies a host /etc entry into the new root: a symlink as the same symlink, a file as a copy.
void copy_etc_entry(const std::string& root, const std::string& name) {
  std::string host = "/etc/" + name;
  struct stat st {};
  if (::lstat(host.c_str(), &st) != 0) return;
  std::string dst = root + "/etc/" + name;
  if (S_ISLNK(st.st_mode)) {
    char target[4096];
    ssize_t n = ::readlink(host.c_str(), target, sizeof target - 1);
    if (n <= 0) return;
    target[n] = '\0';
    (void)::symlink(target, dst.c_str());
  } else if (S_ISREG(st.st_mode)) {
    std::string text;
    if (read_file(host, text)) (void)write_file(dst, text, 0644);
  }
}

bool bind_mount(const std::string& src, const std::string& dst, unsigned long extra,
                std::string& err) {
  if (::mount(src.c_str(), dst.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    return fail_with(err, "bind-mount " + src);
  }
  if (::mount(nullptr, dst.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_NOSUID | extra, nullptr) !=
      0) {
    return fail_with(err, "remount " + src + (extra & MS_RDONLY ? " read-only" : ""));
  }
  return true;
}

bool bind_ro_dir(const std::string& src, const std::string& dst, std::string& err) {
  if (::mkdir(dst.c_str(), 0755) != 0 && errno != EEXIST) return fail_with(err, "mkdir " + dst);
  return bind_mount(src, dst, MS_RDONLY | MS_NODEV, err);
}

bool build_dev(const std::string& root, std::string& err) {
  std::string dev = root + "/dev";
  if (::mkdir(dev.c_str(), 0755) != 0) return fail_with(err, "mkdir /dev");
  if (::mount("tmpfs", dev.c_str(), "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") != 0) {
    return fail_with(err, "mount a tmpfs on /dev");
  }
  for (const char* node : kDevNodes) {
    std::string host = std::string("/dev/") + node, dst = dev + "/" + node;
    struct stat st {};
    if (::stat(host.c_str(), &st) != 0) continue;
    int fd = ::open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) return fail_with(err, "create " + dst);
    ::close(fd);
    if (::mount(host.c_str(), dst.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      return fail_with(err, "bind-mount " + host);
    }
  }
  std::string pts = dev + "/pts";
  if (::mkdir(pts.c_str(), 0755) == 0 &&
      ::mount("devpts", pts.c_str(), "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620") == 0) {
    (void)::symlink("pts/ptmx", (dev + "/ptmx").c_str());
  }
  std::string shm = dev + "/shm";
  if (::mkdir(shm.c_str(), 01777) != 0 ||
      ::mount("tmpfs", shm.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "mode=1777,size=64m") != 0) {
    return fail_with(err, "mount /dev/shm");
  }
  (void)::symlink("/proc/self/fd", (dev + "/fd").c_str());
  (void)::symlink("/proc/self/fd/0", (dev + "/stdin").c_str());
  (void)::symlink("/proc/self/fd/1", (dev + "/stdout").c_str());
  (void)::symlink("/proc/self/fd/2", (dev + "/stderr").c_str());
  return true;
}

bool build_etc(const ConfineSpec& spec, const std::string& root, std::string& err) {
  std::string etc = root + "/etc";
  if (::mkdir(etc.c_str(), 0755) != 0) return fail_with(err, "mkdir /etc");
  for (const char* f : kEtcFiles) copy_etc_entry(root, f);
  for (const char* d : kEtcDirs) {
    struct stat st {};
    std::string host = std::string("/etc/") + d;
    if (::lstat(host.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    if (!bind_ro_dir(host, etc + "/" + d, err)) return false;
  }
  // Python's per-version folder (/etc/python3.11: sitecustomize.py).
  glob_t g{};
  if (::glob("/etc/python3.*", 0, nullptr, &g) == 0) {
    for (std::size_t i = 0; i < g.gl_pathc; ++i) {
      std::string host = g.gl_pathv[i];
      struct stat st {};
      if (::lstat(host.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
      if (!bind_ro_dir(host, etc + host.substr(4), err)) {
        ::globfree(&g);
        return false;
      }
    }
  }
  ::globfree(&g);
  std::string hosts;
  if (!read_file("/etc/hosts", hosts)) hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost\n";
  if (!hosts.empty() && hosts.back() != '\n') hosts += '\n';
  hosts += "127.0.1.1\t" + spec.hostname + "\n";
  bool ok = write_file(etc + "/hosts", hosts, 0644) &&
            write_file(etc + "/hostname", spec.hostname + "\n", 0644) &&
            write_file(etc + "/passwd", sandbox_passwd(spec.uid, spec.gid, kSandboxHome), 0644) &&
            write_file(etc + "/group", sandbox_group(spec.gid), 0644);
  if (!ok) return fail_with(err, "write the sandbox's /etc");
  return true;
}

bool drop_capabilities(std::string& err) {
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return fail_with(err, "clear the ambient capabilities");
  }
  for (int cap = 0; cap <= 63; ++cap) {
    if (::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0) break;  // past the kernel's last
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
      return fail_with(err, "drop a bounding capability");
  }
  return true;
}

bool clear_capability_sets(std::string& err) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capset, &hdr, data) != 0) return fail_with(err, "clear the capability sets");
  __user_cap_data_struct check[2] = {};
  if (::syscall(SYS_capget, &hdr, check) != 0) return fail_with(err, "read the capability sets");
  for (const auto& c : check) {
    if (c.effective || c.permitted || c.inheritable) {
      err = "capabilities remained after dropping them";
      return false;
    }
  }
  return true;
}

bool set_rlimits(const ConfineSpec& spec, std::string& err) {
  auto cap = [&](int resource, rlim_t value) {
    rlimit cur{};
    if (::getrlimit(resource, &cur) != 0) return false;
    rlim_t v = cur.rlim_max == RLIM_INFINITY ? value : std::min(cur.rlim_max, value);
    rlimit next{v, v};
    return ::setrlimit(resource, &next) == 0;
  };
  bool ok = cap(RLIMIT_CORE, 0) && cap(RLIMIT_NOFILE, 65536) && cap(RLIMIT_RTPRIO, 0) &&
            cap(RLIMIT_MSGQUEUE, 1u << 20) && cap(RLIMIT_MEMLOCK, 8u << 20);
  // Counted per real uid on the whole host: only meaningful with the workspace's own uid.
  if (ok && spec.own_uid) ok = cap(RLIMIT_NPROC, 4096);
  if (!ok) return fail_with(err, "set the rlimits");
  return true;
}

bool load_seccomp(std::string& err) {
  scmp_filter_ctx ctx = ::seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx) {
    err = "seccomp_init failed";
    return false;
  }
  auto refuse = [&](int nr, uint32_t action) {
    return ::seccomp_rule_add(ctx, action, nr, 0) == 0;
  };
  bool ok = true;
  for (const auto& name : seccomp_refused_syscalls()) {
    int nr = ::seccomp_syscall_resolve_name(name.c_str());
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    if (name == "clone3") {
      // No flags to inspect in clone3's struct: ENOSYS makes libc fall back to clone().
      ok = ok && refuse(nr, SCMP_ACT_ERRNO(ENOSYS));
    } else {
      ok = ok && refuse(nr, SCMP_ACT_ERRNO(EPERM));
    }
  }
  // clone() that asks for a new namespace.
  for (unsigned long f : {CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID,
                          CLONE_NEWNET, CLONE_NEWCGROUP}) {
    ok = ok && ::seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                                  SCMP_A0(SCMP_CMP_MASKED_EQ, f, f)) == 0;
  }
  if (!ok) {
    ::seccomp_release(ctx);
    err = "cannot build the seccomp filter";
    return false;
  }
  int rc = ::seccomp_load(ctx);
  ::seccomp_release(ctx);
  if (rc != 0) {
    errno = -rc;
    return fail_with(err, "load the seccomp filter");
  }
  return true;
}

}  // namespace

std::vector<std::string> confine_env(const ConfineSpec& s) {
  auto b = [](bool v) { return std::string(v ? "1" : "0"); };
  return {"CK_INIT_OWN_UID=" + b(s.own_uid),
          "CK_INIT_NAMESPACES=" + b(s.namespaces),
          "CK_INIT_DROP_CAPS=" + b(s.drop_caps),
          "CK_INIT_NO_NEW_PRIVS=" + b(s.no_new_privs),
          "CK_INIT_SECCOMP=" + b(s.seccomp),
          "CK_INIT_RLIMITS=" + b(s.rlimits),
          "CK_INIT_UID=" + std::to_string(s.uid),
          "CK_INIT_GID=" + std::to_string(s.gid),
          "CK_INIT_APP=" + s.app_dir,
          "CK_INIT_HOME=" + s.home_dir,
          "CK_INIT_ROOT=" + s.root_dir,
          "CK_INIT_HOSTNAME=" + s.hostname};
}

ConfineSpec confine_from_env() {
  ConfineSpec s;
  s.own_uid = flag(std::getenv("CK_INIT_OWN_UID"));
  s.namespaces = flag(std::getenv("CK_INIT_NAMESPACES"));
  s.drop_caps = flag(std::getenv("CK_INIT_DROP_CAPS"));
  s.no_new_privs = flag(std::getenv("CK_INIT_NO_NEW_PRIVS"));
  s.seccomp = flag(std::getenv("CK_INIT_SECCOMP"));
  s.rlimits = flag(std::getenv("CK_INIT_RLIMITS"));
  s.uid = static_cast<uid_t>(std::strtoul(take_env("CK_INIT_UID").c_str(), nullptr, 10));
  s.gid = static_cast<gid_t>(std::strtoul(take_env("CK_INIT_GID").c_str(), nullptr, 10));
  s.app_dir = take_env("CK_INIT_APP");
  s.home_dir = take_env("CK_INIT_HOME");
  s.root_dir = take_env("CK_INIT_ROOT");
  s.hostname = take_env("CK_INIT_HOSTNAME");
  for (const char* n : {"CK_INIT_OWN_UID", "CK_INIT_NAMESPACES", "CK_INIT_DROP_CAPS",
                        "CK_INIT_NO_NEW_PRIVS", "CK_INIT_SECCOMP", "CK_INIT_RLIMITS"}) {
    ::unsetenv(n);
  }
  return s;
}

const std::vector<std::string>& seccomp_refused_syscalls() {
  static const std::vector<std::string> names = {
      "mount",
      "umount2",
      "pivot_root",
      "chroot",
      "move_mount",
      "open_tree",
      "fsopen",
      "fsmount",
      "fsconfig",
      "fspick",
      "mount_setattr",
      "ptrace",
      "process_vm_readv",
      "process_vm_writev",
      "kcmp",
      "kexec_load",
      "kexec_file_load",
      "init_module",
      "finit_module",
      "delete_module",
      "add_key",
      "request_key",
      "keyctl",
      "bpf",
      "perf_event_open",
      "swapon",
      "swapoff",
      "reboot",
      "acct",
      "open_by_handle_at",
      "name_to_handle_at",
      "setns",
      "unshare",
      "userfaultfd",
      "quotactl",
      "syslog",
      "lookup_dcookie",
      "iopl",
      "ioperm",
      "vhangup",
      "io_uring_setup",
      "io_uring_enter",
      "io_uring_register",
      "clone3",
  };
  return names;
}

bool seccomp_available(std::string& why) {
  if (::prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0) {
    why = "this kernel has no seccomp support (CONFIG_SECCOMP)";
    return false;
  }
  std::uint32_t action = SECCOMP_RET_ERRNO;
  if (::syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action) != 0) {
    why = std::string("seccomp filters are not available: ") + std::strerror(errno);
    return false;
  }
  if (::seccomp_api_get() < 1) {
    why = "libseccomp finds no usable seccomp API";
    return false;
  }
  return true;
}

bool enter_sandbox_root(const ConfineSpec& spec, std::string& err) {
  const std::string& root = spec.root_dir;
  if (root.empty() || spec.app_dir.empty() || spec.home_dir.empty()) {
    err = "the sandbox's folders were not given";
    return false;
  }
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return fail_with(err, "make the mount namespace private");
  }
  if (::mount("tmpfs", root.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=8m") != 0) {
    return fail_with(err, "mount the new root's tmpfs");
  }
  for (const char* d : kSystemDirs) {
    std::string host = std::string("/") + d, dst = root + "/" + d;
    struct stat st {};
    if (::lstat(host.c_str(), &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {  // merged /usr: /bin -> usr/bin
      char target[4096];
      ssize_t n = ::readlink(host.c_str(), target, sizeof target - 1);
      if (n <= 0) continue;
      target[n] = '\0';
      if (::symlink(target, dst.c_str()) != 0) return fail_with(err, "link " + dst);
    } else if (S_ISDIR(st.st_mode)) {
      if (!bind_ro_dir(host, dst, err)) return false;
    }
  }
  if (!build_etc(spec, root, err) || !build_dev(root, err)) return false;
  std::string proc = root + "/proc";
  if (::mkdir(proc.c_str(), 0555) != 0 ||
      ::mount("proc", proc.c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    return fail_with(err, "mount /proc for the new pid namespace");
  }
  std::string tmp = root + "/tmp";
  if (::mkdir(tmp.c_str(), 01777) != 0 ||
      ::mount("tmpfs", tmp.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=512m") != 0) {
    return fail_with(err, "mount the private /tmp");
  }
  std::string app = root + kSandboxApp;
  if (::mkdir(app.c_str(), 0755) != 0) return fail_with(err, "mkdir /app");
  if (!bind_mount(spec.app_dir, app, MS_NODEV, err)) return false;
  std::string home = root + "/home", home_app = root + kSandboxHome;
  if (::mkdir(home.c_str(), 0755) != 0 || ::mkdir(home_app.c_str(), 0700) != 0) {
    return fail_with(err, "mkdir /home/app");
  }
  if (!bind_mount(spec.home_dir, home_app, MS_NODEV, err)) return false;
  std::string var = root + "/var";
  std::string run = root + "/run";
  if (::mkdir(var.c_str(), 0755) != 0 || ::symlink("../tmp", (var + "/tmp").c_str()) != 0 ||
      ::mkdir(run.c_str(), 0755) != 0) {
    return fail_with(err, "create /var/tmp and /run");
  }
  if (::mount("tmpfs", root.c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
              "mode=0755,size=8m") != 0) {
    return fail_with(err, "make the new root read-only");
  }
  if (!spec.hostname.empty() && ::sethostname(spec.hostname.data(), spec.hostname.size()) != 0) {
    return fail_with(err, "set the hostname");
  }
  if (::chdir(root.c_str()) != 0) return fail_with(err, "enter the new root");
  if (::syscall(SYS_pivot_root, ".", ".") != 0) return fail_with(err, "pivot_root");
  if (::umount2(".", MNT_DETACH) != 0) return fail_with(err, "detach the old root");
  if (::chdir(kSandboxApp) != 0) return fail_with(err, "enter /app");
  return true;
}

bool confine_process(const ConfineSpec& spec, std::string& err) {
  if (spec.drop_caps && !drop_capabilities(err)) return false;
  if (spec.own_uid) {
    if (::setgroups(0, nullptr) != 0) return fail_with(err, "clear the supplementary groups");
    if (::setresgid(spec.gid, spec.gid, spec.gid) != 0)
      return fail_with(err, "switch to the workspace gid");
    if (::setresuid(spec.uid, spec.uid, spec.uid) != 0)
      return fail_with(err, "switch to the workspace uid");
    uid_t r = 0, e = 0, s = 0;
    if (::getresuid(&r, &e, &s) != 0 || r != spec.uid || e != spec.uid || s != spec.uid ||
        spec.uid == 0) {
      err = "the uid switch did not take";
      return false;
    }
  }
  if (spec.drop_caps && !clear_capability_sets(err)) return false;
  if ((spec.no_new_privs || spec.seccomp) && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return fail_with(err, "set no_new_privs");
  }
  if (spec.rlimits && !set_rlimits(spec, err)) return false;
  if (spec.seccomp && !load_seccomp(err)) return false;
  return true;
}

}  // namespace ck
