#pragma once
// The metrics registry: counters, gauges and histograms, grouped in labelled families and
// written in the Prometheus text format (text.h).
//
// Design: the hot path (a gateway request, on one of its per-core threads) only does relaxed
// atomic adds. Counters and histograms are sharded: each thread adds to its own cache line
// (a shard picked round-robin on the thread's first use), and a scrape sums the shards, so
// threads never bounce a line between cores. A family's children are created under its mutex
// and never move or die, so callers resolve the label sets they know up front (status class,
// route kind) and keep plain references; with(labels) on the hot path costs a lock and a map
// lookup (no allocation for an existing child).
//
// Thread-safety: everything may be used from any thread. One process-wide registry (global())
// holds what modules register; tests make their own.

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "metrics/text.h"

namespace ck::metrics {

/// Shards per counter or histogram: each thread uses one of them (threads beyond that share).
inline constexpr std::size_t kShards = 16;
/// What one shard occupies: two cache lines, since x86's adjacent-line prefetcher pulls lines in
/// pairs (neighbouring shards belong to threads started one after the other: the gateway's).
inline constexpr std::size_t kShardBytes = 128;

namespace detail {
std::uint32_t assign_shard();
/// This thread's shard + 1 (0: not assigned yet). Constant-initialised, so reading it is a
/// plain TLS load.
constinit inline thread_local std::uint32_t tls_shard = 0;
inline std::size_t shard() {
  std::uint32_t s = tls_shard;
  if (s == 0) [[unlikely]] {
    s = assign_shard();
  }
  return s - 1;
}
struct alignas(kShardBytes) Cell {
  std::atomic<std::uint64_t> value{0};
};
}  // namespace detail

/// A monotonic count.
class Counter {
 public:
  void inc(std::uint64_t n = 1) noexcept {
    cells_[detail::shard()].value.fetch_add(n, std::memory_order_relaxed);
  }
  std::uint64_t value() const noexcept;

 private:
  std::array<detail::Cell, kShards> cells_{};
};

/// A value that goes up and down (connections open). Not sharded: it changes rarely.
class Gauge {
 public:
  void set(std::int64_t v) noexcept { value_.store(v, std::memory_order_relaxed); }
  void inc(std::int64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  void dec(std::int64_t n = 1) noexcept { value_.fetch_sub(n, std::memory_order_relaxed); }
  std::int64_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> value_{0};
};

/// Holds a gauge up by one for its lifetime (a connection in the coroutine frame).
class GaugeHold {
 public:
  explicit GaugeHold(Gauge& g) : g_(g) { g_.inc(); }
  ~GaugeHold() { g_.dec(); }
  GaugeHold(const GaugeHold&) = delete;
  GaugeHold& operator=(const GaugeHold&) = delete;

 private:
  Gauge& g_;
};

/// A distribution over fixed buckets. A value v lands in the first bucket whose upper bound
/// is >= v (Prometheus `le`), else in +Inf (so does NaN). The count is the sum of the buckets,
/// so _count always equals the +Inf bucket, even during concurrent observe().
class Histogram {
 public:
  /// `bounds`: finite, strictly increasing upper bounds (+Inf is implicit).
  explicit Histogram(std::vector<double> bounds);

  void observe(double v) noexcept;
  void observe(std::chrono::nanoseconds d) noexcept {
    observe(static_cast<double>(d.count()) * 1e-9);
  }

  struct Sample {
    std::vector<std::uint64_t> cumulative;  // bounds().size() + 1 entries, the last is +Inf
    double sum = 0;
    std::uint64_t count() const { return cumulative.empty() ? 0 : cumulative.back(); }
  };
  Sample sample() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  struct alignas(kShardBytes) Line {
    std::atomic<std::uint64_t> word[kShardBytes / sizeof(std::uint64_t)];
  };
  static constexpr std::size_t kWords = kShardBytes / sizeof(std::uint64_t);
  std::atomic<std::uint64_t>& word(std::size_t shard, std::size_t i) const noexcept {
    return lines_[shard * stride_ + i / kWords].word[i % kWords];
  }
  std::vector<double> bounds_;
  std::size_t sum_index_;  // the word after the buckets holds the sum (a double's bits)
  std::size_t stride_;     // lines per shard
  std::unique_ptr<Line[]> lines_;
};

/// 0.5 ms to 10 s: request latencies.
std::vector<double> latency_buckets();
/// `count` bounds: start, start*factor, ...
std::vector<double> exponential_buckets(double start, double factor, std::size_t count);

class FamilyBase {
 public:
  virtual ~FamilyBase() = default;
  virtual void write(TextWriter& out) const = 0;
  const std::string& name() const { return name_; }
  Type type() const { return type_; }

 protected:
  FamilyBase(std::string name, std::string help, Type type, std::vector<std::string> labels);
  std::string name_;
  std::string help_;
  Type type_;
  std::vector<std::string> label_names_;
};

/// The metrics of one name, one child per label set (values in label-name order). Children
/// live as long as the family; references to them stay valid.
template <class M>
class Family final : public FamilyBase {
 public:
  Family(std::string name, std::string help, Type type, std::vector<std::string> labels,
         std::vector<double> bounds = {});
  /// The child for these label values (as many as the family has label names), created on
  /// first use.
  M& with(std::span<const std::string_view> values);
  M& with(std::initializer_list<std::string_view> values) {
    return with(std::span<const std::string_view>(values.begin(), values.size()));
  }
  /// The only child of a family without labels.
  M& get() { return with(std::span<const std::string_view>{}); }
  void write(TextWriter& out) const override;

 private:
  struct Less {
    using is_transparent = void;
    template <class A, class B>
    bool operator()(const A& a, const B& b) const {
      return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end());
    }
  };
  mutable std::mutex mutex_;
  std::map<std::vector<std::string>, std::unique_ptr<M>, Less> children_;  // sorted: stable output
  std::vector<double> bounds_;                                             // histograms
};

extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

/// The families of a process (or of a test). Registering a name again returns the existing
/// family (so each module may register what it uses on first use); the same name with another
/// type or labels is a bug (asserted).
class Registry {
 public:
  Family<Counter>& counter(std::string_view name, std::string_view help,
                           std::vector<std::string> labels = {});
  Family<Gauge>& gauge(std::string_view name, std::string_view help,
                       std::vector<std::string> labels = {});
  Family<Histogram>& histogram(std::string_view name, std::string_view help,
                               std::vector<std::string> labels, std::vector<double> bounds);

  /// Every family, in registration order.
  void write(TextWriter& out) const;
  std::string text() const;

 private:
  FamilyBase* find(std::string_view name, Type type) const;
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<FamilyBase>> families_;
};

/// The process-wide registry (the gateway's and the monitor's metrics).
Registry& global();

}  // namespace ck::metrics
