#pragma once
// The control-plane HTTP API under /monitor (DESIGN.md "Control-plane HTTP API"): health,
// workspace list and detail, system status. Handlers are plain functions of a request and
// the monitor's current snapshot; they run on gateway threads and never block.

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "http/message.h"
#include "monitor/snapshot.h"
#include "state/state.h"

namespace ck {

struct ApiInfo {
  std::string version;
  std::string listen_url;  // "http://127.0.0.1:8080/"
  std::chrono::system_clock::time_point started;
};

/// Called (on a gateway thread; must not block) with the "bucket/key" of each record of a
/// bucket notification, none for a test event.
using StorageEventsHook = std::function<void(const std::vector<std::string>& keys)>;

class ControlApi {
 public:
  /// `db` (optional) serves jobs and status history. `storage_events` (S3 storage only) is
  /// told about bucket notifications POSTed to /monitor/api/v1/storage/events.
  ControlApi(const SnapshotHolder& snapshots, ApiInfo info, StateDb* db = nullptr,
             StorageEventsHook storage_events = {})
      : snapshots_(snapshots),
        info_(std::move(info)),
        db_(db),
        storage_events_(std::move(storage_events)) {}
  http::Response handle(const http::Request& req) const;

 private:
  http::Response jobs(const http::Request& req) const;
  http::Response storage_events(const http::Request& req) const;
  const SnapshotHolder& snapshots_;
  ApiInfo info_;
  StateDb* db_;
  StorageEventsHook storage_events_;
};

/// A MinIO (or S3-style) bucket notification: {"EventName", "Key", "Records": [{"s3":
/// {"bucket": {"name"}, "object": {"key" (URL-encoded)}}}, ...]}.
struct BucketNotification {
  std::size_t events = 0;         // records (0: a test event or an empty body)
  std::vector<std::string> keys;  // "bucket/key", decoded, for the records that name one
};

/// Parses a notification body. An empty body or an object without records is a test event
/// (0 events); anything that is not a JSON object, or whose "Records" is not an array, is
/// invalid_argument. Pure: never throws.
Result<BucketNotification> parse_bucket_notification(std::string_view body);

/// The largest notification body accepted (a bigger one is answered 413).
inline constexpr std::size_t kMaxNotificationBody = std::size_t{1} << 20;

/// The HTTP status for an error code, and the JSON body {"error": {"code", "message"}}.
int http_status_for(Errc code);
http::Response error_response(Errc code, const std::string& message);

}  // namespace ck
