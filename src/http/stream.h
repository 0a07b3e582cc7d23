#pragma once
// A response produced over time: a handler that cannot answer at once (a command running in a
// container, a log being followed) hands the gateway a ResponseStream and fills it from another
// thread. The producer sets the head once, then appends body bytes and finishes; the gateway
// sends the head when it is set (with Content-Length if the body is already complete, chunked
// otherwise) and relays the bytes as they come. When the client goes away the gateway cancels
// the stream, and the producer stops at its next cancelled() check. Thread-safe; no Asio.

#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/message.h"

namespace ck::http {

class ResponseStream {
 public:
  using Headers = std::vector<std::pair<std::string, std::string>>;

  /// Bytes buffered for a slow client before write() refuses more.
  static constexpr std::size_t kMaxPending = 8u << 20;

  // ---- the producer (any thread) ----

  /// Sets the status line and headers; only the first call counts.
  void begin(int status, std::string content_type, Headers headers = {});
  /// Appends body bytes (after begin). False once the client is gone or kMaxPending bytes wait
  /// unsent: the producer should stop.
  bool write(std::string_view bytes);
  /// Ends the body. Later writes are ignored.
  void finish();
  /// begin() + write() + finish() for a complete answer.
  void respond(int status, std::string content_type, std::string_view body, Headers headers = {});
  void respond(const Response& r) { respond(r.status, r.content_type, r.body, r.headers); }
  bool cancelled() const;
  /// Bytes written but not yet taken by the gateway (a producer of a large body waits while
  /// this is high instead of failing at kMaxPending).
  std::size_t pending_bytes() const;

  // ---- the consumer (the gateway) ----

  struct Head {
    int status = 0;
    std::string content_type;
    Headers headers;
  };
  /// What is ready: the head once begun (moved out on the first take that sees it), the bytes
  /// written since the last take, and whether the body is complete.
  struct Chunk {
    bool head_ready = false;
    Head head;
    std::string data;
    bool finished = false;
  };
  Chunk take();
  /// Called (on the producer's thread, under the stream's lock) after each begin, write and
  /// finish until cancel(). Set before the first take(); it must only post.
  void on_ready(std::function<void()> wake);
  /// The client is gone: writes fail from now on and the waker is dropped (never called
  /// again once this returns).
  void cancel();

 private:
  void notify(std::unique_lock<std::mutex>& lock);

  mutable std::mutex mu_;
  bool begun_ = false;
  bool head_taken_ = false;
  Head head_;
  std::string pending_;
  bool finished_ = false;
  bool cancelled_ = false;
  std::function<void()> wake_;
};

}  // namespace ck::http
