#include "metrics/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <thread>
#include <vector>

namespace ck::metrics {
namespace {

TEST(Counter, AddsUp) {
  Counter c;
  EXPECT_EQ(c.value(), 0u);
  c.inc();
  c.inc(41);
  EXPECT_EQ(c.value(), 42u);
}

TEST(Gauge, GoesUpAndDown) {
  Gauge g;
  g.inc();
  g.inc(4);
  g.dec(2);
  EXPECT_EQ(g.value(), 3);
  g.set(-7);
  EXPECT_EQ(g.value(), -7);
  {
    GaugeHold hold(g);
    EXPECT_EQ(g.value(), -6);
  }
  EXPECT_EQ(g.value(), -7);
}

TEST(Histogram, BucketsAreUpperInclusiveAndCumulative) {
  Histogram h({0.5, 1, 2});
  for (double v : {0.0, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 1e9}) h.observe(v);
  auto s = h.sample();
  // <=0.5: 0, 0.5 | <=1: +0.75, 1.0 | <=2: +1.5, 2.0 | +Inf: +3, 1e9
  EXPECT_EQ(s.cumulative, (std::vector<std::uint64_t>{2, 4, 6, 8}));
  EXPECT_EQ(s.count(), 8u);
  EXPECT_DOUBLE_EQ(s.sum, 0.5 + 0.75 + 1 + 1.5 + 2 + 3 + 1e9);
}

TEST(Histogram, NegativeAndNanValues) {
  Histogram h({1});
  h.observe(-5);  // below every bound: the first bucket
  h.observe(std::nan(""));
  auto s = h.sample();
  EXPECT_EQ(s.cumulative, (std::vector<std::uint64_t>{1, 2}));
  EXPECT_TRUE(std::isnan(s.sum));
}

TEST(Histogram, ObservesDurationsInSeconds) {
  Histogram h(latency_buckets());
  h.observe(std::chrono::microseconds(700));   // 0.0007 s: le=0.001
  h.observe(std::chrono::milliseconds(3000));  // 3 s: le=5
  auto s = h.sample();
  const auto& b = h.bounds();
  auto at = [&](double le) {
    return s.cumulative[static_cast<std::size_t>(std::find(b.begin(), b.end(), le) - b.begin())];
  };
  EXPECT_EQ(at(0.0005), 0u);
  EXPECT_EQ(at(0.001), 1u);
  EXPECT_EQ(at(2.5), 1u);
  EXPECT_EQ(at(5), 2u);
  EXPECT_NEAR(s.sum, 3.0007, 1e-12);
}

TEST(Histogram, ManyBucketsSpanSeveralCacheLines) {
  auto bounds = exponential_buckets(1, 2, 20);  // 1, 2, 4 ... 524288
  ASSERT_EQ(bounds.size(), 20u);
  EXPECT_EQ(bounds.back(), 524288);
  Histogram h(bounds);
  for (double b : bounds) h.observe(b);
  h.observe(1e7);
  auto s = h.sample();
  for (std::size_t i = 0; i < bounds.size(); ++i) EXPECT_EQ(s.cumulative[i], i + 1) << i;
  EXPECT_EQ(s.count(), 21u);
  EXPECT_EQ(s.sum, 1048575 + 1e7);
}

TEST(Buckets, LatencyBucketsGoFromHalfAMillisecondToTenSeconds) {
  auto b = latency_buckets();
  EXPECT_EQ(b.front(), 0.0005);
  EXPECT_EQ(b.back(), 10);
  EXPECT_TRUE(std::is_sorted(b.begin(), b.end()));
}

TEST(Registry, WritesFamiliesInRegistrationOrderAndChildrenSorted) {
  Registry r;
  auto& req = r.counter("t_requests_total", "Requests.", {"kind", "code"});
  req.with({"static", "2xx"}).inc(3);
  req.with({"monitor", "5xx"}).inc();
  req.with({"monitor", "2xx"}).inc(2);
  r.gauge("t_open", "Open things.").get().set(5);
  auto& lat = r.histogram("t_seconds", "Latency.", {"kind"}, {0.1, 1});
  lat.with({"a\"b"}).observe(0.5);
  EXPECT_EQ(r.text(),
            "# HELP t_requests_total Requests.\n"
            "# TYPE t_requests_total counter\n"
            "t_requests_total{kind=\"monitor\",code=\"2xx\"} 2\n"
            "t_requests_total{kind=\"monitor\",code=\"5xx\"} 1\n"
            "t_requests_total{kind=\"static\",code=\"2xx\"} 3\n"
            "# HELP t_open Open things.\n"
            "# TYPE t_open gauge\n"
            "t_open 5\n"
            "# HELP t_seconds Latency.\n"
            "# TYPE t_seconds histogram\n"
            "t_seconds_bucket{kind=\"a\\\"b\",le=\"0.1\"} 0\n"
            "t_seconds_bucket{kind=\"a\\\"b\",le=\"1\"} 1\n"
            "t_seconds_bucket{kind=\"a\\\"b\",le=\"+Inf\"} 1\n"
            "t_seconds_sum{kind=\"a\\\"b\"} 0.5\n"
            "t_seconds_count{kind=\"a\\\"b\"} 1\n");
}

TEST(Registry, FamilyWithoutChildrenWritesOnlyItsHeader) {
  Registry r;
  r.counter("t_none_total", "Nothing yet.", {"x"});
  EXPECT_EQ(r.text(), "# HELP t_none_total Nothing yet.\n# TYPE t_none_total counter\n");
}

TEST(Registry, RegisteringAgainReturnsTheSameFamily) {
  Registry r;
  auto& a = r.counter("t_total", "A.", {"k"});
  auto& b = r.counter("t_total", "A.", {"k"});
  EXPECT_EQ(&a, &b);
  Counter& c1 = a.with({"x"});
  Counter& c2 = b.with({"x"});
  EXPECT_EQ(&c1, &c2);
  EXPECT_NE(&a.with({"y"}), &c1);
  // Children keep their address as others are added.
  for (int i = 0; i < 100; ++i) a.with({std::to_string(i)});
  EXPECT_EQ(&a.with({"x"}), &c1);
}

TEST(Registry, GlobalIsOneInstance) { EXPECT_EQ(&global(), &global()); }

// Several threads on the same counters and histogram: the totals are exact.
TEST(Concurrency, ExactTotalsFromSeveralThreads) {
  Registry r;
  auto& fam = r.counter("t_total", "T.", {"k"});
  Counter& shared = fam.with({"shared"});
  Histogram& h = r.histogram("t_seconds", "T.", {}, {1, 2, 3}).get();
  Gauge& g = r.gauge("t_open", "T.").get();
  constexpr int kThreads = 6;
  constexpr int kIterations = 200'000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Counter& mine = fam.with({"thread" + std::to_string(t)});
      for (int i = 0; i < kIterations; ++i) {
        shared.inc();
        mine.inc(2);
        h.observe(static_cast<double>(i % 4));  // 0,1 -> le=1; 2 -> le=2; 3 -> le=3
        GaugeHold hold(g);
      }
      // A per-workspace style lookup under the family's lock, racing with the others.
      for (int i = 0; i < 1000; ++i) fam.with({"lookup"}).inc();
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(shared.value(), std::uint64_t{kThreads} * kIterations);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(fam.with({"thread" + std::to_string(t)}).value(), 2u * kIterations);
  }
  EXPECT_EQ(fam.with({"lookup"}).value(), kThreads * 1000u);
  auto s = h.sample();
  std::uint64_t n = std::uint64_t{kThreads} * kIterations;
  EXPECT_EQ(s.cumulative, (std::vector<std::uint64_t>{n / 2, n * 3 / 4, n, n}));
  EXPECT_EQ(s.sum, static_cast<double>(kThreads) * (kIterations / 4) * (0 + 1 + 2 + 3));
  EXPECT_EQ(g.value(), 0);
}

// A scrape while threads count: every exposition is well formed and _count == +Inf bucket.
TEST(Concurrency, ScrapeWhileCounting) {
  Registry r;
  Histogram& h = r.histogram("t_seconds", "T.", {}, {0.5}).get();
  Counter& c = r.counter("t_total", "T.").get();
  std::atomic<bool> stop{false};
  std::thread worker([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      h.observe(0.25);
      c.inc();
    }
  });
  for (int i = 0; i < 200; ++i) {
    auto s = h.sample();
    EXPECT_EQ(s.cumulative[0], s.cumulative[1]);  // every value is 0.25
    EXPECT_FALSE(r.text().empty());
  }
  stop = true;
  worker.join();
  auto s = h.sample();
  EXPECT_EQ(s.sum, 0.25 * static_cast<double>(s.count()));
}

}  // namespace
}  // namespace ck::metrics
