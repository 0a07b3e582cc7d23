#include "metrics/metrics.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cmath>
#include <limits>

namespace ck::metrics {

namespace detail {

std::uint32_t assign_shard() {
  static std::atomic<std::uint32_t> next{0};
  tls_shard = next.fetch_add(1, std::memory_order_relaxed) % kShards + 1;
  return tls_shard;
}

}  // namespace detail

std::uint64_t Counter::value() const noexcept {
  std::uint64_t total = 0;
  for (const auto& c : cells_) total += c.value.load(std::memory_order_relaxed);
  return total;
}

// ---- Histogram ------------------------------------------------------------------------------

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {
  assert(std::is_sorted(bounds_.begin(), bounds_.end()) &&
         std::adjacent_find(bounds_.begin(), bounds_.end()) == bounds_.end());
  assert(std::all_of(bounds_.begin(), bounds_.end(), [](double b) { return std::isfinite(b); }));
  sum_index_ = bounds_.size() + 1;
  stride_ = (sum_index_ + 1 + kWords - 1) / kWords;
  lines_ = std::make_unique<Line[]>(stride_ * kShards);  // value-initialised: zeros
}

void Histogram::observe(double v) noexcept {
  // First bound >= v; NaN compares false everywhere and would land in the first bucket.
  std::size_t i = std::isnan(v)
                      ? bounds_.size()
                      : static_cast<std::size_t>(
                            std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  std::size_t s = detail::shard();
  word(s, i).fetch_add(1, std::memory_order_relaxed);
  // The shard is almost always this thread's alone, so the loop runs once.
  auto& sum = word(s, sum_index_);
  std::uint64_t old = sum.load(std::memory_order_relaxed);
  while (!sum.compare_exchange_weak(old,
                                    std::bit_cast<std::uint64_t>(std::bit_cast<double>(old) + v),
                                    std::memory_order_relaxed)) {
  }
}

Histogram::Sample Histogram::sample() const {
  Sample out;
  out.cumulative.assign(bounds_.size() + 1, 0);
  for (std::size_t s = 0; s < kShards; ++s) {
    for (std::size_t i = 0; i <= bounds_.size(); ++i) {
      out.cumulative[i] += word(s, i).load(std::memory_order_relaxed);
    }
    out.sum += std::bit_cast<double>(word(s, sum_index_).load(std::memory_order_relaxed));
  }
  for (std::size_t i = 1; i < out.cumulative.size(); ++i) {
    out.cumulative[i] += out.cumulative[i - 1];
  }
  return out;
}

std::vector<double> latency_buckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

std::vector<double> exponential_buckets(double start, double factor, std::size_t count) {
  std::vector<double> out;
  out.reserve(count);
  for (double b = start; out.size() < count; b *= factor) out.push_back(b);
  return out;
}

// ---- families -------------------------------------------------------------------------------

FamilyBase::FamilyBase(std::string name, std::string help, Type type,
                       std::vector<std::string> labels)
    : name_(std::move(name)), help_(std::move(help)), type_(type), label_names_(std::move(labels)) {
  assert(valid_metric_name(name_));
  for ([[maybe_unused]] const auto& l : label_names_) {
    assert(valid_label_name(l));
    assert(!(type_ == Type::histogram && l == "le"));
  }
}

template <class M>
Family<M>::Family(std::string name, std::string help, Type type, std::vector<std::string> labels,
                  std::vector<double> bounds)
    : FamilyBase(std::move(name), std::move(help), type, std::move(labels)),
      bounds_(std::move(bounds)) {}

template <class M>
M& Family<M>::with(std::span<const std::string_view> values) {
  assert(values.size() == label_names_.size());
  std::lock_guard lock(mutex_);
  auto it = children_.find(values);
  if (it == children_.end()) {
    std::unique_ptr<M> child;
    if constexpr (std::is_same_v<M, Histogram>) {
      child = std::make_unique<Histogram>(bounds_);
    } else {
      child = std::make_unique<M>();
    }
    it = children_.emplace(std::vector<std::string>(values.begin(), values.end()), std::move(child))
             .first;
  }
  return *it->second;
}

template <class M>
void Family<M>::write(TextWriter& out) const {
  out.family(name_, help_, type_);
  std::lock_guard lock(mutex_);
  std::vector<Label> labels(label_names_.size());
  for (const auto& [values, child] : children_) {
    for (std::size_t i = 0; i < values.size(); ++i) labels[i] = {label_names_[i], values[i]};
    if constexpr (std::is_same_v<M, Histogram>) {
      auto s = child->sample();
      out.histogram(name_, labels, child->bounds(), s.cumulative, s.sum);
    } else {
      out.sample(name_, labels, child->value());
    }
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// ---- registry -------------------------------------------------------------------------------

FamilyBase* Registry::find(std::string_view name, [[maybe_unused]] Type type) const {
  for (const auto& f : families_) {
    if (f->name() == name) {
      assert(f->type() == type && "a metric registered twice with different types");
      return f.get();
    }
  }
  return nullptr;
}

Family<Counter>& Registry::counter(std::string_view name, std::string_view help,
                                   std::vector<std::string> labels) {
  std::lock_guard lock(mutex_);
  if (auto* f = find(name, Type::counter)) return static_cast<Family<Counter>&>(*f);
  auto f = std::make_unique<Family<Counter>>(std::string(name), std::string(help), Type::counter,
                                             std::move(labels));
  auto& ref = *f;
  families_.push_back(std::move(f));
  return ref;
}

Family<Gauge>& Registry::gauge(std::string_view name, std::string_view help,
                               std::vector<std::string> labels) {
  std::lock_guard lock(mutex_);
  if (auto* f = find(name, Type::gauge)) return static_cast<Family<Gauge>&>(*f);
  auto f = std::make_unique<Family<Gauge>>(std::string(name), std::string(help), Type::gauge,
                                           std::move(labels));
  auto& ref = *f;
  families_.push_back(std::move(f));
  return ref;
}

Family<Histogram>& Registry::histogram(std::string_view name, std::string_view help,
                                       std::vector<std::string> labels,
                                       std::vector<double> bounds) {
  std::lock_guard lock(mutex_);
  if (auto* f = find(name, Type::histogram)) return static_cast<Family<Histogram>&>(*f);
  auto f = std::make_unique<Family<Histogram>>(
      std::string(name), std::string(help), Type::histogram, std::move(labels), std::move(bounds));
  auto& ref = *f;
  families_.push_back(std::move(f));
  return ref;
}

void Registry::write(TextWriter& out) const {
  std::lock_guard lock(mutex_);
  for (const auto& f : families_) f->write(out);
}

std::string Registry::text() const {
  TextWriter out;
  write(out);
  return out.take();
}

Registry& global() {
  static Registry* r = new Registry();  // never destroyed: threads may count until exit
  return *r;
}

}  // namespace ck::metrics
