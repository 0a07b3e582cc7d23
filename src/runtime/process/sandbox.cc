#include "runtime/process/sandbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/openat2.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstring>

#include "core/unique_fd.h"
#include "runtime/process/confine.h"

namespace ck {
namespace fs = std::filesystem;

namespace {

// Bounds on what the daemon walks in a folder the workspace controls.
constexpr int kMaxDepth = 256;

std::optional<std::uint64_t> parse_u64(std::string_view s) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// A file descriptor closed at scope exit.
using Fd = UniqueFd;

int openat2_beneath(int dirfd, const char* path, int flags) {
  open_how how{};
  how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  for (;;) {
    long r = ::syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    if (r >= 0) return static_cast<int>(r);
    if (errno != EAGAIN && errno != EINTR) return -1;
  }
}

Error sys_error(const std::string& what) {
  return make_error(Errc::io, fmt::format("{}: {}", what, std::strerror(errno)));
}

// Calls visit(entry) for each entry of the folder `dirfd` but "." and "..", until one fails;
// `depth` (how deep the walk is) is bounded by kMaxDepth.
template <class Visit>
Result<void> each_entry(int dirfd, int depth, const std::string& where, Visit&& visit) {
  if (depth > kMaxDepth) {
    return fail(Errc::invalid_argument,
                fmt::format("{} is nested more than {} folders deep", where, kMaxDepth));
  }
  int listfd = ::dup(dirfd);
  if (listfd < 0) return sys_error("cannot list " + where);
  DIR* d = ::fdopendir(listfd);
  if (!d) {
    ::close(listfd);
    return sys_error("cannot list " + where);
  }
  Result<void> out = outcome::success();
  while (dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    out = visit(*e);
    if (out.has_error()) break;
  }
  ::closedir(d);
  return out;
}

Result<void> chown_walk(int dirfd, uid_t uid, gid_t gid, int depth, const std::string& where) {
  return each_entry(dirfd, depth, where, [&](const dirent& e) -> Result<void> {
    std::string_view n = e.d_name;
    if (::fchownat(dirfd, e.d_name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0 && errno != ENOENT) {
      return sys_error(fmt::format("cannot chown {}/{}", where, n));
    }
    bool is_dir = e.d_type == DT_DIR;
    if (e.d_type == DT_UNKNOWN) {
      struct stat st {};
      is_dir = ::fstatat(dirfd, e.d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
    }
    if (!is_dir) return outcome::success();
    Fd sub(::openat(dirfd, e.d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (sub.get() < 0) {
      if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) return outcome::success();  // changed under us
      return sys_error(fmt::format("cannot open {}/{}", where, n));
    }
    return chown_walk(sub.get(), uid, gid, depth + 1, where + "/" + std::string(n));
  });
}

Result<void> link_walk(int src, int dst, std::optional<uid_t> owner, int depth,
                       const std::string& where) {
  return each_entry(src, depth, where, [&](const dirent& e) -> Result<void> {
    std::string_view n = e.d_name;
    struct stat st {};
    if (::fstatat(src, e.d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) return outcome::success();  // gone
    if (S_ISREG(st.st_mode)) {
      if (owner && st.st_uid != *owner) return outcome::success();
      // Without AT_SYMLINK_FOLLOW: should the entry have become a symlink, the link is one.
      if (::linkat(src, e.d_name, dst, e.d_name, 0) != 0 && errno != ENOENT) {
        return sys_error(fmt::format("cannot link {}/{}", where, n));
      }
    } else if (S_ISLNK(st.st_mode)) {
      char target[4096];
      ssize_t len = ::readlinkat(src, e.d_name, target, sizeof target - 1);
      if (len < 0) return outcome::success();
      target[len] = '\0';
      if (::symlinkat(target, dst, e.d_name) != 0) {
        return sys_error(fmt::format("cannot recreate the symlink {}/{}", where, n));
      }
    } else if (S_ISDIR(st.st_mode)) {
      Fd from(::openat(src, e.d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (from.get() < 0) return outcome::success();  // changed under us
      if (::mkdirat(dst, e.d_name, 0755) != 0) {
        return sys_error(fmt::format("cannot create {}/{}", where, n));
      }
      Fd to(::openat(dst, e.d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (to.get() < 0) return sys_error(fmt::format("cannot open {}/{}", where, n));
      return link_walk(from.get(), to.get(), owner, depth + 1, where + "/" + std::string(n));
    }
    return outcome::success();
  });
}

// Removes `name` below dirfd, a folder's content by descriptor (never through a symlink).
Result<void> remove_at(int dirfd, const char* name, int depth) {
  if (::unlinkat(dirfd, name, 0) == 0 || errno == ENOENT) return outcome::success();
  if (errno != EISDIR && errno != EPERM) return sys_error(fmt::format("cannot remove {}", name));
  Fd sub(::openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (sub.get() < 0) return sys_error(fmt::format("cannot open {}", name));
  auto out = each_entry(sub.get(), depth, name, [&](const dirent& e) {
    return remove_at(sub.get(), e.d_name, depth + 1);
  });
  if (out.has_error()) return out;
  if (::unlinkat(dirfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return sys_error(fmt::format("cannot remove {}", name));
  }
  return outcome::success();
}

// Returning ends the clone (glibc exits with the value); no noreturn call, so ASan has no
// foreign stack to warn about on stderr.
int probe_child(void*) { return 0; }

}  // namespace

Result<UidRange> parse_uid_range(const std::string& text) {
  auto dash = text.find('-');
  auto bad = [&] {
    return fail(Errc::invalid_argument,
                fmt::format("'{}' is not a uid range (write it like 200000-265535; both ends "
                            "between 1000 and 2147483646)",
                            text));
  };
  if (dash == std::string::npos) return bad();
  auto lo = parse_u64(std::string_view(text).substr(0, dash));
  auto hi = parse_u64(std::string_view(text).substr(dash + 1));
  constexpr std::uint64_t kMin = 1000, kMax = 2147483646;
  if (!lo || !hi || *lo < kMin || *hi > kMax || *lo > *hi) return bad();
  return UidRange{static_cast<uid_t>(*lo), static_cast<uid_t>(*hi)};
}

std::optional<uid_t> pick_uid(const UidRange& range, std::optional<uid_t> current,
                              const std::set<uid_t>& taken) {
  if (current && *current >= range.first && *current <= range.last && !taken.contains(*current)) {
    return current;
  }
  uid_t next = range.first;
  for (auto it = taken.lower_bound(range.first); it != taken.end() && *it <= range.last; ++it) {
    if (*it != next) break;
    if (next == range.last) return std::nullopt;
    ++next;
  }
  if (next > range.last) return std::nullopt;
  return next;
}

std::vector<std::string> SandboxPlan::layers() const {
  std::vector<std::string> out;
  if (own_uid) out.push_back("uid");
  if (namespaces) {
    for (const char* l : {"pid-ns", "mount-ns", "ipc-ns", "uts-ns", "pivot-root", "private-tmp"}) {
      out.push_back(l);
    }
  }
  if (no_new_privs) out.push_back("no-new-privs");
  if (drop_caps) out.push_back("caps-dropped");
  if (seccomp) out.push_back("seccomp");
  if (rlimits) out.push_back("rlimits");
  if (clean_env) out.push_back("clean-env");
  return out;
}

std::string SandboxPlan::describe(const UidRange& range) const {
  std::vector<std::string> parts;
  if (own_uid) parts.push_back(fmt::format("own uid from {}-{}", range.first, range.last));
  if (namespaces) {
    parts.push_back("own pid, mount, ipc and uts namespaces");
    parts.push_back("pivot_root into read-only system folders with a private /tmp");
  }
  if (no_new_privs) parts.push_back("no_new_privs");
  if (drop_caps) parts.push_back("every capability dropped");
  if (seccomp) parts.push_back("seccomp filter");
  if (rlimits) parts.push_back("rlimits");
  if (clean_env) parts.push_back("environment built from nothing");
  std::string out = "sandbox: " + fmt::format("{}", fmt::join(parts, ", "));
  if (!missing.empty()) out += fmt::format("; WEAK, without {}", fmt::join(missing, ", "));
  return out;
}

Result<SandboxPlan> decide_sandbox(const SandboxProbe& probe, bool allow_weak) {
  SandboxPlan plan;
  if (probe.root) {
    plan.own_uid = true;
    plan.drop_caps = true;
  } else {
    plan.missing.push_back("an own uid and dropped capabilities (the daemon is not root)");
  }
  if (probe.root && probe.namespaces) {
    plan.namespaces = true;
  } else {
    plan.missing.push_back(
        fmt::format("pid/mount/ipc/uts namespaces ({})",
                    probe.root ? probe.why_no_namespaces : std::string("the daemon is not root")));
  }
  if (probe.seccomp) {
    plan.seccomp = true;
  } else {
    plan.missing.push_back(fmt::format("a seccomp filter ({})", probe.why_no_seccomp));
  }
  if (!plan.missing.empty() && !allow_weak) {
    return fail(Errc::forbidden,
                fmt::format("the process runtime cannot sandbox workspaces here: missing {}. Run "
                            "the daemon as root on a kernel with namespaces and seccomp, use the "
                            "docker runtime, or accept a weaker sandbox with "
                            "runtime.allow_weak_sandbox: true (CK_RUNTIME_ALLOW_WEAK_SANDBOX=1)",
                            fmt::join(plan.missing, "; ")));
  }
  return plan;
}

SandboxProbe probe_sandbox() {
  SandboxProbe p;
  p.root = ::geteuid() == 0;
  if (p.root) {
    constexpr size_t kStack = 64 * 1024;
    void* stack = ::mmap(nullptr, kStack, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
      p.why_no_namespaces = fmt::format("cannot allocate a stack: {}", std::strerror(errno));
    } else {
      pid_t pid =
          ::clone(probe_child, static_cast<char*>(stack) + kStack,
                  SIGCHLD | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS, nullptr);
      int e = errno;
      ::munmap(stack, kStack);
      if (pid > 0) {
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        p.namespaces = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!p.namespaces) p.why_no_namespaces = "a namespaced test process failed";
      } else {
        p.why_no_namespaces = fmt::format("the kernel refused clone: {}", std::strerror(e));
      }
    }
  }
  std::string why;
  p.seccomp = seccomp_available(why);
  p.why_no_seccomp = why;
  return p;
}

std::string sandbox_passwd(uid_t uid, gid_t gid, const std::string& home) {
  return fmt::format(
      "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
      "app:x:{}:{}:workspace app:{}:/bin/sh\n"
      "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
      uid, gid, home);
}

std::string sandbox_group(gid_t gid) {
  return fmt::format("root:x:0:\napp:x:{}:\nnogroup:x:65534:\n", gid);
}

std::string sandbox_hostname(const std::string& workspace) {
  std::string h = "ck-" + workspace;
  for (char& c : h) {
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) c = '-';
  }
  if (h.size() > 63) h.resize(63);
  return h;
}

Result<uid_t> assign_workspace_uid(const fs::path& data_dir, const std::string& name,
                                   const UidRange& range) {
  auto read_uid = [](const fs::path& p) -> std::optional<uid_t> {
    Fd fd(::open(p.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (fd.get() < 0) return std::nullopt;
    char buf[32];
    ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
    if (n <= 0) return std::nullopt;
    std::string_view s(buf, static_cast<size_t>(n));
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
    auto v = parse_u64(s);
    if (!v || *v > 2147483646) return std::nullopt;
    return static_cast<uid_t>(*v);
  };
  fs::path run = data_dir / "run";
  std::set<uid_t> taken;
  std::error_code ec;
  for (auto it = fs::directory_iterator(run, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    if (it->path().filename() == name) continue;
    if (auto u = read_uid(it->path() / "uid")) taken.insert(*u);
  }
  fs::path own = run / name / "uid";
  auto current = read_uid(own);
  auto uid = pick_uid(range, current, taken);
  if (!uid) {
    return fail(Errc::unavailable,
                fmt::format("no free uid left in runtime.uid_range {}-{}: widen the range",
                            range.first, range.last));
  }
  if (uid != current) {
    fs::create_directories(run / name, ec);
    BOOST_OUTCOME_TRY(write_file_nofollow(own, std::to_string(*uid)));
  }
  return *uid;
}

Result<void> chown_tree(const fs::path& dir, uid_t uid, gid_t gid) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0) return sys_error("cannot open " + dir.string());
  if (::fchown(fd.get(), uid, gid) != 0) return sys_error("cannot chown " + dir.string());
  return chown_walk(fd.get(), uid, gid, 0, dir.string());
}

Result<void> link_tree(const fs::path& from, const fs::path& to, std::optional<uid_t> owner) {
  Fd src(::open(from.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (src.get() < 0) return sys_error("cannot open " + from.string());
  if (::mkdir(to.c_str(), 0755) != 0) return sys_error("cannot create " + to.string());
  Fd dst(::open(to.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (dst.get() < 0) return sys_error("cannot open " + to.string());
  return link_walk(src.get(), dst.get(), owner, 0, from.string());
}

Result<void> write_file_nofollow(const fs::path& path, const std::string& text) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    if (errno == EISDIR || errno == EPERM) {
      Fd parent(::open(path.parent_path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
      if (parent.get() < 0) return sys_error("cannot open " + path.parent_path().string());
      BOOST_OUTCOME_TRY(remove_at(parent.get(), path.filename().c_str(), 0));
    } else {
      return sys_error("cannot replace " + path.string());
    }
  }
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (fd.get() < 0) return sys_error("cannot create " + path.string());
  std::string line = text + "\n";
  if (::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    return sys_error("cannot write " + path.string());
  }
  return outcome::success();
}

Result<void> update_file_beneath(const fs::path& src_root, const fs::path& dst_root,
                                 const std::string& rel, std::optional<uid_t> uid,
                                 std::optional<gid_t> gid) {
  fs::path r(rel);
  bool ok = !rel.empty() && r.is_relative() && rel.size() < 4096;
  for (const auto& part : r) {
    if (part == ".." || part == "." || part.empty()) ok = false;
  }
  if (!ok || !r.has_filename()) {
    return fail(Errc::invalid_argument,
                fmt::format("'{}' is not a path inside the workspace", rel));
  }
  Fd src_root_fd(::open(src_root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  Fd dst_root_fd(::open(dst_root.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (src_root_fd.get() < 0) return sys_error("cannot open " + src_root.string());
  if (dst_root_fd.get() < 0) return sys_error("cannot open " + dst_root.string());

  // The source: no symlink on the way; a symlink at the end is opened as itself.
  Fd src(openat2_beneath(src_root_fd.get(), rel.c_str(), O_PATH | O_NOFOLLOW));
  bool missing = false;
  struct stat st {};
  if (src.get() < 0) {
    if (errno == ENOENT) {
      missing = true;
    } else if (errno == ELOOP || errno == EXDEV) {
      return fail(Errc::invalid_argument,
                  fmt::format("not copying {}: a folder on its way is a symlink", rel));
    } else {
      return sys_error("cannot open " + rel + " in the source");
    }
  } else if (::fstat(src.get(), &st) != 0) {
    return sys_error("cannot stat " + rel);
  }
  if (!missing && S_ISDIR(st.st_mode)) return outcome::success();  // its files come on their own
  if (!missing && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {
    return fail(Errc::invalid_argument, fmt::format("not copying {}: not a regular file", rel));
  }

  // The destination's folder, created as needed, never through a symlink.
  Fd parent(::dup(dst_root_fd.get()));
  std::vector<std::string> parts;
  for (const auto& part : r.parent_path()) parts.push_back(part.string());
  for (const auto& part : parts) {
    if (missing) {
      Fd next(::openat(parent.get(), part.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (next.get() < 0) return outcome::success();  // nothing there to delete
      parent = std::move(next);
      continue;
    }
    if (::mkdirat(parent.get(), part.c_str(), 0755) == 0) {
      if (uid && gid) (void)::fchownat(parent.get(), part.c_str(), *uid, *gid, AT_SYMLINK_NOFOLLOW);
    } else if (errno != EEXIST) {
      return sys_error("cannot create the folder " + part + " for " + rel);
    }
    Fd next(::openat(parent.get(), part.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (next.get() < 0) {
      return fail(Errc::invalid_argument,
                  fmt::format("not updating {}: {} in the app's copy is not a folder", rel, part));
    }
    parent = std::move(next);
  }
  std::string base = r.filename().string();
  BOOST_OUTCOME_TRY(remove_at(parent.get(), base.c_str(), 0));
  if (missing) return outcome::success();

  if (S_ISLNK(st.st_mode)) {
    std::string target(4096, '\0');
    ssize_t n = ::readlinkat(src.get(), "", target.data(), target.size());
    if (n < 0 || static_cast<size_t>(n) >= target.size())
      return sys_error("cannot read the link " + rel);
    target.resize(static_cast<size_t>(n));
    if (::symlinkat(target.c_str(), parent.get(), base.c_str()) != 0)
      return sys_error("cannot link " + rel);
    if (uid && gid) (void)::fchownat(parent.get(), base.c_str(), *uid, *gid, AT_SYMLINK_NOFOLLOW);
    return outcome::success();
  }
  Fd in(openat2_beneath(src_root_fd.get(), rel.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK));
  struct stat in_st {};
  if (in.get() < 0 || ::fstat(in.get(), &in_st) != 0 || !S_ISREG(in_st.st_mode)) {
    return fail(Errc::io, fmt::format("{} changed while it was copied; try again", rel));
  }
  Fd out(::openat(parent.get(), base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  in_st.st_mode & 0777));
  if (out.get() < 0) return sys_error("cannot create " + rel + " in the app's copy");
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(in.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("cannot read " + rel);
    if (n == 0) break;
    for (ssize_t done = 0; done < n;) {
      ssize_t w = ::write(out.get(), buf + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return sys_error("cannot write " + rel);
      done += w;
    }
  }
  if (uid && gid) (void)::fchown(out.get(), *uid, *gid);
  (void)::fchmod(out.get(), in_st.st_mode & 0777);
  return outcome::success();
}

}  // namespace ck
