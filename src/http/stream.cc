#include "http/stream.h"

namespace ck::http {

// Under the lock, so that once cancel() returns the waker (which posts to the consumer's
// executor) is never called again, even by a producer racing with it.
void ResponseStream::notify(std::unique_lock<std::mutex>& lock) {
  if (!cancelled_ && wake_) wake_();
  lock.unlock();
}

void ResponseStream::begin(int status, std::string content_type, Headers headers) {
  std::unique_lock lock(mu_);
  if (begun_) return;
  begun_ = true;
  head_ = Head{status, std::move(content_type), std::move(headers)};
  notify(lock);
}

bool ResponseStream::write(std::string_view bytes) {
  std::unique_lock lock(mu_);
  if (cancelled_ || pending_.size() + bytes.size() > kMaxPending) return false;
  if (finished_ || bytes.empty()) return true;
  pending_.append(bytes);
  notify(lock);
  return true;
}

void ResponseStream::finish() {
  std::unique_lock lock(mu_);
  if (finished_) return;
  finished_ = true;
  notify(lock);
}

void ResponseStream::respond(int status, std::string content_type, std::string_view body,
                             Headers headers) {
  begin(status, std::move(content_type), std::move(headers));
  write(body);
  finish();
}

bool ResponseStream::cancelled() const {
  std::lock_guard lock(mu_);
  return cancelled_;
}

std::size_t ResponseStream::pending_bytes() const {
  std::lock_guard lock(mu_);
  return pending_.size();
}

ResponseStream::Chunk ResponseStream::take() {
  std::lock_guard lock(mu_);
  Chunk out;
  if (!begun_) return out;
  if (!head_taken_) {
    head_taken_ = true;
    out.head_ready = true;
    out.head = std::move(head_);
  }
  out.data = std::move(pending_);
  pending_.clear();
  out.finished = finished_;
  return out;
}

void ResponseStream::on_ready(std::function<void()> wake) {
  std::lock_guard lock(mu_);
  wake_ = std::move(wake);
}

void ResponseStream::cancel() {
  std::lock_guard lock(mu_);
  cancelled_ = true;
  pending_.clear();
  wake_ = nullptr;
}

}  // namespace ck::http
