#include "core/log.h"

#include <gtest/gtest.h>

namespace ck::log {
namespace {

TEST(LogRing, KeepsTheNewestRecordsInOrder) {
  auto l = get("logtest");
  auto before = recent(1);
  std::uint64_t start = before.empty() ? 0 : before.back().seq;
  l->info("first {}", 1);
  l->warn("second");
  l->debug("not kept: below the level");
  auto got = recent(10, start);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].msg, "first 1");
  EXPECT_EQ(got[0].level, "info");
  EXPECT_EQ(got[0].logger, "logtest");
  EXPECT_EQ(got[1].msg, "second");
  EXPECT_EQ(got[1].level, "warning");
  EXPECT_EQ(got[1].seq, got[0].seq + 1);
  EXPECT_EQ(got[0].time.size(), std::string("2026-11-26T03:12:15.123Z").size());
  EXPECT_EQ(got[0].time.back(), 'Z');
  // `max` keeps the newest.
  auto last = recent(1, start);
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last[0].msg, "second");
}

TEST(LogRing, DropsTheOldestPastItsSize) {
  auto l = get("logtest");
  for (std::size_t i = 0; i < kRingSize + 10; ++i) l->info("line {}", i);
  auto all = recent(kRingSize * 2);
  ASSERT_EQ(all.size(), kRingSize);
  EXPECT_EQ(all.back().msg, "line " + std::to_string(kRingSize + 9));
  EXPECT_EQ(all.front().msg, "line 10");
}

}  // namespace
}  // namespace ck::log
