#pragma once
// The API tests' shared fixture: an in-memory state.db with the auth service, a snapshot of
// workspaces, a ControlApi over them, and call(), which sends a request through
// ControlApi::handle and waits for an answer that comes later (http::ResponseStream: login,
// user creation) so every test sees a complete response.

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "api/api.h"
#include "auth/auth.h"
#include "http/stream.h"

namespace ck::test_util {

class ApiFixture : public ::testing::Test {
 protected:
  using Headers = std::vector<std::pair<std::string, std::string>>;

  /// A running node workspace, as the snapshot shows it.
  static WorkspaceView app(const std::string& name) {
    WorkspaceView w;
    w.name = name;
    w.type = "node";
    w.status = "running";
    w.runs = true;
    return w;
  }

  /// Opens the state and the auth service and builds the API over `workspaces` (sorted by
  /// name, as snapshots are); `services.auth` is filled in.
  void start(const std::vector<WorkspaceView>& workspaces, ApiServices services = {}) {
    auto opened = StateDb::open(":memory:");
    ASSERT_TRUE(opened.has_value());
    db = std::move(opened.value());
    service = std::make_unique<auth::Auth>(*db);
    auto snap = std::make_shared<Snapshot>();
    snap->workspaces = workspaces;
    snaps.store(snap);
    services.auth = service.get();
    api = std::make_unique<ControlApi>(snaps, ApiInfo{}, db.get(), StorageEventsHook{}, services);
  }

  /// One request through ControlApi::handle, from 127.0.0.1; a streamed answer is awaited
  /// (at most 10 s) and returned whole.
  http::Response call(const std::string& method, const std::string& target,
                      const std::string& bearer = "", const std::string& body = "",
                      Headers headers = {}) {
    http::Request r;
    r.method = method;
    r.target = target;
    auto q = target.find('?');
    r.path = target.substr(0, q);
    r.query = q == std::string::npos ? "" : target.substr(q + 1);
    r.headers = std::move(headers);
    if (!bearer.empty()) r.headers.emplace_back("Authorization", "Bearer " + bearer);
    r.body = body;
    r.client_ip = "127.0.0.1";
    auto res = api->handle(r);
    if (!res.stream) return res;
    http::Response out;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (bool done = false; !done;) {
      auto c = res.stream->take();
      if (c.head_ready) {
        out.status = c.head.status;
        out.content_type = c.head.content_type;
        out.headers = c.head.headers;
      }
      out.body += c.data;
      done = c.finished;
      if (!done) {
        if (std::chrono::steady_clock::now() > until) {
          ADD_FAILURE() << method << " " << target << ": the streamed answer did not finish in 10 s";
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    }
    return out;
  }

  static std::string header(const http::Response& r, const std::string& name) {
    for (const auto& [k, v] : r.headers) {
      if (k == name) return v;
    }
    return "";
  }

  std::unique_ptr<StateDb> db;
  std::unique_ptr<auth::Auth> service;
  SnapshotHolder snaps;
  std::unique_ptr<ControlApi> api;
};

}  // namespace ck::test_util
