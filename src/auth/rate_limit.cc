#include "auth/rate_limit.h"

#include <algorithm>
#include <cmath>

namespace ck::auth {

namespace {
double rate_per_ms(const BucketPolicy& p) {
  return static_cast<double>(std::max(p.burst, 1)) /
         static_cast<double>(std::max<std::int64_t>(p.window.count(), 1));
}
}  // namespace

double LoginLimiter::refill(const Bucket& b, const BucketPolicy& p, std::int64_t now) {
  const double elapsed = static_cast<double>(std::max<std::int64_t>(now - b.at_ms, 0));
  return std::min(static_cast<double>(std::max(p.burst, 1)), b.tokens + elapsed * rate_per_ms(p));
}

LoginLimiter::LoginLimiter(LoginLimits limits, std::function<std::int64_t()> clock)
    : limits_(limits), clock_(std::move(clock)) {}

std::int64_t LoginLimiter::now() const {
  if (clock_) {
    return clock_();
  }
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double LoginLimiter::level(const Map& m, const std::string& key, const BucketPolicy& p,
                           std::int64_t now) {
  auto it = m.find(key);
  return it == m.end() ? static_cast<double>(std::max(p.burst, 1)) : refill(it->second, p, now);
}

std::optional<std::chrono::seconds> LoginLimiter::wait(const Map& m, const std::string& key,
                                                       const BucketPolicy& p, std::int64_t now) {
  if (key.empty()) {
    return std::nullopt;
  }
  const double tokens = level(m, key, p, now);
  if (tokens >= 1.0) {
    return std::nullopt;
  }
  const double ms = (1.0 - tokens) / rate_per_ms(p);
  const auto secs = static_cast<std::int64_t>(std::ceil(ms / 1000.0));
  return std::chrono::seconds(std::max<std::int64_t>(1, secs));
}

void LoginLimiter::take(Map& m, const std::string& key, const BucketPolicy& p, std::int64_t now) {
  if (key.empty()) {
    return;
  }
  const double tokens = level(m, key, p, now);
  if (m.size() >= limits_.max_keys && m.find(key) == m.end()) {
    const double burst = std::max(p.burst, 1);
    std::erase_if(m, [&](const auto& kv) { return refill(kv.second, p, now) >= burst; });
  }
  m[key] = Bucket{std::max(tokens - 1.0, 0.0), now};
}

std::optional<std::chrono::seconds> LoginLimiter::longest_wait(const std::string& user,
                                                               const std::string& ip,
                                                               std::int64_t t) const {
  auto p = wait(pairs_, pair_key(user, ip), limits_.per_user_ip, t);
  auto u = wait(users_, user, limits_.per_user, t);
  auto i = wait(ips_, ip, limits_.per_ip, t);
  if (!p && !u && !i) return std::nullopt;
  const auto zero = std::chrono::seconds(0);
  return std::max({p.value_or(zero), u.value_or(zero), i.value_or(zero)});
}

std::string LoginLimiter::pair_key(const std::string& user, const std::string& ip) {
  if (user.empty() || ip.empty()) return "";
  std::string key = user;
  key += '\0';
  key += ip;
  return key;
}

std::optional<std::chrono::seconds> LoginLimiter::blocked(const std::string& user,
                                                          const std::string& ip) {
  std::lock_guard lock(mu_);
  return longest_wait(user, ip, now());
}

void LoginLimiter::record_failure(const std::string& user, const std::string& ip) {
  std::lock_guard lock(mu_);
  const std::int64_t t = now();
  take(pairs_, pair_key(user, ip), limits_.per_user_ip, t);
  take(users_, user, limits_.per_user, t);
  take(ips_, ip, limits_.per_ip, t);
}

std::optional<std::chrono::seconds> LoginLimiter::acquire(const std::string& user,
                                                          const std::string& ip) {
  std::lock_guard lock(mu_);
  const std::int64_t t = now();
  if (auto w = longest_wait(user, ip, t)) return w;
  take(pairs_, pair_key(user, ip), limits_.per_user_ip, t);
  take(users_, user, limits_.per_user, t);
  take(ips_, ip, limits_.per_ip, t);
  return std::nullopt;
}

void LoginLimiter::record_success(const std::string& user, const std::string& ip) {
  std::lock_guard lock(mu_);
  const std::int64_t t = now();
  if (auto key = pair_key(user, ip); !key.empty()) pairs_.erase(key);
  give_back(users_, user, limits_.per_user, t);
  give_back(ips_, ip, limits_.per_ip, t);
}

void LoginLimiter::release(const std::string& user, const std::string& ip) {
  std::lock_guard lock(mu_);
  const std::int64_t t = now();
  give_back(pairs_, pair_key(user, ip), limits_.per_user_ip, t);
  give_back(users_, user, limits_.per_user, t);
  give_back(ips_, ip, limits_.per_ip, t);
}

void LoginLimiter::give_back(Map& m, const std::string& key, const BucketPolicy& p,
                             std::int64_t now) {
  if (auto it = m.find(key); !key.empty() && it != m.end()) {
    const double burst = std::max(p.burst, 1);
    it->second = Bucket{std::min(burst, refill(it->second, p, now) + 1.0), now};
  }
}

std::size_t LoginLimiter::tracked() {
  std::lock_guard lock(mu_);
  return pairs_.size() + users_.size() + ips_.size();
}

}  // namespace ck::auth
