#pragma once
// The process's own figures (CPU time, memory, open files, start time) as the standard
// process_* metrics report them, read from /proc/self at scrape time. The parsers are pure.

#include <cstdint>
#include <optional>
#include <string_view>

namespace ck::metrics {

/// What /proc/PID/stat says, in its units.
struct ProcStat {
  std::uint64_t utime_ticks = 0;
  std::uint64_t stime_ticks = 0;
  std::uint64_t start_ticks = 0;  // since boot
  std::uint64_t vsize_bytes = 0;
  std::uint64_t rss_pages = 0;
};

/// Parses the text of /proc/PID/stat. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last ')'. nullopt if malformed.
std::optional<ProcStat> parse_proc_stat(std::string_view text);
/// The boot time (unix seconds) from the "btime" line of /proc/stat.
std::optional<std::uint64_t> parse_boot_time(std::string_view proc_stat);

struct ProcessStats {
  double cpu_seconds = 0;  // user + system
  std::uint64_t resident_bytes = 0;
  std::uint64_t virtual_bytes = 0;
  double start_time_seconds = 0;  // unix time
  std::int64_t open_fds = 0;
  std::int64_t max_fds = 0;  // the soft RLIMIT_NOFILE
};

/// This process now (from /proc/self). Fields it cannot read stay 0.
ProcessStats read_process_stats();

}  // namespace ck::metrics
