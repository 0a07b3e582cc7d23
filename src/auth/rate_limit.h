#pragma once
// Login rate limiting: token buckets per (user name, client IP), per user name from every
// address, and per client IP. Every failed login takes a token from all three; a login is refused
// while any is empty, with the seconds until it refills (the Retry-After header). The pair's
// bucket is small (5 per 5 min) and the user's large (100 per 5 min), so guesses from one address
// do not lock the user out from another (issue 13, row 8) while a spread-out attack on one name
// still stops. A success clears its pair's bucket but gives the user and the IP back only the
// try it used, so one valid account cannot launder guesses at others. The IP is the socket's
// peer address as the caller gives it (never X-Forwarded-For).
//
// In memory only (a restart forgets it), thread-safe (one mutex), time injected for tests.
// Bounded: buckets that have refilled completely are dropped when a map grows past max_keys.

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace ck::auth {

/// `burst` failures, refilled evenly over `window` (5 per 5 min: then one try per minute).
struct BucketPolicy {
  int burst = 5;
  std::chrono::milliseconds window{std::chrono::minutes(5)};
};

struct LoginLimits {
  BucketPolicy per_user_ip;                                 // one name from one address
  BucketPolicy per_user{100, std::chrono::minutes(5)};      // one name from every address
  BucketPolicy per_ip;                                      // every name from one address
  std::size_t max_keys = 100000;  // per map; full buckets are pruned past this
};

class LoginLimiter {
 public:
  /// `clock` gives unix epoch ms; empty = the system clock.
  explicit LoginLimiter(LoginLimits limits = {}, std::function<std::int64_t()> clock = {});

  /// nullopt when `user` from `ip` may try now; else how long to wait (at least 1 s).
  /// Either key may be empty (not limited by it).
  std::optional<std::chrono::seconds> blocked(const std::string& user, const std::string& ip);
  /// The check and the spend in one step, for a login about to be tried: when not blocked, takes
  /// a token from both buckets up front (so parallel attempts cannot all pass the check before
  /// any failure is counted) and returns nullopt; else returns the wait and takes nothing.
  /// Follow with record_success() when the password was right.
  std::optional<std::chrono::seconds> acquire(const std::string& user, const std::string& ip);
  void record_failure(const std::string& user, const std::string& ip);
  /// Clears the (user, ip) bucket; gives the user and `ip` back the token acquire() took.
  void record_success(const std::string& user, const std::string& ip = "");
  /// Gives every bucket back the token acquire() took (the attempt failed for another reason).
  void release(const std::string& user, const std::string& ip);
  /// How many buckets are held (pairs + users + addresses), for tests of the memory bound.
  std::size_t tracked();

 private:
  struct Bucket {
    double tokens = 0;
    std::int64_t at_ms = 0;  // when `tokens` was computed
  };
  using Map = std::unordered_map<std::string, Bucket>;
  std::int64_t now() const;
  static double refill(const Bucket& b, const BucketPolicy& p, std::int64_t now);
  // The bucket's tokens now (refilled since at_ms, capped at burst); missing = full.
  static double level(const Map& m, const std::string& key, const BucketPolicy& p,
                      std::int64_t now);
  static std::optional<std::chrono::seconds> wait(const Map& m, const std::string& key,
                                                  const BucketPolicy& p, std::int64_t now);
  void take(Map& m, const std::string& key, const BucketPolicy& p, std::int64_t now);
  /// The longest of the pair's, the user's and the address's waits; nullopt when none is
  /// blocked. Under mu_.
  std::optional<std::chrono::seconds> longest_wait(const std::string& user, const std::string& ip,
                                                   std::int64_t now) const;
  static void give_back(Map& m, const std::string& key, const BucketPolicy& p, std::int64_t now);

  /// The (user, ip) key; "" (not limited by it) when either is empty.
  static std::string pair_key(const std::string& user, const std::string& ip);

  LoginLimits limits_;
  std::function<std::int64_t()> clock_;
  std::mutex mu_;
  Map pairs_, users_, ips_;
};

}  // namespace ck::auth
