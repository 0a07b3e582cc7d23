// The gateway alone, proxying one workspace to a backend that is already running: what
// bench/gateway/profile_proxy.sh runs under callgrind and strace to count the proxied
// request's cost (the daemon cannot start its process runtime's apps under valgrind 3.19).
// Same gateway code and options as `cloudyknight serve` (one worker, the session cookie hook
// set as the daemon sets it); only the runtime and the control plane are left out.
//
//   proxy_gateway LISTEN_PORT BACKEND_PORT [keep]
// Serves /bench/ (prefix stripped, or kept with `keep`) from 127.0.0.1:BACKEND_PORT; prints
// "listening <port>" once it accepts; runs until SIGTERM or SIGINT. With CK_TLS_CERT and
// CK_TLS_KEY (PEM files) it speaks TLS, as gateway.tls does.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "gateway/gateway.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s LISTEN_PORT BACKEND_PORT [keep]\n", argv[0]);
    return 2;
  }
  int listen_port = std::atoi(argv[1]);
  int backend_port = std::atoi(argv[2]);
  if (listen_port < 0 || listen_port > 65535 || backend_port <= 0 || backend_port > 65535) {
    std::fprintf(stderr, "ports must be 0..65535 (backend 1..65535)\n");
    return 2;
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // the workers inherit it; main waits below

  auto snap = std::make_shared<ck::Snapshot>();
  ck::WorkspaceView ws;
  ws.name = "bench";
  ws.type = "process";
  ws.status = "running";
  ws.upstream_host = "127.0.0.1";
  ws.port = backend_port;
  ws.runs = true;
  ws.keep_prefix = argc > 3 && std::string(argv[3]) == "keep";
  ws.activity = std::make_shared<ck::Activity>();
  snap->workspaces.push_back(std::move(ws));
  ck::SnapshotHolder holder;
  holder.store(snap);

  ck::GatewayOptions opts;
  opts.host = "127.0.0.1";
  opts.port = static_cast<std::uint16_t>(listen_port);
  opts.threads = 1;  // CK_GATEWAY_THREADS: more workers, for load runs (bench/gateway/rig.sh)
  if (const char* t = std::getenv("CK_GATEWAY_THREADS"); t && std::atoi(t) > 0) opts.threads = std::atoi(t);
  const char* cert = std::getenv("CK_TLS_CERT");
  const char* key = std::getenv("CK_TLS_KEY");
  if (cert && key) opts.tls.push_back(ck::TlsFiles{cert, key});
  ck::GatewayHooks hooks;
  hooks.session_cookie = "ck_session";
  ck::Gateway gateway(
      opts, holder, [](const ck::http::Request&) { return ck::http::Response{}; }, hooks);
  auto port = gateway.listen();
  if (port.has_error()) {
    std::fprintf(stderr, "%s\n", port.error().message.c_str());
    return 1;
  }
  gateway.start();
  std::printf("listening %u\n", static_cast<unsigned>(port.value()));
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  gateway.stop();
  return 0;
}
