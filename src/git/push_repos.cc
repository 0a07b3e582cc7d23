#include "git/push_repos.h"

#include "core/shell.h"
#include "git/internal.h"
#include "git/pcre2_sweep.h"

#include <fmt/format.h>
#include <git2.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>

namespace ck::git {
namespace fs = std::filesystem;

namespace {


Error libgit2_error(const std::string& doing) {
  const git_error* e = git_error_last();
  return make_error(Errc::io, doing + ": " + (e && e->message ? e->message : "libgit2 failed"));
}

Result<RepoPtr> open_bare(const fs::path& repo) {
  init_library();
  git_repository* raw = nullptr;
  if (git_repository_open_bare(&raw, repo.c_str()) < 0) {
    return libgit2_error("cannot open the repository " + repo.string());
  }
  return RepoPtr(raw);
}

bool all_zeros(std::string_view id) {
  return !id.empty() && id.find_first_not_of('0') == std::string_view::npos;
}

// Writes `text` to `path` through a temporary file and a rename, with `mode`.
Result<void> write_file_atomic(const fs::path& path, const std::string& text, mode_t mode) {
  fs::path tmp = path;
  tmp += fmt::format(".tmp-{}", ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) return fail(Errc::io, "cannot write " + tmp.string());
  }
  if (::chmod(tmp.c_str(), mode) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    std::error_code ec;
    fs::remove(tmp, ec);
    return fail(Errc::io, fmt::format("cannot install {}: {}", path.string(), std::strerror(err)));
  }
  return outcome::success();
}

bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == ENOTSOCK) n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace

std::string post_receive_script(const std::string& hook_exe) {
  return "#!/bin/sh\n"
         "# Written by CloudyKnight (git push to deploy); rewritten on every push, do not edit.\n"
         "exec " +
         shell_quote(hook_exe) + " git-hook post-receive\n";
}

Result<void> ensure_push_repo(const fs::path& repo, const std::string& hook_exe) {
  RegexSweep sweep;  // pcre2_sweep.h
  init_library();
  std::error_code ec;
  RepoPtr r;
  if (!fs::exists(repo / "HEAD", ec)) {
    git_repository_init_options opts = GIT_REPOSITORY_INIT_OPTIONS_INIT;
    opts.flags =
        GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_MKPATH | GIT_REPOSITORY_INIT_NO_REINIT;
    opts.initial_head = "main";
    git_repository* raw = nullptr;
    if (git_repository_init_ext(&raw, repo.c_str(), &opts) < 0) {
      return libgit2_error("cannot create the repository " + repo.string());
    }
    r.reset(raw);
  } else {
    BOOST_OUTCOME_TRY(opened, open_bare(repo));
    r = std::move(opened);
  }
  git_config* raw_cfg = nullptr;
  if (git_repository_config(&raw_cfg, r.get()) < 0)
    return libgit2_error("cannot read " + repo.string() + "/config");
  ConfigPtr cfg(raw_cfg);
  // Reflogs in a bare repository: a forced push never loses the commits it replaced.
  if (git_config_set_bool(cfg.get(), "core.logAllRefUpdates", 1) < 0 ||
      git_config_set_bool(cfg.get(), "http.receivepack", 1) < 0) {
    return libgit2_error("cannot configure " + repo.string());
  }
  fs::create_directories(repo / "hooks", ec);
  if (ec)
    return fail(Errc::io, fmt::format("cannot create {}/hooks: {}", repo.string(), ec.message()));
  const std::string script = post_receive_script(hook_exe);
  fs::path hook = repo / "hooks" / "post-receive";
  std::ifstream in(hook, std::ios::binary);
  std::stringstream current;
  if (in) current << in.rdbuf();
  struct stat st {};
  if (current.str() == script && ::stat(hook.c_str(), &st) == 0 && (st.st_mode & 0777) == 0755) {
    return outcome::success();
  }
  return write_file_atomic(hook, script, 0755);
}

bool RefUpdate::deleted() const { return all_zeros(new_id); }
bool RefUpdate::created() const { return all_zeros(old_id); }
std::string RefUpdate::branch() const {
  constexpr std::string_view kHeads = "refs/heads/";
  return ref.starts_with(kHeads) ? ref.substr(kHeads.size()) : std::string();
}

std::vector<RefUpdate> parse_ref_updates(std::string_view text) {
  std::vector<RefUpdate> out;
  auto hex = [](std::string_view s) {
    return (s.size() == 40 || s.size() == 64) &&
           s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
  };
  while (!text.empty()) {
    auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    auto a = line.find(' ');
    if (a == std::string_view::npos) continue;
    auto b = line.find(' ', a + 1);
    if (b == std::string_view::npos) continue;
    std::string_view old_id = line.substr(0, a), new_id = line.substr(a + 1, b - a - 1),
                     ref = line.substr(b + 1);
    if (!hex(old_id) || !hex(new_id) || ref.empty() || ref.size() > 1024 ||
        ref.find_first_of(" \t\r") != std::string_view::npos) {
      continue;
    }
    out.push_back({std::string(old_id), std::string(new_id), std::string(ref)});
  }
  return out;
}

Result<std::string> head_branch(const fs::path& repo) {
  RegexSweep sweep;  // pcre2_sweep.h
  BOOST_OUTCOME_TRY(r, open_bare(repo));
  git_reference* raw = nullptr;
  if (git_reference_lookup(&raw, r.get(), "HEAD") < 0)
    return libgit2_error("cannot read HEAD of " + repo.string());
  RefPtr head(raw);
  if (git_reference_type(head.get()) != GIT_REFERENCE_SYMBOLIC) return std::string();
  std::string target = git_reference_symbolic_target(head.get());
  constexpr std::string_view kHeads = "refs/heads/";
  return target.starts_with(kHeads) ? target.substr(kHeads.size()) : std::string();
}

bool has_refs(const fs::path& repo) {
  RegexSweep sweep;  // pcre2_sweep.h
  auto r = open_bare(repo);
  if (r.has_error()) return false;
  git_reference_iterator* it = nullptr;
  if (git_reference_iterator_new(&it, r.value().get()) < 0) return false;
  git_reference* ref = nullptr;
  bool any = git_reference_next(&ref, it) == 0;
  if (ref) git_reference_free(ref);
  git_reference_iterator_free(it);
  return any;
}

bool fast_forwards(const fs::path& repo, const std::string& ancestor,
                   const std::string& descendant) {
  if (ancestor == descendant) return !ancestor.empty();
  auto r = open_bare(repo);
  if (r.has_error()) return false;
  git_oid a, d;
  if (git_oid_fromstr(&a, ancestor.c_str()) < 0 || git_oid_fromstr(&d, descendant.c_str()) < 0)
    return false;
  return git_graph_descendant_of(r.value().get(), &d, &a) == 1;
}

bool has_branch(const fs::path& repo, const std::string& branch) {
  RegexSweep sweep;  // pcre2_sweep.h
  auto r = open_bare(repo);
  if (r.has_error()) return false;
  git_reference* raw = nullptr;
  if (git_reference_lookup(&raw, r.value().get(), ("refs/heads/" + branch).c_str()) < 0)
    return false;
  git_reference_free(raw);
  return true;
}

Result<void> set_head_branch(const fs::path& repo, const std::string& branch) {
  RegexSweep sweep;  // pcre2_sweep.h
  BOOST_OUTCOME_TRY(r, open_bare(repo));
  if (git_repository_set_head(r.get(), ("refs/heads/" + branch).c_str()) < 0) {
    return libgit2_error("cannot point HEAD of " + repo.string() + " at " + branch);
  }
  return outcome::success();
}

int run_git_hook(int argc, char** argv) {
  if (argc < 3 || std::strcmp(argv[2], "post-receive") != 0) {
    std::fprintf(stderr,
                 "cloudyknight git-hook: only `git-hook post-receive` exists (git runs it)\n");
    return 2;
  }
  std::string refs;
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::read(0, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    refs.append(buf, static_cast<std::size_t>(n));
    if (refs.size() > kMaxHookRefs) break;
  }
  const char* fd_text = std::getenv(std::string(kHookFdVar).c_str());
  int fd = -1;
  if (fd_text) {
    std::string_view v(fd_text);
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), fd);
    if (ec != std::errc() || p != v.data() + v.size()) fd = -1;
  }
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
    std::string msg =
        "CloudyKnight: this push did not come through CloudyKnight's gateway, so nothing was "
        "deployed; push to http(s)://HOST/monitor/git/NAME.git instead\n";
    (void)write_all(1, msg);
    return 0;
  }
  if (!write_all(fd, refs.substr(0, kMaxHookRefs))) return 0;
  ::shutdown(fd, SHUT_WR);
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (!write_all(1, std::string_view(buf, static_cast<std::size_t>(n)))) break;
  }
  ::close(fd);
  return 0;
}

}  // namespace ck::git
