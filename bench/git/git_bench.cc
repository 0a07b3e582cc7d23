// Pull benchmark for issue 16: ck::git::pull() (libgit2) beside the git CLI on the same
// repository, per transport, in interleaved rounds. bench/git/run.sh makes the repository,
// serves it and drives this; run by hand:
//
//   build/bench/git_bench --work DIR --extend "python3 bench/git/make_repo.py extend BARE"
//                         --transport file=file:///…/repo.git [--transport git=git://…] …
//                         [--rounds 5] [--op-timeout 120] [--branch main]
//   build/bench/git_bench --once DIR URL      one pull() of branch main, in-process (profiling)
//
// Cases, per transport:
//   clone  ours: pull() into an empty folder        git: git clone -q URL DIR
//   pull   the remote gets 20 commits touching 100 files (the --extend command) each round;
//          ours: pull() on the working copy ours cloned; git: git pull -q --ff-only on git's
//   noop   nothing new on the remote: the same two calls again
// Each operation is one child process (fork) timed from fork to exit, ours included, so
// libgit2's process-wide caches never carry over and both sides pay for a process. Which side
// goes first alternates by round, and sync(2) runs before each. After every operation the
// working copy's HEAD must be the remote's (and, for the first clone of a transport and after
// the last pull, both copies must be clean and hold the same files); anything else is an
// error (exit 1). Every operation is killed at --op-timeout.
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "git/repo.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Options {
  fs::path work;
  std::string extend;
  std::vector<std::pair<std::string, std::string>> transports;  // name, url
  std::string branch = "main";
  int rounds = 5;
  int op_timeout_s = 120;
};

// Runs `child` in a forked process (its return value is the exit code), waits for it at most
// `timeout_s` and returns its wall time in ms, or a negative value when it failed or timed out.
double timed_child(const std::function<int()>& child, int timeout_s, const std::string& what) {
  ::sync();  // the previous operation's dirty pages are written back before, not during, this one
  sigset_t chld, old;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, &old);
  auto t0 = Clock::now();
  pid_t pid = fork();
  if (pid < 0) {
    std::perror("git_bench: fork");
    std::exit(1);
  }
  if (pid == 0) {
    sigprocmask(SIG_SETMASK, &old, nullptr);
    std::fflush(nullptr);
    _exit(child());
  }
  int status = 0;
  auto deadline = t0 + std::chrono::seconds(timeout_s);
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    auto left = deadline - Clock::now();
    if (left <= Clock::duration::zero()) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      sigprocmask(SIG_SETMASK, &old, nullptr);
      std::fprintf(stderr, "git_bench: %s: killed after %d s (--op-timeout)\n", what.c_str(),
                   timeout_s);
      return -1;
    }
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
    sigtimedwait(&chld, nullptr, &ts);  // wakes at SIGCHLD (any child) or the deadline
  }
  double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  sigprocmask(SIG_SETMASK, &old, nullptr);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "git_bench: %s failed (status %d)\n", what.c_str(), status);
    return -1;
  }
  return ms;
}

int exec_argv(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  execvp(argv[0], argv.data());
  std::perror("git_bench: exec");
  return 127;
}

double run_git(std::vector<std::string> args, int timeout_s) {
  std::string what;
  for (const auto& a : args) what += (what.empty() ? "" : " ") + a;
  return timed_child([&] { return exec_argv(args); }, timeout_s, what);
}

double run_ours(const fs::path& dir, const std::string& url, const std::string& branch,
                int timeout_s) {
  return timed_child(
      [&] {
        auto r = ck::git::pull(dir, ck::git::Remote{url, branch}, ck::git::Credentials{});
        if (r.has_error()) {
          std::fprintf(stderr, "git_bench: ck::git::pull(%s): %s\n", dir.c_str(),
                       r.error().message.c_str());
          return 1;
        }
        return 0;
      },
      timeout_s, "ck::git::pull " + dir.string());
}

// stdout of a shell command (the first line), "" on failure.
std::string capture(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  if (pclose(p) != 0) return "";
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string head_of(const fs::path& dir) {
  return capture("git -C " + quote(dir.string()) + " rev-parse HEAD");
}

std::string remote_head(const std::string& url, const std::string& branch) {
  std::string line = capture("git ls-remote " + quote(url) + " " + quote("refs/heads/" + branch));
  return line.substr(0, line.find('\t'));
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct Row {
  std::string kase, transport;
  std::vector<double> ours, git;
};

bool g_errors = false;

// Runs both, the one first on even rounds and the other on odd ones, so neither always finds
// the page cache warmed by the other.
void in_turn(int round, const std::function<void()>& one, const std::function<void()>& other) {
  if (round % 2 == 0) {
    one();
    other();
  } else {
    other();
    one();
  }
}

void error(const std::string& msg) {
  std::fprintf(stderr, "git_bench: ERROR: %s\n", msg.c_str());
  g_errors = true;
}

// Both copies' HEAD is the remote's; for `full`, also that both are clean and hold the same files.
bool verify(const fs::path& ours, const fs::path& git, const std::string& want, bool full) {
  std::string a = head_of(ours), b = head_of(git);
  if (a != want || b != want) {
    error("after the operation HEAD is " + a + " (ours) and " + b + " (git), the remote's is " +
          want);
    return false;
  }
  if (!full) return true;
  for (const auto& d : {ours, git}) {
    std::string st = capture("git -C " + quote(d.string()) + " status --porcelain | head -5");
    if (!st.empty()) {
      error(d.string() + " is not clean after the clone: " + st);
      return false;
    }
  }
  std::string diff = capture("diff -rq -x .git " + quote(ours.string()) + " " +
                             quote(git.string()) + " | head -5");
  if (!diff.empty()) {
    error("ours and git's working copies differ: " + diff);
    return false;
  }
  return true;
}

int g_cases = 0, g_met = 0;

// The ratio is the median of the per-round ratios: the two sides of a round run back to back,
// so a load change on the (shared) machine between rounds cancels out of it.
void print_row(const Row& r) {
  double o = median(r.ours), g = median(r.git);
  std::vector<double> ratios;
  std::string rounds;
  for (std::size_t i = 0; i < r.ours.size() && i < r.git.size(); ++i) {
    if (r.git[i] > 0) ratios.push_back(r.ours[i] / r.git[i]);
    char buf[48];
    std::snprintf(buf, sizeof buf, "%s%.0f/%.0f", i ? " " : "", r.ours[i], r.git[i]);
    rounds += buf;
  }
  double ratio = median(ratios);
  bool met = !ratios.empty() && ratio <= 1.5;
  ++g_cases;
  if (met) ++g_met;
  std::printf("%-7s %-10s %9.1f %9.1f %8.2f   %-4s  %s\n", r.kase.c_str(), r.transport.c_str(), o,
              g, ratio, met ? "yes" : "no", rounds.c_str());
  std::fflush(stdout);
}

int usage() {
  std::fprintf(stderr,
               "usage: git_bench --work DIR --extend CMD --transport NAME=URL [--transport ...] "
               "[--rounds N]\n"
               "                 [--op-timeout SECONDS] [--branch NAME]\n"
               "  CMD is run through sh with \" --seed N\" appended; it must add commits to the "
               "remote's branch\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (argc == 4 && std::string(argv[1]) == "--once") {  // one pull, in this process (profiling)
    auto r = ck::git::pull(argv[2], ck::git::Remote{argv[3], opt.branch}, ck::git::Credentials{});
    if (r.has_error()) {
      std::fprintf(stderr, "git_bench: %s\n", r.error().message.c_str());
      return 1;
    }
    std::printf("%s: %s, %zu path(s) changed\n", r.value().new_head.c_str(),
                r.value().cloned    ? "cloned"
                : r.value().updated ? "updated"
                                    : "up to date",
                r.value().changed.size());
    return 0;
  }
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    std::string v = argv[++i];
    if (a == "--work") {
      opt.work = v;
    } else if (a == "--extend") {
      opt.extend = v;
    } else if (a == "--branch") {
      opt.branch = v;
    } else if (a == "--rounds") {
      opt.rounds = std::atoi(v.c_str());
    } else if (a == "--op-timeout") {
      opt.op_timeout_s = std::atoi(v.c_str());
    } else if (a == "--transport") {
      auto eq = v.find('=');
      if (eq == std::string::npos || eq == 0) return usage();
      opt.transports.emplace_back(v.substr(0, eq), v.substr(eq + 1));
    } else {
      return usage();
    }
  }
  if (opt.work.empty() || opt.extend.empty() || opt.transports.empty() || opt.rounds < 1 ||
      opt.rounds > 100 || opt.op_timeout_s < 1) {
    return usage();
  }
  std::printf("case    transport  ours ms    git ms  ours/git  <=1.5x  rounds ours/git ms\n");
  std::fflush(stdout);
  int seed = 1000;
  const int t = opt.op_timeout_s;
  for (const auto& [name, url] : opt.transports) {
    fs::path base = opt.work / name;
    std::error_code ec;
    fs::remove_all(base, ec);
    fs::create_directories(base);
    std::string want = remote_head(url, opt.branch);
    if (want.empty()) {
      error("cannot read refs/heads/" + opt.branch + " of " + url + " with git ls-remote");
      continue;
    }
    // clone: a fresh folder per round and side; the last round's pair stays for the next cases.
    // The others are removed only after the last round: on ext4, creating files right after
    // deleting many costs the next clone more system time (inode reuse checks), noise for both.
    Row clone{"clone", name, {}, {}};
    fs::path ours_dir, git_dir;
    bool ok = true;
    for (int r = 0; r < opt.rounds && ok; ++r) {
      ours_dir = base / ("ours-" + std::to_string(r));
      git_dir = base / ("git-" + std::to_string(r));
      double o = 0, g = 0;
      auto do_ours = [&] { o = run_ours(ours_dir, url, opt.branch, t); };
      auto do_git = [&] {
        g = run_git({"git", "clone", "-q", "-b", opt.branch, url, git_dir.string()}, t);
      };
      in_turn(r, do_ours, do_git);
      if (o < 0 || g < 0 || !verify(ours_dir, git_dir, want, r == 0)) {
        if (o < 0 || g < 0) error(name + " clone round " + std::to_string(r + 1) + " failed");
        ok = false;
        break;
      }
      clone.ours.push_back(o);
      clone.git.push_back(g);
    }
    if (!ok) continue;
    for (int r = 0; r + 1 < opt.rounds; ++r) {
      fs::remove_all(base / ("ours-" + std::to_string(r)), ec);
      fs::remove_all(base / ("git-" + std::to_string(r)), ec);
    }
    print_row(clone);
    // pull: the remote moves on by the --extend command before each round.
    Row pull{"pull", name, {}, {}};
    for (int r = 0; r < opt.rounds && ok; ++r) {
      std::string cmd = opt.extend + " --seed " + std::to_string(seed++) + " >/dev/null";
      if (std::system(cmd.c_str()) != 0) {
        error("the --extend command failed: " + cmd);
        ok = false;
        break;
      }
      want = remote_head(url, opt.branch);
      double o = 0, g = 0;
      auto do_ours = [&] { o = run_ours(ours_dir, url, opt.branch, t); };
      auto do_git = [&] {
        g = run_git({"git", "-C", git_dir.string(), "pull", "-q", "--ff-only"}, t);
      };
      in_turn(r, do_ours, do_git);
      if (o < 0 || g < 0 || !verify(ours_dir, git_dir, want, r + 1 == opt.rounds)) {
        if (o < 0 || g < 0) error(name + " pull round " + std::to_string(r + 1) + " failed");
        ok = false;
        break;
      }
      pull.ours.push_back(o);
      pull.git.push_back(g);
    }
    if (!ok) continue;
    print_row(pull);
    Row noop{"noop", name, {}, {}};
    for (int r = 0; r < opt.rounds && ok; ++r) {
      double o = 0, g = 0;
      auto do_ours = [&] { o = run_ours(ours_dir, url, opt.branch, t); };
      auto do_git = [&] {
        g = run_git({"git", "-C", git_dir.string(), "pull", "-q", "--ff-only"}, t);
      };
      in_turn(r, do_ours, do_git);
      if (o < 0 || g < 0 || !verify(ours_dir, git_dir, want, false)) {
        if (o < 0 || g < 0) error(name + " no-op pull round " + std::to_string(r + 1) + " failed");
        ok = false;
        break;
      }
      noop.ours.push_back(o);
      noop.git.push_back(g);
    }
    if (!ok) continue;
    print_row(noop);
    fs::remove_all(base, ec);
  }
  std::printf(
      "\nissue 16 goal (ours within 1.5x of git's wall time): met in %d of %d case(s)\n",
      g_met, g_cases);
  std::printf("measurement errors: %s\n", g_errors ? "yes (see stderr)" : "none");
  return g_errors ? 1 : 0;
}
