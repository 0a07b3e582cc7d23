#include "metrics/process.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <fstream>
#include <iterator>
#include <string>

namespace ck::metrics {

namespace {

std::string slurp(const char* path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

bool to_u64(std::string_view s, std::uint64_t& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

std::optional<ProcStat> parse_proc_stat(std::string_view text) {
  auto close = text.rfind(')');
  if (close == std::string_view::npos) return std::nullopt;
  std::string_view rest = text.substr(close + 1);
  // Field 3 (state) is the first after ')'; we want 14 utime, 15 stime, 22 starttime,
  // 23 vsize, 24 rss.
  ProcStat out;
  int field = 2;
  int found = 0;
  while (!rest.empty() && found < 5) {
    auto start = rest.find_first_not_of(" \n");
    if (start == std::string_view::npos) break;
    rest.remove_prefix(start);
    auto end = rest.find_first_of(" \n");
    std::string_view tok = rest.substr(0, end);
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
    ++field;
    std::uint64_t* dest = field == 14   ? &out.utime_ticks
                          : field == 15 ? &out.stime_ticks
                          : field == 22 ? &out.start_ticks
                          : field == 23 ? &out.vsize_bytes
                          : field == 24 ? &out.rss_pages
                                        : nullptr;
    if (!dest) continue;
    if (!to_u64(tok, *dest)) return std::nullopt;
    ++found;
  }
  if (found < 5) return std::nullopt;
  return out;
}

std::optional<std::uint64_t> parse_boot_time(std::string_view proc_stat) {
  while (!proc_stat.empty()) {
    auto nl = proc_stat.find('\n');
    std::string_view line = proc_stat.substr(0, nl);
    if (line.starts_with("btime ")) {
      std::uint64_t v = 0;
      line.remove_prefix(6);
      while (!line.empty() && line.back() == ' ') line.remove_suffix(1);
      if (to_u64(line, v)) return v;
      return std::nullopt;
    }
    if (nl == std::string_view::npos) break;
    proc_stat.remove_prefix(nl + 1);
  }
  return std::nullopt;
}

ProcessStats read_process_stats() {
  ProcessStats out;
  long ticks = ::sysconf(_SC_CLK_TCK);
  long page = ::sysconf(_SC_PAGESIZE);
  if (auto st = parse_proc_stat(slurp("/proc/self/stat")); st && ticks > 0) {
    out.cpu_seconds =
        static_cast<double>(st->utime_ticks + st->stime_ticks) / static_cast<double>(ticks);
    out.resident_bytes = st->rss_pages * static_cast<std::uint64_t>(page > 0 ? page : 4096);
    out.virtual_bytes = st->vsize_bytes;
    if (auto boot = parse_boot_time(slurp("/proc/stat"))) {
      out.start_time_seconds = static_cast<double>(*boot) +
                               static_cast<double>(st->start_ticks) / static_cast<double>(ticks);
    }
  }
  if (DIR* d = ::opendir("/proc/self/fd")) {
    std::int64_t n = 0;
    while (const dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') ++n;
    }
    ::closedir(d);
    out.open_fds = n - 1;  // the directory stream's own descriptor
  }
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    out.max_fds = static_cast<std::int64_t>(rl.rlim_cur);
  }
  return out;
}

}  // namespace ck::metrics
