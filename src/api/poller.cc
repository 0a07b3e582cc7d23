#include "api/poller.h"

namespace ck::api {

Poller::~Poller() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Poller::add(std::function<bool()> tick) {
  std::lock_guard lock(mu_);
  added_.push_back(std::move(tick));
  if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
  cv_.notify_all();
}

std::size_t Poller::size() const {
  std::lock_guard lock(mu_);
  return tasks_.size() + added_.size();
}

void Poller::loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    for (auto& t : added_) tasks_.push_back(std::move(t));
    added_.clear();
    auto tasks = std::move(tasks_);
    tasks_.clear();
    lock.unlock();
    std::vector<std::function<bool()>> kept;
    for (auto& t : tasks) {
      if (t()) kept.push_back(std::move(t));
    }
    lock.lock();
    for (auto& t : kept) tasks_.push_back(std::move(t));
    // New tasks run at once; the others every interval.
    cv_.wait_for(lock, interval_, [this] { return stopping_ || !added_.empty(); });
  }
}

}  // namespace ck::api
