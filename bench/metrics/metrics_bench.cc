// What the metrics cost a gateway request: GatewayMetrics::request() (a sharded counter
// increment and a histogram observe), alone and with the two steady_clock reads the gateway
// makes around a request, on 1 and 2 threads. For contrast: one unsharded atomic counter
// shared by the threads, and a per-workspace label lookup (Family::with under its mutex).
//
//   build/bench/metrics_bench [iterations]     (default 20,000,000 per thread)
//
// Each row is the best of 5 runs. "ns/op" is wall time / operations per thread: what each
// thread's request pays. With 2 threads on a 2-core machine, equal ns/op means no contention.
#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gateway/gateway_metrics.h"
#include "metrics/metrics.h"

namespace {

using Clock = std::chrono::steady_clock;

// Runs body(thread, iterations) on `threads` threads started together; best wall ns/op of 5.
double measure(int threads, long iterations, const std::function<void(int, long)>& body) {
  double best = 1e300;
  for (int round = 0; round < 5; ++round) {
    std::barrier start(threads + 1);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        start.arrive_and_wait();
        body(t, iterations);
      });
    }
    start.arrive_and_wait();
    auto t0 = Clock::now();
    for (auto& th : pool) th.join();
    double ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
    best = std::min(best, ns / static_cast<double>(iterations));
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  long n = argc > 1 ? std::atol(argv[1]) : 20'000'000;
  if (n <= 0) {
    std::fprintf(stderr, "usage: metrics_bench [iterations per thread]\n");
    return 2;
  }
  // Request durations spread over the buckets (0.1 ms to 50 ms), so the bucket search is not
  // always the same.
  std::vector<Clock::duration> took(1024);
  std::mt19937 rng(42);
  std::uniform_int_distribution<long> us(100, 50'000);
  for (auto& d : took) d = std::chrono::microseconds(us(rng));
  const std::size_t mask = took.size() - 1;

  ck::metrics::Registry registry;
  ck::GatewayMetrics gm(registry);
  std::atomic<std::uint64_t> shared{0};
  auto& per_ws =
      registry.counter("bench_workspace_requests_total", "Per-workspace requests.", {"workspace"});
  std::vector<std::string> names;
  for (int i = 0; i < 100; ++i) names.push_back("workspace-" + std::to_string(i));
  for (const auto& w : names) per_ws.with({w});

  struct Row {
    const char* what;
    long divisor;  // slow rows run fewer iterations
    std::function<void(int, long)> body;
  };
  std::vector<Row> rows = {
      {"request(): counter inc + histogram observe", 1,
       [&](int t, long iters) {
         auto kind = t == 0 ? ck::RequestKind::workspace : ck::RequestKind::static_files;
         for (long i = 0; i < iters; ++i) {
           gm.request(kind, 200, took[static_cast<std::size_t>(i) & mask]);
         }
       }},
      {"request() + 2 steady_clock::now() (the gateway's full cost)", 1,
       [&](int t, long iters) {
         auto kind = t == 0 ? ck::RequestKind::workspace : ck::RequestKind::static_files;
         for (long i = 0; i < iters; ++i) {
           auto t0 = Clock::now();
           gm.request(kind, 200, Clock::now() - t0);
         }
       }},
      {"contrast: one unsharded atomic fetch_add", 1,
       [&](int, long iters) {
         for (long i = 0; i < iters; ++i) shared.fetch_add(1, std::memory_order_relaxed);
       }},
      {"contrast: per-workspace with({name}) + inc (mutex + map)", 10,
       [&](int t, long iters) {
         for (long i = 0; i < iters; ++i) {
           per_ws.with({names[static_cast<std::size_t>(i + t) % names.size()]}).inc();
         }
       }},
  };

  double load = 0;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = 0;
    std::fclose(f);
  }
  std::printf(
      "metrics micro-benchmark: %ld iterations per thread, best of 5, %u hardware threads, load "
      "avg %.2f\n",
      n, std::thread::hardware_concurrency(), load);
  std::printf("%-62s %12s %12s\n", "operation", "1 thread", "2 threads");
  for (auto& r : rows) {
    long iters = n / r.divisor;
    double one = measure(1, iters, r.body);
    double two = measure(2, iters, r.body);
    std::printf("%-62s %9.2f ns %9.2f ns\n", r.what, one, two);
  }
  // The totals are exact: every run above went through the same counters.
  auto& requests = registry.counter("cloudyknight_http_requests_total", "", {"kind", "code_class"});
  std::uint64_t counted =
      requests.with({"workspace", "2xx"}).value() + requests.with({"static", "2xx"}).value();
  // Rows 1 and 2, 5 rounds each of 1 thread (n, workspace) and 2 threads (n each, one per kind).
  std::uint64_t expected = 2ull * 5 * 3 * static_cast<std::uint64_t>(n);
  std::printf("requests counted: %llu (expected %llu) %s\n",
              static_cast<unsigned long long>(counted), static_cast<unsigned long long>(expected),
              counted == expected ? "ok" : "MISMATCH");
  return counted == expected ? 0 : 1;
}
