#pragma once
// The in-process event bus: the monitor (and anything else on the control plane) publishes
// JSON events — status changes, log lines, file changes, reloads, activity, jobs — and every
// subscriber (a /monitor/ws client) gets them through its own bounded queue. publish() never
// blocks on a subscriber: one whose queue is full is marked dropped and closed by its owner,
// so a slow client can never stall the daemon. Thread-safe: publish from any thread.

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

namespace ck {

/// One client's view of the bus.
class Subscription {
 public:
  /// `notify` is called (under the subscription's lock, from the publishing thread) when the
  /// queue goes from empty to non-empty or the subscription is dropped; it must only post.
  Subscription(std::function<void()> notify, std::size_t max_bytes)
      : notify_(std::move(notify)), max_bytes_(max_bytes) {}

  /// Narrows the stream to these workspaces (empty: every event). Events with no workspace
  /// (system-wide ones) are always delivered.
  void set_filter(std::set<std::string> workspaces);
  /// Leaves out the events of workspaces for which `hidden` answers true (private ones, for a
  /// client without credentials). Called under the subscription's lock on publishing threads.
  void set_hidden(std::function<bool(const std::string& workspace)> hidden);
  /// Takes everything queued (oldest first).
  std::vector<std::shared_ptr<const std::string>> take();
  /// True once the queue overflowed: the owner closes the connection.
  bool dropped() const;
  /// Detaches: notify is never called again (the owner is going away).
  void close();

 private:
  friend class EventBus;
  void offer(const std::string& workspace, const std::shared_ptr<const std::string>& msg);

  mutable std::mutex mutex_;
  std::function<void()> notify_;
  std::deque<std::shared_ptr<const std::string>> queue_;
  std::size_t bytes_ = 0;
  std::size_t max_bytes_;
  std::set<std::string> filter_;
  std::function<bool(const std::string&)> hidden_;
  bool dropped_ = false;
  bool closed_ = false;
};

class EventBus {
 public:
  /// A new subscriber with a queue of at most `max_bytes` of pending messages.
  std::shared_ptr<Subscription> subscribe(std::function<void()> notify,
                                          std::size_t max_bytes = 4u << 20);
  /// Sends {"type", "workspace", "time", ...data} to every subscriber. `data` must be an
  /// object (its keys are merged in).
  void publish(const std::string& type, const std::string& workspace, nlohmann::json data = {});
  /// Detaches every subscriber (at shutdown, before the threads that own them stop).
  void close_all();
  /// Cheap check so publishers can skip building events nobody reads (log lines).
  bool has_subscribers() const;
  std::size_t subscriber_count() const;
  std::uint64_t published() const;
  std::uint64_t dropped_clients() const;

 private:
  mutable std::mutex mutex_;
  std::vector<std::weak_ptr<Subscription>> subs_;
  std::uint64_t published_ = 0;
  std::uint64_t dropped_ = 0;
};

}  // namespace ck
