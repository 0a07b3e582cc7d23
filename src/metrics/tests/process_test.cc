#include "metrics/process.h"

#include <gtest/gtest.h>

#include <chrono>

namespace ck::metrics {
namespace {

TEST(Process, ParsesProcStat) {
  // The command name may hold spaces and parentheses: fields count from the last ')'.
  std::string text =
      "4242 (my (odd) name) S 1 4242 4242 0 -1 4194304 100 0 0 0 "
      "250 50 0 0 20 0 3 0 1394165 3133440 383 18446744073709551615 1 2 3\n";
  auto st = parse_proc_stat(text);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->utime_ticks, 250u);
  EXPECT_EQ(st->stime_ticks, 50u);
  EXPECT_EQ(st->start_ticks, 1394165u);
  EXPECT_EQ(st->vsize_bytes, 3133440u);
  EXPECT_EQ(st->rss_pages, 383u);
}

TEST(Process, RejectsMalformedProcStat) {
  EXPECT_FALSE(parse_proc_stat(""));
  EXPECT_FALSE(parse_proc_stat("1 (x) S 1 2 3"));  // too short
  EXPECT_FALSE(parse_proc_stat("no parenthesis at all"));
  EXPECT_FALSE(parse_proc_stat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 x 50 0 0 20 0 3 0 1 2 3"));
}

TEST(Process, ParsesBootTime) {
  EXPECT_EQ(parse_boot_time("cpu  1 2 3\nintr 5\nbtime 1795640928\nprocesses 9\n"), 1795640928u);
  EXPECT_FALSE(parse_boot_time("cpu 1 2 3\n"));
  EXPECT_FALSE(parse_boot_time("btime soon\n"));
}

TEST(Process, ReadsItself) {
  auto s = read_process_stats();
  EXPECT_GT(s.resident_bytes, 0u);
  EXPECT_GT(s.virtual_bytes, s.resident_bytes);
  EXPECT_GE(s.open_fds, 3);  // stdin, stdout, stderr
  EXPECT_GE(s.cpu_seconds, 0);
  double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_LE(s.start_time_seconds, now + 1);
  EXPECT_GT(s.start_time_seconds, now - 3600);  // this test binary started a moment ago
}

}  // namespace
}  // namespace ck::metrics
