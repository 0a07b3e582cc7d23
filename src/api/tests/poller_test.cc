#include "api/poller.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace ck::api {
namespace {

using namespace std::chrono_literals;

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds limit = 5000ms) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

TEST(Poller, RunsATaskAtOnceThenEveryIntervalUntilItAnswersFalse) {
  Poller p(10ms);
  std::atomic<int> ticks{0};
  auto added = std::chrono::steady_clock::now();
  std::atomic<long> first_ms{-1};
  p.add([&] {
    if (ticks == 0) {
      first_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - added)
                     .count();
    }
    return ++ticks < 5;
  });
  ASSERT_TRUE(eventually([&] { return ticks == 5; }));
  EXPECT_LT(first_ms.load(), 1000);
  ASSERT_TRUE(eventually([&] { return p.size() == 0; }));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(ticks, 5);  // never called again after false
}

TEST(Poller, TasksRunSideBySideAndTheDestructorStopsThem) {
  std::atomic<int> a{0}, b{0};
  {
    Poller p(5ms);
    p.add([&] { return ++a, true; });
    p.add([&] { return ++b, true; });
    ASSERT_TRUE(eventually([&] { return a > 3 && b > 3; }));
  }
  int a_end = a, b_end = b;
  std::this_thread::sleep_for(30ms);
  EXPECT_EQ(a, a_end);
  EXPECT_EQ(b, b_end);
}

}  // namespace
}  // namespace ck::api
