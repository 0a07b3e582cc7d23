#pragma once
// The gateway: an HTTP/1.1 server (Beast, coroutines) that routes /monitor to the control
// plane, serves static workspaces itself and reverse-proxies the rest to their apps, with
// keep-alive on both sides, pooled upstream connections and WebSocket passthrough.
// Threads: one io_context per worker, each with its own SO_REUSEPORT acceptor and upstream
// pool; a connection stays on its worker. Workers read the route table (the monitor's
// Snapshot) without locks.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "core/public_url.h"
#include "core/units.h"
#include "gateway/route.h"
#include "http/message.h"
#include "monitor/snapshot.h"

namespace ck {

struct GatewayOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;  // 0: any free port
  /// gateway.domain and gateway.control_host (route.h): routing by the Host header.
  HostRouting hosts;
  /// Where the gateway is reached from outside: the home page's links and the home link of a
  /// 404 for an unknown <name>.<domain>.
  PublicAddress address;
  int threads = 0;            // 0: one per core
  Duration request_timeout = std::chrono::seconds(60);
  Duration idle_timeout = std::chrono::seconds(75);  // keep-alive connections
  std::uint64_t max_body = 64ull << 20;
  std::uint64_t max_header = 32ull << 10;
  /// gateway.max_file_body: a PUT to the files API (/monitor/api/v1/workspaces/NAME/files/...)
  /// may send this much instead of the control plane's usual 2 MiB.
  std::uint64_t max_file_body = 10ull << 20;
  /// How long a request for a sleeping workspace is held while it wakes (API clients; a
  /// browser gets the waiting page after a moment).
  Duration wake_timeout = std::chrono::seconds(60);
  bool live_reload = false;  // inject the reload script into static HTML pages
  std::uint64_t event_buffer = 4ull << 20;  // pending events before a /monitor/ws client is dropped
  /// Open client connections (all workers) and per client address; past either a new
  /// connection gets a 503 and is closed at once. The total is also kept under what the
  /// open-file limit allows (two descriptors per proxied connection).
  int max_connections = 10000;
  int max_connections_per_ip = 256;
  /// A client must send a request's complete headers within this (from its connection, or
  /// from the first byte of a later keep-alive request); else it is closed.
  Duration header_timeout = std::chrono::seconds(10);
  /// An Upgrade (WebSocket) tunnel with no traffic either way for this long is closed.
  Duration ws_idle_timeout = std::chrono::hours(1);
  /// TLS: certificate and key files, the default first (SNI picks among them). Set, the
  /// listener speaks TLS only (1.2 and later, ALPN http/1.1). Empty: plain HTTP.
  std::vector<TlsFiles> tls;
  /// How often the certificate files are checked for a change (0: never reloaded).
  Duration tls_reload = std::chrono::seconds(2);
  /// Set (with TLS): a plain HTTP listener on this address answering every request with 308
  /// to https://<host>[:<port>]<target>.
  std::string redirect_http;
  /// With TLS: Strict-Transport-Security max-age on every answer (0: not sent).
  Duration hsts = Duration::zero();
};

class EventBus;

/// Whether a request may reach a private workspace (workspace.json "public": false).
enum class PrivateAccess {
  allowed,
  login,      // no valid session: log in first
  forbidden,  // a session of someone who may not see it
};

/// What the gateway asks of the control plane besides ControlHandler.
struct GatewayHooks {
  /// Asks the control plane to resume or start a sleeping workspace. Called on gateway
  /// threads; must only post.
  std::function<void(const std::string& name)> wake;
  /// Serves /monitor/ws when set.
  EventBus* events = nullptr;
  /// Decides who reaches a private workspace, from the request's Cookie header. Called on
  /// gateway threads (it may wait briefly on the session store). Unset: private workspaces
  /// answer like public ones.
  std::function<PrivateAccess(const std::string& workspace, std::string_view cookie)> private_access;
  /// Which workspaces one /monitor/ws client may see, decided once per connection from its
  /// Cookie and Authorization headers (auth::authorize for its principal, in the daemon's
  /// wiring). The predicate gets a workspace's name and its snapshot entry (nullptr when the
  /// snapshot lacks it); it filters the hello (gateway thread) and every event (publishing
  /// thread, under the subscription's lock: it must be quick). Unset: everyone sees everything.
  using WorkspaceVisible = std::function<bool(const std::string& name, const WorkspaceView* ws)>;
  std::function<WorkspaceVisible(std::string_view cookie, std::string_view authorization)>
      event_visibility;
  /// The control plane's session cookie, removed from requests forwarded to apps (an app must
  /// never see a dashboard login).
  std::string session_cookie;
};

using ControlHandler = std::function<http::Response(const http::Request&)>;

class Gateway {
 public:
  Gateway(GatewayOptions opts, const SnapshotHolder& routes, ControlHandler control,
          GatewayHooks hooks = {});
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  /// Binds the listening sockets. Returns the bound port; fails with a clear message when
  /// the address is taken or invalid. No request is served before start().
  Result<std::uint16_t> listen();
  /// The address once the port is known (listen() with port 0); before start() only.
  void set_address(PublicAddress address);
  /// Starts the workers (after a successful listen()).
  void start();
  /// Stops accepting, closes connections, joins the workers. Idempotent.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ck
