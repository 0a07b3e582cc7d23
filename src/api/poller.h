#pragma once
// One background thread that calls each registered task every `interval` until it answers
// false: what the API's follow streams (a workspace log, the monitor's own log) run on, so that
// following never holds a gateway thread. Started on the first add(); joined on destruction.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ck::api {

class Poller {
 public:
  explicit Poller(std::chrono::milliseconds interval = std::chrono::milliseconds(200))
      : interval_(interval) {}
  ~Poller();
  Poller(const Poller&) = delete;
  Poller& operator=(const Poller&) = delete;

  /// `tick` runs on the poller's thread at once and then every interval until it answers
  /// false. It must not block for long: every task shares the thread.
  void add(std::function<bool()> tick);
  /// Tasks running now (for tests).
  std::size_t size() const;

 private:
  void loop();

  const std::chrono::milliseconds interval_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::function<bool()>> tasks_;
  std::vector<std::function<bool()>> added_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace ck::api
