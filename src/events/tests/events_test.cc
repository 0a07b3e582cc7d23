#include "events/events.h"

#include <gtest/gtest.h>
#include <thread>

namespace ck {
namespace {
using json = nlohmann::json;

TEST(EventBus, DeliversToEverySubscriberWithTypeWorkspaceAndData) {
  EventBus bus;
  int notified = 0;
  auto a = bus.subscribe([&] { ++notified; });
  auto b = bus.subscribe([] {});
  bus.publish("status", "shop", {{"status", "running"}});
  auto got = a->take();
  ASSERT_EQ(got.size(), 1u);
  auto j = json::parse(*got[0]);
  EXPECT_EQ(j["type"], "status");
  EXPECT_EQ(j["workspace"], "shop");
  EXPECT_EQ(j["status"], "running");
  EXPECT_TRUE(j.contains("time"));
  EXPECT_EQ(b->take().size(), 1u);
  EXPECT_EQ(notified, 1);
  EXPECT_EQ(bus.published(), 1u);
}

TEST(EventBus, NotifiesOnlyWhenTheQueueBecomesNonEmpty) {
  EventBus bus;
  int notified = 0;
  auto a = bus.subscribe([&] { ++notified; });
  bus.publish("x", "", {});
  bus.publish("x", "", {});
  EXPECT_EQ(notified, 1);
  EXPECT_EQ(a->take().size(), 2u);
  bus.publish("x", "", {});
  EXPECT_EQ(notified, 2);
}

TEST(EventBus, FilterNarrowsToSubscribedWorkspacesButKeepsSystemEvents) {
  EventBus bus;
  auto a = bus.subscribe([] {});
  a->set_filter({"blog"});
  bus.publish("status", "shop", {});
  bus.publish("status", "blog", {});
  bus.publish("jobs", "", {});
  auto got = a->take();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(json::parse(*got[0])["workspace"], "blog");
  EXPECT_EQ(json::parse(*got[1])["type"], "jobs");
}

TEST(EventBus, HiddenWorkspacesAreLeftOutForThatSubscriberOnly) {
  EventBus bus;
  auto anon = bus.subscribe([] {});
  auto signed_in = bus.subscribe([] {});
  anon->set_hidden([](const std::string& ws) { return ws == "secret"; });
  bus.publish("status", "secret", {});
  bus.publish("status", "shop", {});
  bus.publish("jobs", "", {});
  auto got = anon->take();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(json::parse(*got[0])["workspace"], "shop");
  EXPECT_EQ(json::parse(*got[1])["type"], "jobs");
  EXPECT_EQ(signed_in->take().size(), 3u);
}

TEST(EventBus, ASlowSubscriberIsDroppedAndOthersKeepReceiving) {
  EventBus bus;
  int slow_notified = 0;
  auto slow = bus.subscribe([&] { ++slow_notified; }, 1000);
  auto fast = bus.subscribe([] {});
  for (int i = 0; i < 100; ++i) {
    bus.publish("log", "shop", {{"line", std::string(50, 'x')}});
    fast->take();
  }
  EXPECT_TRUE(slow->dropped());
  EXPECT_FALSE(fast->dropped());
  EXPECT_TRUE(slow->take().empty());
  EXPECT_EQ(slow_notified, 2);  // first message, then the drop
  EXPECT_EQ(bus.dropped_clients(), 1u);
}

TEST(EventBus, ClosedAndDestroyedSubscribersAreNeverNotified) {
  EventBus bus;
  int notified = 0;
  auto a = bus.subscribe([&] { ++notified; });
  a->close();
  bus.publish("x", "", {});
  EXPECT_EQ(notified, 0);
  { auto b = bus.subscribe([&] { ++notified; }); }
  bus.publish("x", "", {});
  EXPECT_EQ(notified, 0);
  EXPECT_EQ(bus.subscriber_count(), 1u);  // `a` is still held, just closed
  bus.close_all();
  EXPECT_FALSE(bus.has_subscribers());
}

TEST(EventBus, PublishFromManyThreadsLosesNothing) {
  EventBus bus;
  auto a = bus.subscribe([] {}, 64u << 20);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) bus.publish("x", "w", {{"i", i}});
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(a->take().size(), 4000u);
}

}  // namespace
}  // namespace ck
