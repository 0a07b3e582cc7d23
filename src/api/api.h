#pragma once
// The control-plane HTTP API under /monitor (DESIGN.md "Control-plane HTTP API"): health,
// workspace list and detail, system status. Handlers are plain functions of a request and
// the monitor's current snapshot; they run on gateway threads and never block.

#include <chrono>
#include <string>

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

class ControlApi {
 public:
  /// `db` (optional) serves jobs and status history.
  ControlApi(const SnapshotHolder& snapshots, ApiInfo info, StateDb* db = nullptr)
      : snapshots_(snapshots), info_(std::move(info)), db_(db) {}
  http::Response handle(const http::Request& req) const;

 private:
  http::Response jobs(const http::Request& req) const;
  const SnapshotHolder& snapshots_;
  ApiInfo info_;
  StateDb* db_;
};

/// The HTTP status for an error code, and the JSON body {"error": {"code", "message"}}.
int http_status_for(Errc code);
http::Response error_response(Errc code, const std::string& message);

}  // namespace ck
