#include "events/events.h"

#include <chrono>
#include <fmt/chrono.h>
#include <fmt/format.h>

namespace ck {
using json = nlohmann::json;

void Subscription::set_filter(std::set<std::string> workspaces) {
  std::lock_guard lock(mutex_);
  filter_ = std::move(workspaces);
}

void Subscription::set_hidden(std::function<bool(const std::string&)> hidden) {
  std::lock_guard lock(mutex_);
  hidden_ = std::move(hidden);
}

std::vector<std::shared_ptr<const std::string>> Subscription::take() {
  std::lock_guard lock(mutex_);
  std::vector<std::shared_ptr<const std::string>> out(std::make_move_iterator(queue_.begin()),
                                                       std::make_move_iterator(queue_.end()));
  queue_.clear();
  bytes_ = 0;
  return out;
}

bool Subscription::dropped() const {
  std::lock_guard lock(mutex_);
  return dropped_;
}

void Subscription::close() {
  std::lock_guard lock(mutex_);
  closed_ = true;
  notify_ = nullptr;
  queue_.clear();
}

void Subscription::offer(const std::string& workspace, const std::shared_ptr<const std::string>& msg) {
  std::lock_guard lock(mutex_);
  if (closed_ || dropped_) return;
  if (!workspace.empty() && !filter_.empty() && !filter_.count(workspace)) return;
  if (!workspace.empty() && hidden_ && hidden_(workspace)) return;
  if (bytes_ + msg->size() > max_bytes_) {
    dropped_ = true;
    queue_.clear();
    bytes_ = 0;
    if (notify_) notify_();
    return;
  }
  bool was_empty = queue_.empty();
  queue_.push_back(msg);
  bytes_ += msg->size();
  if (was_empty && notify_) notify_();
}

std::shared_ptr<Subscription> EventBus::subscribe(std::function<void()> notify, std::size_t max_bytes) {
  auto sub = std::make_shared<Subscription>(std::move(notify), max_bytes);
  std::lock_guard lock(mutex_);
  subs_.push_back(sub);
  return sub;
}

void EventBus::publish(const std::string& type, const std::string& workspace, json data) {
  json j = {{"type", type}};
  if (!workspace.empty()) j["workspace"] = workspace;
  auto now = std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
  j["time"] = fmt::format("{:%Y-%m-%dT%H:%M:%S}Z", now);
  if (data.is_object()) {
    for (auto& [k, v] : data.items()) j[k] = std::move(v);
  }
  auto msg = std::make_shared<const std::string>(j.dump(-1, ' ', false, json::error_handler_t::replace));
  std::vector<std::shared_ptr<Subscription>> live;
  {
    std::lock_guard lock(mutex_);
    ++published_;
    live.reserve(subs_.size());
    std::erase_if(subs_, [&](const std::weak_ptr<Subscription>& w) {
      auto s = w.lock();
      if (!s) return true;
      live.push_back(std::move(s));
      return false;
    });
  }
  for (auto& s : live) {
    bool was = s->dropped();
    s->offer(workspace, msg);
    if (!was && s->dropped()) {
      std::lock_guard lock(mutex_);
      ++dropped_;
    }
  }
}

void EventBus::close_all() {
  std::vector<std::shared_ptr<Subscription>> live;
  {
    std::lock_guard lock(mutex_);
    for (auto& w : subs_) {
      if (auto s = w.lock()) live.push_back(std::move(s));
    }
    subs_.clear();
  }
  for (auto& s : live) s->close();
}

bool EventBus::has_subscribers() const { return subscriber_count() > 0; }

std::size_t EventBus::subscriber_count() const {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (const auto& w : subs_) n += !w.expired();
  return n;
}

std::uint64_t EventBus::published() const {
  std::lock_guard lock(mutex_);
  return published_;
}

std::uint64_t EventBus::dropped_clients() const {
  std::lock_guard lock(mutex_);
  return dropped_;
}

}  // namespace ck
