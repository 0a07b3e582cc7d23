#include <gtest/gtest.h>

#include "monitor/monitor.h"
#include "monitor/snapshot.h"

namespace ck {
namespace {
using std::chrono::milliseconds;
using std::chrono::seconds;

IdlePolicy policy() {
  IdlePolicy p;
  p.idle_after = seconds(2);
  p.background_after = seconds(10);
  p.stop_after = seconds(30);
  p.grace = seconds(5);
  return p;
}

TEST(ActivityLevel, FollowsTheThresholdsFromTheLastActivity) {
  const std::int64_t t0 = 1'000'000;
  ActivitySample s{t0, 0, 0};
  auto p = policy();
  EXPECT_EQ(activity_level(s, p, t0), ActivityLevel::active);
  EXPECT_EQ(activity_level(s, p, t0 + 1999), ActivityLevel::active);
  EXPECT_EQ(activity_level(s, p, t0 + 2000), ActivityLevel::idle);
  EXPECT_EQ(activity_level(s, p, t0 + 9999), ActivityLevel::idle);
  EXPECT_EQ(activity_level(s, p, t0 + 10000), ActivityLevel::background);
  EXPECT_EQ(activity_level(s, p, t0 + 29999), ActivityLevel::background);
  EXPECT_EQ(activity_level(s, p, t0 + 30000), ActivityLevel::stop);
}

TEST(ActivityLevel, AnOpenWebSocketKeepsItActiveHoweverOld) {
  ActivitySample s{1, 2, 0};
  EXPECT_EQ(activity_level(s, policy(), 100'000'000), ActivityLevel::active);
}

TEST(ActivityLevel, AClosedWebSocketGivesAGracePeriodThenTheNormalTimeline) {
  const std::int64_t closed = 5'000'000;
  ActivitySample s{closed - 60'000, 0, closed};  // last request long before the close
  auto p = policy();
  EXPECT_EQ(activity_level(s, p, closed + 100), ActivityLevel::disconnected);
  EXPECT_EQ(activity_level(s, p, closed + 4999), ActivityLevel::disconnected);
  // After the grace the close counts as the last activity.
  EXPECT_EQ(activity_level(s, p, closed + 5000), ActivityLevel::idle);
  EXPECT_EQ(activity_level(s, p, closed + 30000), ActivityLevel::stop);
  // A request after the close ends the disconnected state.
  ActivitySample back{closed + 1000, 0, closed};
  EXPECT_EQ(activity_level(back, p, closed + 1500), ActivityLevel::active);
}

TEST(ActivityLevel, NamesAreTheApiWords) {
  EXPECT_EQ(level_name(ActivityLevel::active), "active");
  EXPECT_EQ(level_name(ActivityLevel::idle), "idle");
  EXPECT_EQ(level_name(ActivityLevel::background), "background");
  EXPECT_EQ(level_name(ActivityLevel::disconnected), "disconnected");
  EXPECT_EQ(level_name(ActivityLevel::stop), "stopped");
}

TEST(Activity, TouchIsThrottledAndSocketsCount) {
  Activity a;
  a.touch();
  auto first = a.last_ms.load();
  EXPECT_GT(first, 0);
  a.touch();
  EXPECT_EQ(a.last_ms.load(), first);  // within 250 ms: no write
  a.socket_opened();
  a.socket_opened();
  a.socket_closed();
  auto s = a.sample();
  EXPECT_EQ(s.open_sockets, 1);
  EXPECT_GT(s.last_close_ms, 0);
}

TEST(ActivityLevel, ARequestInFlightKeepsItActiveHoweverOld) {
  ActivitySample s{1, 0, 0, 1};
  EXPECT_EQ(activity_level(s, policy(), 100'000'000), ActivityLevel::active);
}

TEST(Activity, RequestsInFlightAreCountedOverEveryWorkerAndTheirEndIsActivity) {
  Activity a;
  a.last_ms.store(1);  // long ago
  {
    RequestInFlight r0(a, 0);
    RequestInFlight r1(a, 1);
    RequestInFlight r17(a, 17);  // shares slot 1
    EXPECT_EQ(a.sample().in_flight, 3);
    EXPECT_EQ(activity_level(a.sample(), policy(), unix_ms()), ActivityLevel::active);
    EXPECT_EQ(a.last_ms.load(), 1);  // starting is not what marks it
  }
  auto s = a.sample();
  EXPECT_EQ(s.in_flight, 0);
  EXPECT_GT(s.last_ms, unix_ms() - 60'000);  // the ends marked it
  EXPECT_EQ(activity_level(s, policy(), unix_ms()), ActivityLevel::active);
}

TEST(Activity, AWebSocketsRequestEndingKeepsTheGracePeriod) {
  Activity a;
  a.last_ms.store(unix_ms() - 120'000);  // opened two minutes ago
  {
    RequestInFlight r(a, 0);
    a.socket_opened();
    a.last_ms.store(unix_ms() - 120'000);
    a.socket_closed();  // the tunnel ends, then its request
  }
  EXPECT_EQ(activity_level(a.sample(), policy(), unix_ms()), ActivityLevel::disconnected);
}

TEST(EffectivePolicy, WorkspaceJsonOverridesOnlyWhatItSets) {
  WorkspaceSpec spec;
  spec.stop_after = std::chrono::minutes(1);
  spec.grace = seconds(2);
  auto p = effective_policy(policy(), spec);
  EXPECT_EQ(p.idle_after, seconds(2));
  EXPECT_EQ(p.background_after, seconds(10));
  EXPECT_EQ(p.stop_after, seconds(60));
  EXPECT_EQ(p.grace, seconds(2));
}

}  // namespace
}  // namespace ck
